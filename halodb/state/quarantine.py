"""Quarantine: source records that could not be mapped or written, with the reason.

A quarantined record is retried by every later run (the source hands it over again); once it
goes through, its quarantine row is removed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection

from halodb.halo.repository import chunks
from halodb.state.scope import Scope
from halodb.state.tables import quarantine


def put(conn: Connection, scope: Scope, run_id: int, items: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
    """Quarantine (source key, reason, record) items; a key already there gets the new reason."""
    if not items:
        return
    by_key = {key: (reason[:1000], json.dumps(record, default=str, ensure_ascii=False)) for key, reason, record in items}
    existing: set[str] = set()
    for part in chunks(sorted(by_key)):
        existing.update(conn.execute(select(quarantine.c.source_key).where(scope.where(quarantine), quarantine.c.source_key.in_(part))).scalars())
    fresh = [k for k in by_key if k not in existing]
    if existing:
        stmt = (
            update(quarantine)
            .where(scope.where(quarantine), quarantine.c.source_key == bindparam("_key"))
            .values(reason=bindparam("_reason"), record=bindparam("_record"), last_run=run_id)
        )
        conn.execute(stmt, [{"_key": k, "_reason": by_key[k][0], "_record": by_key[k][1]} for k in sorted(existing)])
    if fresh:
        conn.execute(
            insert(quarantine),
            [{**scope.values(), "source_key": k, "reason": by_key[k][0], "record": by_key[k][1],
              "first_run": run_id, "last_run": run_id} for k in fresh],
        )  # fmt: skip


def release(conn: Connection, scope: Scope, keys: Iterable[str]) -> None:
    """Remove records that went through from quarantine."""
    for part in chunks(sorted(set(keys))):
        conn.execute(delete(quarantine).where(scope.where(quarantine), quarantine.c.source_key.in_(part)))


def entries(conn: Connection, scope: Scope | None = None) -> list[dict[str, Any]]:
    """Everything in quarantine (for one scope, or all), oldest first."""
    stmt = select(quarantine).order_by(quarantine.c.id)
    if scope is not None:
        stmt = stmt.where(scope.where(quarantine))
    return [dict(r) for r in conn.execute(stmt).mappings()]
