"""Clients (Halo table ``area``)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.engine import Connection

from halodb.halo.repository import Repository, normalise_key
from halodb.halo.schema import area


class ClientRepository(Repository):
    table = area
    audit_name = "AREA"
    writable = ("name", "website", "toplevel_id", "inactive")
    created_field = "datecreated"

    def ids_by_name(self, conn: Connection, names: Iterable[str]) -> dict[str, int]:
        """Client ids by (normalised) name; where two clients share a name, the active one wins."""
        found = self.find(conn, ("name",), [(n,) for n in names if n])
        current = self.current(conn, [i for ids in found.values() for i in ids])
        out = {}
        for (name,), ids in found.items():
            ids.sort(key=lambda i: (current[i]["inactive"], i))
            out[name] = ids[0]
        return out


clients = ClientRepository()


def lookup(conn: Connection, names: Iterable[str]) -> dict[str, int]:
    """Shorthand for ``clients.ids_by_name``; keys are ``normalise_key(name)``."""
    return clients.ids_by_name(conn, names)


__all__ = ["ClientRepository", "clients", "lookup", "normalise_key"]
