"""Small builders shared by tests: sample Halo rows and in-memory sources."""

from __future__ import annotations

from openpyxl import Workbook
from sqlalchemy import insert, select

from halodb.halo import REPOSITORIES
from halodb.halo.repository import keyed
from halodb.halo.schema import area, site, users
from halodb.sync.entity import Entity, SourceRecord


def add_client_with_site(engine, client="Contoso", site_name="Head Office") -> tuple[int, int]:
    with engine.begin() as conn:
        client_id = conn.execute(insert(area).returning(area.c.id), {"name": client}).scalar_one()
        site_id = conn.execute(insert(site).returning(site.c.id), {"name": site_name, "client_id": client_id}).scalar_one()
    return client_id, site_id


def user_records(n: int, site_id: int, start: int = 0) -> list[SourceRecord]:
    return [
        SourceRecord(f"u{i}", {"firstname": f"First{i}", "surname": f"Last{i}", "emailaddress": f"user{i}@contoso.example", "site_id": site_id})
        for i in range(start, start + n)
    ]


class ListSource:
    """A source whose records a test sets; can fail after some records or report incompleteness."""

    def __init__(self, records, fail_after: int | None = None, incomplete: str | None = None):
        self.records = list(records)
        self.fail_after = fail_after
        self.incomplete = incomplete

    def __call__(self, ctx):
        for i, record in enumerate(self.records):
            if self.fail_after is not None and i == self.fail_after:
                raise OSError("source went away halfway")
            yield record
        if self.incomplete:
            ctx.mark_incomplete(self.incomplete)


def users_entity(source, **kw) -> Entity:
    return Entity(
        integration="Test", connection="1", name="Users", label="test users", repository=REPOSITORIES["Users"],
        read=source, match_fields=kw.pop("match_fields", [("emailaddress",)]), **kw,
    )


def halo_users(engine) -> dict[str, dict]:
    """Every Halo user by email."""
    with engine.connect() as conn:
        return {r["emailaddress"]: dict(r) for r in conn.execute(select(*keyed(*users.c))).mappings()}


def xlsx(path, rows):
    """Write ``rows`` (the first one the header) as a one-sheet workbook at ``path``."""
    book = Workbook()
    for row in rows:
        book.active.append(list(row))
    book.save(path)
    return path

