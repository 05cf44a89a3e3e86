"""A Halo fixture database for the demo and the tests - never used against a real Halo.

Creates the schema subset and the rows every Halo installation has: the control row, the
"Unassigned" pseudo-agent, and an API-only agent for the integrator to act as.
"""

from __future__ import annotations

from sqlalchemy import insert
from sqlalchemy.engine import Connection, Engine

from halodb.halo.agents import UNASSIGNED
from halodb.halo.schema import area, control, create_fixture_schema, field, importcsv, site, sqlimport, typeinfo, uname, users, xtype

INTEGRATOR_AGENT = 2


def create_halo_fixture(engine: Engine, *, halo_url: str = "https://halo.example.com") -> None:
    """An empty Halo: schema, control row, Unassigned agent, integrator agent (id 2)."""
    create_fixture_schema(engine)
    with engine.begin() as conn:
        seed(conn, halo_url=halo_url)


def seed(conn: Connection, *, halo_url: str) -> None:
    # No explicit ids: an identity column hands out 1 and 2 in an empty table on every backend,
    # and PostgreSQL's sequence would otherwise not know those ids are taken.
    def agent(name: str, api: bool) -> int:
        values = {"name": name, "isdisabled": False, "isapiagent": api}
        return conn.execute(insert(uname).returning(uname.c.id), values).scalar_one()

    assert agent("Unassigned", False) == UNASSIGNED
    integrator = agent("Halo Integrator", True)
    assert integrator == INTEGRATOR_AGENT
    conn.execute(insert(control).values(id=1, loginas_halointegrator=integrator, halo_url=halo_url))


# -- sample content for the demo (and anything else that needs a populated fixture Halo) ------


def add_clients(conn: Connection, clients: list[tuple[str, str | None, list[str]]]) -> dict[tuple[str, str], tuple[int, int]]:
    """Clients (name, website, site names) with their sites; returns (client, site) -> (site id, client id)."""
    out = {}
    for name, website, site_names in clients:
        client_id = conn.execute(insert(area).returning(area.c.id), {"name": name, "website": website}).scalar_one()
        for site_name in site_names:
            site_id = conn.execute(insert(site).returning(site.c.id), {"name": site_name, "client_id": client_id}).scalar_one()
            out[(name, site_name)] = (site_id, client_id)
    return out


def add_agents(conn: Connection, agents: list[tuple[str, str]]) -> None:
    """Ordinary (not API-only) agents from (name, email)."""
    conn.execute(insert(uname), [{"name": n, "email": e, "isdisabled": False, "isapiagent": False} for n, e in agents])


def add_user(conn: Connection, **values) -> int:
    """One end user from API field names; returns its id."""
    return conn.execute(insert(users).returning(users.c.id), values).scalar_one()


def add_asset_types(conn: Connection, types: dict[str, list[str]]) -> None:
    """Asset types with their fields, in slot order."""
    for type_name, field_names in types.items():
        type_id = conn.execute(insert(xtype).returning(xtype.c.id), {"name": type_name}).scalar_one()
        for seq, field_name in enumerate(field_names, start=1):
            field_id = conn.execute(insert(field).returning(field.c.id), {"name": field_name, "kind": "T"}).scalar_one()
            conn.execute(insert(typeinfo), {"assettype_id": type_id, "seq": seq, "field_id": field_id, "kind": "T"})


def add_spreadsheet_imports(conn: Connection, sheets: dict[str, str]) -> None:
    """Scheduled spreadsheet imports, enabled for the integrator: import type -> file path."""
    conn.execute(
        insert(importcsv),
        [{"name": f"Demo {kind}", "type": kind, "filepath": path, "matching_field": None, "integrator_enabled": True} for kind, path in sheets.items()],
    )


def add_sql_import(conn: Connection, **values) -> None:
    """A SQL import enabled for the integrator, from its API field names."""
    conn.execute(insert(sqlimport), {"integrator_enabled": True, **values})
