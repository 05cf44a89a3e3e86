"""Azure AD (Entra ID) connections stored in Halo (``azureadconnection``) and their group-based
site mappings (``azureadmapping``). Each connection has its own Last Sync / Last Error."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from halodb.halo.repository import keyed
from halodb.halo.schema import azureadconnection, azureadmapping

_ERROR_LENGTH = 4000


def connections(conn: Connection) -> list[dict[str, Any]]:
    """Every Azure AD connection enabled for the integrator, oldest first."""
    stmt = (
        select(*keyed(*azureadconnection.c))
        .where(azureadconnection.c.halointegratorenabled == True)  # noqa: E712
        .order_by(azureadconnection.c.id)
    )
    return [dict(r) for r in conn.execute(stmt).mappings()]


def mappings(conn: Connection, connection_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Group → site mappings per connection id, in sequence order (one query for all)."""
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in connection_ids}
    if not connection_ids:
        return out
    stmt = (
        select(*keyed(*azureadmapping.c))
        .where(azureadmapping.c.connection_id.in_(connection_ids))
        .order_by(azureadmapping.c.connection_id, azureadmapping.c.sequenceid, azureadmapping.c.id)
    )
    for row in conn.execute(stmt).mappings():
        out[row["connection_id"]].append(dict(row))
    return out


def record_connection(conn: Connection, connection_id: int, when: dt.datetime | None, error: str | None) -> None:
    """Last Sync (on success) and Last Error (cleared on success) of one connection."""
    values: dict[str, Any] = {"lasterror": error[:_ERROR_LENGTH] if error else None}
    if when is not None:
        values["lastsync"] = when
    conn.execute(update(azureadconnection).where(azureadconnection.c.id == connection_id).values(values))
