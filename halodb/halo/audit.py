"""Halo's change history: one ``audit`` row per changed field, attributed to the integrator agent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from halodb import bulk
from halodb.halo.schema import audit

if TYPE_CHECKING:
    from halodb.halo.repository import WriteContext

_MAX_VALUE = 4000  # audit.afrom / audit.ato are nvarchar(4000)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)[:_MAX_VALUE]


def row(table_name: str, record_id: int, field: str, old: Any, new: Any, ctx: "WriteContext") -> dict:
    """The audit row for one field of one record going from ``old`` to ``new``."""
    return {
        "table_name": table_name,
        "id1": record_id,
        "value": field,
        "from_value": _text(old),
        "to_value": _text(new),
        "date": ctx.now,
        "agent_id": ctx.agent_id,
    }


def write(conn: Connection, rows: Sequence[dict]) -> None:
    """Insert audit rows in one executemany (no ids needed back)."""
    if rows:
        bulk.insert_rows(conn, audit, rows)
