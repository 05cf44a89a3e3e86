"""The change set: per run, per record, per field, old -> new. ``--dry-run`` fills it and rolls back.

Updates, deactivations, reactivations and adoptions are rows of ``halodb_change``. Creates are
not: each new record's link says which run created it (``created_run``, migration 0004), and
``of_run`` lists them from there. A change row per create repeated the whole new Halo row, one
row per record of a first load, in the customer's database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Unicode, insert, literal, select
from sqlalchemy.engine import Connection

from halodb import bulk
from halodb.state.tables import change, link, run

_MAX = 4000


@dataclass(frozen=True)
class Change:
    action: str  # create, update, deactivate, reactivate, adopt
    halo_table: str
    halo_id: int | None
    source_key: str
    field: str | None = None
    old: Any = None
    new: Any = None


_KEYS = ("run_id", "action", "halo_table", "halo_id", "source_key", "field", "old_value", "new_value")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if type(value) is str else str(value)
    return text if len(text) <= _MAX else text[:_MAX]


def summary(row: dict) -> str:
    """How a run report shows a record it creates: its non-empty values, by field name."""
    return ", ".join([f"{k}={v}" for k, v in row.items() if v is not None and v != "" and v is not False])[:_MAX]


def write(conn: Connection, run_id: int, changes: Sequence[Change]) -> None:
    """Store one batch of changes."""
    if changes:
        bulk.insert_values(
            conn, change, _KEYS,
            [(run_id, c.action, c.halo_table, c.halo_id, c.source_key, c.field, _text(c.old), _text(c.new)) for c in changes],
        )  # fmt: skip


def _creates():
    """The creates links record: (run, Halo table, Halo id, source key), one per created link."""
    return select(link.c.created_run, run.c.halo_table, link.c.halo_id, link.c.source_key).join_from(
        link, run, run.c.id == link.c.created_run
    )


def keep_creates(conn: Connection, link_ids: Sequence[int]) -> None:
    """Before the links ``link_ids`` are dropped, the creates they record become change rows of
    the runs that made them, so a run's change set still lists them (``links.forget``)."""
    source = _creates().add_columns(literal("create", Unicode(20))).where(link.c.id.in_(link_ids), run.c.halo_table.is_not(None))
    conn.execute(insert(change).from_select(["run_id", "halo_table", "halo_id", "source_key", "action"], source))


def of_run(conn: Connection, run_id: int) -> list[Change]:
    """The change set of one entity run: its creates (from the links it created, in order), then
    its change rows. A create lists no values; the Halo record holds them. (``created_run`` has no
    index: a first load would pay for it, and only this reads by it.)"""
    created = _creates().where(link.c.created_run == run_id).order_by(link.c.id)
    creates = [Change("create", table, halo_id, key) for _, table, halo_id, key in conn.execute(created)]
    rows = conn.execute(select(change).where(change.c.run_id == run_id).order_by(change.c.id)).mappings()
    return creates + [Change(r["action"], r["halo_table"], r["halo_id"], r["source_key"], r["field"], r["old_value"], r["new_value"]) for r in rows]
