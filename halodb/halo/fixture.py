"""A Halo fixture database for the demo and the tests - never used against a real Halo.

Creates the schema subset and the rows every Halo installation has: the control row, the
"Unassigned" pseudo-agent, and an API-only agent for the integrator to act as.
"""

from __future__ import annotations

from sqlalchemy import insert
from sqlalchemy.engine import Connection, Engine

from halodb.halo.agents import UNASSIGNED
from halodb.halo.schema import control, create_fixture_schema, uname

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
