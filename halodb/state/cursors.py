"""Sync positions (Graph delta links, LDAP USNs, IMAP UIDs), committed with the data they cover,
and the fingerprint of what a scope's last complete read returned (``ReadContext.same_content``)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from halodb.state.scope import Scope
from halodb.state.tables import cursor


def get(conn: Connection, scope: Scope) -> str | None:
    """The stored position of ``scope``, or None before its first complete read."""
    return conn.execute(select(cursor.c.position).where(scope.where(cursor))).scalar()


def put(conn: Connection, scope: Scope, position: str | None, now: dt.datetime) -> None:
    """Store a new position in the caller's transaction (the one writing the covered data)."""
    _put(conn, scope, now, position=position)


def content(conn: Connection, scope: Scope) -> tuple[str | None, int]:
    """The content fingerprint stored by ``scope``'s last complete read (or None), and how many
    writing transactions runs of sources that fingerprint their content have committed so far."""
    row = conn.execute(select(cursor.c.content, cursor.c.writes).where(scope.where(cursor))).first()
    return (row[0], row[1] or 0) if row else (None, 0)


def note_write(conn: Connection, scope: Scope, now: dt.datetime) -> None:
    """In a transaction that writes to the scope (a batch, or a run's last): forget the stored
    fingerprint, and count the write."""
    stmt = update(cursor).where(scope.where(cursor)).values(content=None, writes=func.coalesce(cursor.c.writes, 0) + 1, updated=now)
    if not conn.execute(stmt).rowcount:
        conn.execute(insert(cursor).values(**scope.values(), writes=1, updated=now))


def put_content(conn: Connection, scope: Scope, fingerprint: str, writes: int, now: dt.datetime) -> bool:
    """Store the fingerprint of a complete read, in its last transaction (which counted itself
    with ``note_write``), if the scope has seen ``writes`` writes: those the run found and its own.
    A different count means another run wrote meanwhile (one that lost its lease), and the read
    no longer describes the scope."""
    stmt = update(cursor).where(scope.where(cursor), func.coalesce(cursor.c.writes, 0) == writes)
    return bool(conn.execute(stmt.values(content=fingerprint, updated=now)).rowcount)


def _put(conn: Connection, scope: Scope, now: dt.datetime, **values) -> None:
    done = conn.execute(update(cursor).where(scope.where(cursor)).values(**values, updated=now)).rowcount
    if not done:
        conn.execute(insert(cursor).values(**scope.values(), **values, updated=now))
