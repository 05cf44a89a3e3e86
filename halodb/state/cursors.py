"""Sync positions (Graph delta links, LDAP USNs, IMAP UIDs), committed with the data they cover."""

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
    done = conn.execute(update(cursor).where(scope.where(cursor)).values(position=position, updated=now)).rowcount
    if not done:
        conn.execute(insert(cursor).values(**scope.values(), position=position, updated=now))
