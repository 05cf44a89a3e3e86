"""Sites (Halo table ``site``): every site belongs to one client."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from halodb.errors import RecordError
from halodb.halo import clients as client_api
from halodb.halo.repository import Repository, chunks, normalise_key
from halodb.halo.schema import area, site


class SiteRepository(Repository):
    table = site
    audit_name = "SITE"
    writable = ("name", "client_id", "phonenumber", "isinvoicesite", "inactive")
    required = ("name", "client_id")
    references = ((area.c.id, area.c.name),)  # clients by name

    def prepare(self, conn: Connection, records: Sequence[Mapping[str, Any]]) -> list[dict | RecordError]:
        """Resolve ``client_name`` to ``client_id`` for the whole batch, then coerce."""
        by_name = client_api.lookup(conn, {r["client_name"] for r in records if r.get("client_name")})

        def one(record: Mapping[str, Any]) -> dict:
            record = dict(record)
            client_name = record.pop("client_name", None)
            if client_name and not record.get("client_id"):
                record["client_id"] = by_name.get(normalise_key(client_name))
                if record["client_id"] is None:
                    raise RecordError(f"no client named {client_name!r}")
            return self.coerce(record)

        return [self._try(one, r) for r in records]

    def client_of(self, conn: Connection, site_ids: Iterable[int]) -> dict[int, int]:
        """The client id of each site."""
        out: dict[int, int] = {}
        for part in chunks(sorted(set(site_ids))):
            out.update(conn.execute(select(site.c.id, site.c.client_id).where(site.c.id.in_(part))).all())
        return out

    def ids_by_name(self, conn: Connection, names: Iterable[str]) -> dict[str, list[tuple[int, int]]]:
        """(site id, client id) pairs by normalised site name; site names repeat across clients."""
        wanted = sorted({normalise_key(n) for n in names if n})
        out: dict[str, list[tuple[int, int]]] = {}
        found = self.find(conn, ("name",), [(n,) for n in wanted])
        client_ids = self.client_of(conn, [i for ids in found.values() for i in ids])
        for (name,), ids in found.items():
            out[name] = [(i, client_ids[i]) for i in sorted(ids)]
        return out


sites = SiteRepository()


def resolve_site(
    conn: Connection, records: Sequence[Mapping[str, Any]], default_site: int | None = None
) -> list[dict | RecordError]:
    """Give each record a ``site_id`` and ``client_id`` from ``site_id`` / ``site_name`` /
    ``client_name`` / ``client_id``, or from ``default_site``; one query per kind for the batch."""
    site_names = {r["site_name"] for r in records if r.get("site_name")}
    client_names = {r["client_name"] for r in records if r.get("client_name")}
    by_site = sites.ids_by_name(conn, site_names) if site_names else {}
    by_client = client_api.lookup(conn, client_names) if client_names else {}
    given_ids = {number for r in records if (number := _site_number(r.get("site_id"))) is not None}
    if default_site:
        given_ids.add(default_site)
    client_of = sites.client_of(conn, given_ids) if given_ids else {}

    def one(record: Mapping[str, Any]) -> dict:
        record = dict(record)
        site_name = record.pop("site_name", None)
        client_name = record.pop("client_name", None)
        client_id = record.get("client_id")
        if client_name and not client_id:
            client_id = by_client.get(normalise_key(client_name))
            if client_id is None:
                raise RecordError(f"no client named {client_name!r}")
        site_id = record.get("site_id")
        if site_id not in (None, ""):
            number = _site_number(site_id)
            if number not in client_of:
                raise RecordError(f"no site with id {site_id!r}")
            site_id = number
        elif site_name:
            candidates = by_site.get(normalise_key(site_name), [])
            if client_id:
                candidates = [c for c in candidates if c[1] == int(client_id)]
            if not candidates:
                where = f" of client {client_name or client_id}" if client_id else ""
                raise RecordError(f"no site named {site_name!r}{where}")
            if len(candidates) > 1:
                raise RecordError(f"site name {site_name!r} is ambiguous: give client_name or site_id")
            site_id = candidates[0][0]
            client_of.setdefault(site_id, candidates[0][1])
        elif default_site:
            site_id = default_site
        else:
            raise RecordError("no site: give site_id or site_name, or configure a default site")
        record["site_id"] = site_id
        record["client_id"] = client_of[site_id]
        return record

    return [Repository._try(one, r) for r in records]



def _site_number(value: Any) -> int | None:
    """A site id given as a whole number or as decimal digits (a spreadsheet cell, a CSV field),
    else None."""
    if type(value) is int:  # the common case, from a directory or a database: no text round trip
        return value if value >= 0 else None
    text = str(value or "").strip()
    return int(text) if text.isdecimal() else None  # not isdigit: "²" is a digit int() refuses
