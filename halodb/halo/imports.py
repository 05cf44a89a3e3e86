"""Import configurations stored in Halo: SQL imports (``sqlimport``) and scheduled spreadsheet
imports (``importcsv``). Each row is one connection with its own Last Sync / Last Error."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.engine import Connection

from halodb.halo.repository import keyed
from halodb.halo.schema import importcsv, sqlimport

_ERROR_LENGTH = 4000

#: Halo's names for the tables a SQL import can fill, by the entity name halodb uses.
SQL_IMPORT_TABLES = {"users": "Users", "device": "Assets", "area": "Clients"}


def sql_imports(conn: Connection) -> list[dict[str, Any]]:
    """Every SQL import enabled for the integrator, oldest first."""
    stmt = select(*keyed(*sqlimport.c)).where(sqlimport.c.integrator_enabled == True).order_by(sqlimport.c.id)  # noqa: E712
    return [dict(r) for r in conn.execute(stmt).mappings()]


def spreadsheet_imports(conn: Connection) -> list[dict[str, Any]]:
    """Every scheduled spreadsheet import enabled for the integrator, oldest first."""
    stmt = select(*keyed(*importcsv.c)).where(importcsv.c.integrator_enabled == True).order_by(importcsv.c.id)  # noqa: E712
    return [dict(r) for r in conn.execute(stmt).mappings()]


def record_last_sync(conn: Connection, table: Table, row_id: int, when: dt.datetime | None, error: str | None) -> None:
    """Last Sync (``lastsync``, on success) and Last Error (``lasterror``, cleared on success) of
    one row of a Halo connection table: SQL imports, spreadsheet imports, Azure AD connections."""
    values: dict[str, Any] = {"lasterror": error[:_ERROR_LENGTH] if error else None}
    if when is not None:
        values["lastsync"] = when
    conn.execute(update(table).where(table.c.id == row_id).values(values))


def record_sql_import(conn: Connection, row_id: int, when: dt.datetime | None, error: str | None) -> None:
    """Last Sync (on success) and Last Error (cleared on success) of one SQL import."""
    record_last_sync(conn, sqlimport, row_id, when, error)


def record_spreadsheet_import(conn: Connection, row_id: int, when: dt.datetime | None, error: str | None) -> None:
    """Last Sync (on success) and Last Error (cleared on success) of one spreadsheet import."""
    record_last_sync(conn, importcsv, row_id, when, error)
