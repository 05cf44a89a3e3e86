"""Agents (Halo table ``uname``). Agent 1 is Halo's "Unassigned" pseudo-agent."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from halodb.halo.repository import Repository, keyed
from halodb.halo.schema import uname

UNASSIGNED = 1


@dataclass(frozen=True)
class Agent:
    id: int
    name: str
    email: str | None
    is_api_agent: bool
    disabled: bool


class AgentRepository(Repository):
    table = uname
    audit_name = "UNAME"
    writable = ("name", "email", "isdisabled", "azureoid")
    inactive_field = "isdisabled"
    locked_field = None

    def get(self, conn: Connection, agent_id: int) -> Agent | None:
        """One agent by id, or None."""
        row = conn.execute(select(*keyed(*uname.c)).where(uname.c.id == agent_id)).mappings().first()
        if row is None:
            return None
        return Agent(row["id"], row["name"], row["email"], bool(row["isapiagent"]), bool(row["isdisabled"]))

    def count(self, conn: Connection, *, active_only: bool = True) -> int:
        """Agents, without the Unassigned pseudo-agent."""
        stmt = select(func.count()).select_from(uname).where(uname.c.id != UNASSIGNED)
        if active_only:
            stmt = stmt.where(uname.c.isdisabled == False)  # noqa: E712
        return conn.execute(stmt).scalar_one()


agents = AgentRepository()
