"""Azure AD (Entra ID) connections stored in Halo (``azureadconnection``), their group-based
site mappings (``azureadmapping``) and the tenant → client map (``areaazuretenant``). Each
connection has its own Last Sync / Last Error."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from halodb.halo.imports import record_last_sync
from halodb.halo.repository import keyed, normalise_key
from halodb.halo.schema import areaazuretenant, azureadconnection, azureadmapping, site


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


def tenant_clients(conn: Connection, tenant_ids: list[str]) -> dict[str, list[int]]:
    """Client ids mapped to each Azure tenant id (trimmed, any case), one query for all."""
    wanted = {normalise_key(t) for t in tenant_ids if t and t.strip()}
    out: dict[str, list[int]] = {t: [] for t in wanted}
    if not wanted:
        return out
    column = func.lower(func.ltrim(func.rtrim(areaazuretenant.c.azure_tenant_id)))
    stmt = (
        select(areaazuretenant.c.azure_tenant_id, areaazuretenant.c.client_id)
        .where(column.in_(sorted(wanted)))
        .order_by(areaazuretenant.c.client_id)
    )
    for tenant_id, client_id in conn.execute(stmt):
        ids = out[normalise_key(tenant_id)]
        if client_id not in ids:
            ids.append(client_id)
    return out


def site_clients(conn: Connection, site_ids: list[int]) -> dict[int, int]:
    """The client of each existing site; missing sites are left out."""
    wanted = sorted({i for i in site_ids if i is not None})
    if not wanted:
        return {}
    return dict(conn.execute(select(site.c.id, site.c.client_id).where(site.c.id.in_(wanted))).all())


def first_site(conn: Connection, client_id: int) -> int | None:
    """The client's first active site (lowest id): where a mapped tenant's unmatched users land
    when the connection names no site of its own."""
    stmt = (
        select(site.c.id)
        .where(site.c.client_id == client_id, site.c.inactive == False)  # noqa: E712
        .order_by(site.c.id)
        .limit(1)
    )
    return conn.execute(stmt).scalar()


def record_connection(conn: Connection, connection_id: int, when: dt.datetime | None, error: str | None) -> None:
    """Last Sync (on success) and Last Error (cleared on success) of one connection."""
    record_last_sync(conn, azureadconnection, connection_id, when, error)
