"""Sync positions (Graph delta links, LDAP USNs, IMAP UIDs), committed with the data they cover,
and the fingerprint of what a scope's last complete read returned (``ReadContext.same_content``)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from halodb.state.scope import Scope
from halodb.state.tables import cursor


def get(conn: Connection, scope: Scope) -> str | None:
    """The stored position of ``scope``, or None before its first complete read."""
    return conn.execute(select(cursor.c.position).where(scope.where(cursor))).scalar()


def put(conn: Connection, scope: Scope, position: str | None, now: dt.datetime) -> None:
    """Store a new position in the caller's transaction (the one writing the covered data)."""
    _put(conn, scope, now, position=position)


def content(conn: Connection, scope: Scope) -> str | None:
    """The content fingerprint stored by ``scope``'s last complete read, or None."""
    return conn.execute(select(cursor.c.content).where(scope.where(cursor))).scalar()


def put_content(conn: Connection, scope: Scope, fingerprint: str | None, now: dt.datetime) -> None:
    """Store (or, with None, forget) the content fingerprint in the caller's transaction."""
    _put(conn, scope, now, content=fingerprint)


def _put(conn: Connection, scope: Scope, now: dt.datetime, **values) -> None:
    done = conn.execute(update(cursor).where(scope.where(cursor)).values(**values, updated=now)).rowcount
    if not done:
        conn.execute(insert(cursor).values(**scope.values(), **values, updated=now))
