"""Sync positions (Graph delta links, LDAP USNs, IMAP UIDs), committed with the data they cover,
and the fingerprint of what a scope's last complete read returned (``ReadContext.same_content``)."""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from halodb.state.scope import Scope
from halodb.state.tables import cursor


class Stored(NamedTuple):
    """A scope's cursor row as a run starts."""

    position: str | None  # where a change-tracking read resumes; None before its first complete read
    content: str | None  # the fingerprint the last complete read stored (same_content), or None
    writes: int  # writing transactions of runs whose source fingerprints its content, so far


def read(conn: Connection, scope: Scope) -> Stored:
    """``scope``'s cursor row, in one query (a scope without one has stored nothing yet)."""
    row = conn.execute(select(cursor.c.position, cursor.c.content, cursor.c.writes).where(scope.where(cursor))).first()
    return Stored(row[0], row[1], row[2] or 0) if row else Stored(None, None, 0)


def get(conn: Connection, scope: Scope) -> str | None:
    """The stored position of ``scope``, or None before its first complete read."""
    return read(conn, scope).position


def put(conn: Connection, scope: Scope, position: str | None, now: dt.datetime) -> None:
    """Store a new position in the caller's transaction (the one writing the covered data)."""
    _upsert(conn, scope, now, {"position": position}, {"position": position})


def note_write(conn: Connection, scope: Scope, now: dt.datetime) -> None:
    """In a transaction that writes to the scope (a batch, or a run's last): forget the stored
    fingerprint, and count the write."""
    _upsert(conn, scope, now, {"content": None, "writes": func.coalesce(cursor.c.writes, 0) + 1}, {"writes": 1})


def put_content(conn: Connection, scope: Scope, fingerprint: str, writes: int, now: dt.datetime) -> bool:
    """Store the fingerprint of a complete read, in its last transaction (which counted itself
    with ``note_write``), if the scope has seen ``writes`` writes: those the run found and its own.
    A different count means another run wrote meanwhile (one that lost its lease), and the read
    no longer describes the scope."""
    stmt = update(cursor).where(scope.where(cursor), func.coalesce(cursor.c.writes, 0) == writes)
    return bool(conn.execute(stmt.values(content=fingerprint, updated=now)).rowcount)


def _upsert(conn: Connection, scope: Scope, now: dt.datetime, changes: dict, first: dict) -> None:
    """Apply ``changes`` to the scope's cursor row, or create the row with ``first``."""
    if not conn.execute(update(cursor).where(scope.where(cursor)).values(**changes, updated=now)).rowcount:
        conn.execute(insert(cursor).values(**scope.values(), **first, updated=now))
