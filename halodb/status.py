"""``halodb status``: what every instance has been doing, read from halodb's own tables.

Instances seen; per entity the last run, last success, last error and rows changed; who holds a
lock right now; runs that died; entities with no success for longer than a threshold.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

from sqlalchemy import case, func, select  # no FILTER (...): SQL Server lacks it
from sqlalchemy.engine import Engine

from halodb.state.tables import lock, run

DIED = "the run stopped without finishing"


@dataclass
class EntityStatus:
    scope: str
    instance: str  # of the last run
    last_run: dt.datetime
    last_status: str
    last_success: dt.datetime | None
    last_error: str | None
    changed: int  # created + updated + deactivated in the last run
    stale: bool


@dataclass
class Status:
    instances: list[tuple[str, dt.datetime]] = field(default_factory=list)  # (instance, last seen)
    entities: list[EntityStatus] = field(default_factory=list)
    locks: list[dict] = field(default_factory=list)
    died: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def status(engine: Engine, now: dt.datetime, stale_after: dt.timedelta = dt.timedelta(hours=24)) -> Status:
    """Everything ``halodb status`` shows, as of ``now`` (UTC)."""
    out = Status()
    with engine.connect() as conn:
        out.instances = [tuple(r) for r in conn.execute(select(run.c.instance, func.max(run.c.started)).group_by(run.c.instance).order_by(run.c.instance))]
        latest = (
            select(run.c.integration, run.c.connection, run.c.entity, func.max(run.c.id).label("last_id"),
                   func.max(case((run.c.status == "ok", run.c.finished))).label("last_success"))
            .where(run.c.dry_run == False)  # noqa: E712
            .group_by(run.c.integration, run.c.connection, run.c.entity)
            .subquery()
        )  # fmt: skip
        rows = conn.execute(
            select(run, latest.c.last_success).join(latest, run.c.id == latest.c.last_id).order_by(run.c.integration, run.c.connection, run.c.entity)
        ).mappings()
        for r in rows:
            last_success = r["last_success"]
            error = r["error"] if r["status"] != "ok" else None
            out.entities.append(EntityStatus(
                scope=f"{r['integration']}/{r['connection']}/{r['entity']}", instance=r["instance"], last_run=r["started"],
                last_status=r["status"], last_success=last_success, last_error=error,
                changed=r["created"] + r["updated"] + r["deactivated"],
                stale=last_success is None or now - last_success > stale_after,
            ))  # fmt: skip
        out.locks = [dict(r) for r in conn.execute(select(lock).where(lock.c.expires > now).order_by(lock.c.name)).mappings()]
        died = select(run).where(run.c.error.like(f"{DIED}%")).order_by(run.c.id.desc()).limit(10)
        out.died = [dict(r) for r in conn.execute(died).mappings()]
    return out
