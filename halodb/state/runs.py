"""The run log: one ``halodb_run`` row per entity run, written as the run starts and ends."""

from __future__ import annotations

import datetime as dt
import os
import socket
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from halodb.state.scope import Scope
from halodb.state.tables import run

COUNTERS = ("fetched", "created", "updated", "unchanged", "deactivated", "held_back", "quarantined")


def start(conn: Connection, instance: str, scope: Scope, now: dt.datetime, *, dry_run: bool, halo_table: str | None = None) -> int:
    """Record that an entity run started; return its id (the run id links and changes carry).

    ``halo_table`` names the Halo table the entity writes, as audit rows do ("USERS"): the
    change set of the run lists its creates under it (``changes.of_run``)."""
    values = {
        **scope.values(), "instance": instance, "started": now, "status": "running", "dry_run": dry_run, "halo_table": halo_table,
        "host": socket.gethostname(), "pid": os.getpid(), **dict.fromkeys(COUNTERS, 0),
    }  # fmt: skip
    return conn.execute(insert(run).returning(run.c.id), values).scalar_one()


def finish(conn: Connection, run_id: int, now: dt.datetime, status: str, counters: dict[str, Any], error: str | None) -> None:
    """Record how an entity run ended."""
    values = {k: counters.get(k, 0) for k in COUNTERS}
    conn.execute(
        update(run).where(run.c.id == run_id).values(finished=now, status=status, error=(error or None) and error[:4000], **values)
    )


def reap(conn: Connection, scope: Scope, now: dt.datetime, reason: str) -> list[dict[str, Any]]:
    """Mark runs of ``scope`` still "running" as failed. Call only while holding the scope's
    lock: then no live process can own them, so they died (SIGKILL, power loss, crash)."""
    stmt = select(run.c.id, run.c.instance, run.c.pid).where(scope.where(run), run.c.status == "running")
    dead = [dict(r._mapping) for r in conn.execute(stmt)]
    if dead:
        conn.execute(
            update(run)
            .where(run.c.id.in_([d["id"] for d in dead]))
            .values(status="failed", finished=now, error=reason[:4000])
        )
    return dead
