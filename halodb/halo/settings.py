"""Halo's global settings that the integrator reads and writes (the one-row ``control`` table).

Per integration Halo keeps a triple: ``halointegrator_<family>`` (enabled for the integrator),
``..._lastsync`` (time of the last successful run) and ``..._lasterror`` (text of the last
failure, cleared on success). The integrator acts as the agent ``loginas_halointegrator``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from halodb.errors import UsageError
from halodb.halo.agents import Agent, agents
from halodb.halo.schema import CONTROL_INTEGRATIONS, control

_ERROR_LENGTH = 4000


@dataclass(frozen=True)
class IntegrationState:
    """What Halo shows for one integration."""

    enabled: bool
    last_sync: dt.datetime | None
    last_error: str | None


def _columns(integration: str):
    try:
        family = CONTROL_INTEGRATIONS[integration]
    except KeyError:
        raise UsageError(f"unknown integration {integration!r}") from None
    base = f"halointegrator_{family}"
    return control.c[base], control.c[f"{base}_lastsync"], control.c[f"{base}_lasterror"]


def integration_state(conn: Connection, integration: str) -> IntegrationState:
    """Enabled flag, Last Sync and Last Error of ``integration`` as stored in Halo."""
    enabled, last_sync, last_error = _columns(integration)
    row = conn.execute(select(enabled, last_sync, last_error)).first()
    if row is None:
        return IntegrationState(False, None, None)
    return IntegrationState(bool(row[0]), row[1], row[2])


def record_success(conn: Connection, integration: str, when: dt.datetime) -> None:
    """Set Last Sync to ``when`` and clear Last Error."""
    _, last_sync, last_error = _columns(integration)
    conn.execute(update(control).values({last_sync: when, last_error: None}))


def record_error(conn: Connection, integration: str, message: str) -> None:
    """Set Last Error; Last Sync keeps the time of the last success."""
    _, _, last_error = _columns(integration)
    conn.execute(update(control).values({last_error: message[:_ERROR_LENGTH]}))


def set_enabled(conn: Connection, integration: str, enabled: bool) -> None:
    """Switch an integration on or off for the integrator (what Halo's admin page does)."""
    column, _, _ = _columns(integration)
    conn.execute(update(control).values({column: enabled}))


def integrator_agent(conn: Connection) -> Agent | None:
    """The agent the integrator acts as, or None when Halo names none (or a missing one)."""
    agent_id = conn.execute(select(control.c.loginas_halointegrator)).scalar()
    return agents.get(conn, agent_id) if agent_id else None


def halo_url(conn: Connection) -> str | None:
    """The URL Halo has recorded for itself."""
    return conn.execute(select(control.c.halo_url)).scalar()


def mark_db_integrator_success(conn: Connection, success: bool) -> None:
    """Halo's health flag for the DB integrator (``_dbintegrator_success``)."""
    conn.execute(update(control).values(dbintegrator_success=success))
