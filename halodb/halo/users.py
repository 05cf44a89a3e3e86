"""End users (Halo table ``users``): every user belongs to a site, and through it to a client."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection

from halodb.errors import RecordError
from halodb.halo.repository import Repository
from halodb.halo.sites import Known, resolve_known, resolve_site
from halodb.halo.schema import area, site, users


class UserRepository(Repository):
    table = users
    audit_name = "USERS"
    writable = (
        "name", "firstname", "surname", "emailaddress", "email2", "site_id", "client_id", "inactive",
        "isserviceaccount", "phonenumber", "mobilenumber", "title", "department", "login", "azureoid",
        "activedirectory_guid", "other1",
    )  # fmt: skip
    required = ("name", "site_id")
    created_field = "datecreated"
    references = ((site.c.id, site.c.name, site.c.client_id), (area.c.id, area.c.name))  # resolve_site

    def new_known(self) -> Known:
        return Known()

    def prepare(
        self, conn: Connection, records: Sequence[Mapping[str, Any]], *, default_site: int | None = None, known: Known | None = None
    ) -> list[dict | RecordError]:
        """Resolve sites and clients for the batch, build missing display names, coerce values.

        ``known``: the sites and clients the run has looked up so far; only the rest is read."""
        return self._finish(resolve_site(conn, records, default_site, known))

    def prepare_known(self, records: Sequence[Mapping[str, Any]], known: Known, *, default_site: int | None = None) -> list[dict | RecordError] | None:
        """``prepare`` from the sites and clients in ``known`` alone, without the database; None
        if a record names one it does not hold."""
        resolved = resolve_known(records, default_site, known)
        return None if resolved is None else self._finish(resolved)

    def _finish(self, resolved: list[dict | RecordError]) -> list[dict | RecordError]:
        # Each resolved record is a copy of its source record, or its error.
        return [r if isinstance(r, RecordError) else self._try(self.coerce, _add_name(r)) for r in resolved]


def _add_name(record: dict) -> dict:
    # Halo shows `name`; directories often give only first and last names.
    if not record.get("name"):
        first, last = record.get("firstname"), record.get("surname")
        record["name"] = " ".join(filter(None, (str(first or "").strip(), str(last or "").strip()))) or None
    return record


users_repo = UserRepository()
