"""Locks between instances: one run at a time per (integration, connection, entity).

* SQL Server: ``sp_getapplock`` owned by the session; PostgreSQL: ``pg_try_advisory_lock``.
  Both are held on a connection kept open for the whole entity run, so a killed process loses
  its lock the moment its session ends. They are released explicitly (the pool would keep the
  session - and the lock - alive); if the release fails the connection is invalidated.
* Every backend also writes a lease row in ``halodb_lock`` (who, since when, until when). On
  SQLite the lease *is* the lock: a run killed mid-sync holds it only until ``expires``. The
  holder renews the lease after every batch. Elsewhere the row tells ``halodb status`` and the
  skipping instance who holds the lock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import Unicode, bindparam, delete, insert, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from halodb.state.tables import lock

DEFAULT_TTL = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class Holder:
    """Who holds a lease another run wanted."""

    instance: str
    owner: str
    since: dt.datetime
    expires: dt.datetime


def new_owner(instance: str) -> str:
    """A name unique to this process and run, readable in ``halodb_lock``."""
    return f"{instance}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:100]


class Lease:
    """One lease; ``acquire`` returns None when it is ours, else who holds it."""

    def __init__(self, engine: Engine, name: str, *, instance: str, owner: str, clock, ttl: dt.timedelta = DEFAULT_TTL):
        self.engine, self.name, self.instance, self.owner = engine, name[:200], instance[:100], owner
        self.clock, self.ttl = clock, ttl

    def acquire(self) -> Holder | None:
        now = self.clock()
        values = {"owner": self.owner, "instance": self.instance, "acquired": now, "expires": now + self.ttl}
        with self.engine.begin() as conn:
            # Take over an expired lease (its holder died) or renew our own.
            taken = conn.execute(
                update(lock)
                .where(lock.c.name == self.name, (lock.c.expires < now) | (lock.c.owner == self.owner))
                .values(**values)
            ).rowcount
            if taken == 1:
                return None
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(lock).values(name=self.name, **values))
            return None
        except IntegrityError:  # someone else's live lease
            with self.engine.connect() as conn:
                row = conn.execute(select(lock).where(lock.c.name == self.name)).first()
            if row is None:  # released between our two statements: try once more
                return self.acquire()
            return Holder(row.instance, row.owner, row.acquired, row.expires)

    def holder(self) -> Holder | None:
        """Who the lease row names, if anyone."""
        with self.engine.connect() as conn:
            row = conn.execute(select(lock).where(lock.c.name == self.name)).first()
        return Holder(row.instance, row.owner, row.acquired, row.expires) if row else None

    def claim(self) -> None:
        """Write the lease row as ours whatever it said: we hold the session lock, so whoever
        the row names is gone."""
        now = self.clock()
        values = {"owner": self.owner, "instance": self.instance, "acquired": now, "expires": now + self.ttl}
        with self.engine.begin() as conn:
            if not conn.execute(update(lock).where(lock.c.name == self.name).values(**values)).rowcount:
                conn.execute(insert(lock).values(name=self.name, **values))

    def renew(self) -> bool:
        """Push the expiry forward; False if the lease was lost (expired and taken over)."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(lock).where(lock.c.name == self.name, lock.c.owner == self.owner).values(expires=self.clock() + self.ttl)
            ).rowcount
        return done == 1

    def release(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(lock).where(lock.c.name == self.name, lock.c.owner == self.owner))


# -- session locks (die with the session) ------------------------------------------------------

PG_TRY_LOCK = text("SELECT pg_try_advisory_lock(:key)")
PG_UNLOCK = text("SELECT pg_advisory_unlock(:key)")
# SET NOCOUNT ON keeps row-count messages from arriving before the SELECT's result.
MSSQL_TRY_LOCK = text(
    "SET NOCOUNT ON; DECLARE @r int; "
    "EXEC @r = sp_getapplock @Resource = :resource, @LockMode = 'Exclusive', @LockOwner = 'Session', @LockTimeout = 0; "
    "SELECT @r"
).bindparams(bindparam("resource", type_=Unicode))
MSSQL_UNLOCK = text(
    "SET NOCOUNT ON; DECLARE @r int; "
    "EXEC @r = sp_releaseapplock @Resource = :resource, @LockOwner = 'Session'; "
    "SELECT @r"
).bindparams(bindparam("resource", type_=Unicode))


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for PostgreSQL's advisory locks."""
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big", signed=True)


def applock_resource(name: str) -> str:
    # sp_getapplock compares resources in binary and keeps 255 characters.
    return f"halodb:{name}"[:255]


def _try_session_lock(conn: Connection, name: str) -> bool:
    if conn.dialect.name == "postgresql":
        return bool(conn.execute(PG_TRY_LOCK, {"key": advisory_key(name)}).scalar())
    return conn.execute(MSSQL_TRY_LOCK, {"resource": applock_resource(name)}).scalar() >= 0


def _release_session_lock(conn: Connection, name: str) -> bool:
    if conn.dialect.name == "postgresql":
        return bool(conn.execute(PG_UNLOCK, {"key": advisory_key(name)}).scalar())
    return conn.execute(MSSQL_UNLOCK, {"resource": applock_resource(name)}).scalar() == 0


class EntityLock:
    """The lock a runner takes around one entity run, on whatever backend it is."""

    def __init__(self, engine: Engine, name: str, *, instance: str, owner: str, clock, ttl: dt.timedelta = DEFAULT_TTL):
        self.lease = Lease(engine, name, instance=instance, owner=owner, clock=clock, ttl=ttl)
        self.engine, self.name = engine, name
        self.session: Connection | None = None

    @property
    def uses_session_lock(self) -> bool:
        return self.engine.dialect.name in ("postgresql", "mssql")

    def acquire(self) -> Holder | None:
        """None when the lock is ours; otherwise who holds it (as far as the lease row says)."""
        if not self.uses_session_lock:
            return self.lease.acquire()
        for _ in range(20):
            conn = self.engine.connect()
            try:
                got = _try_session_lock(conn, self.name)
                conn.commit()
            except Exception:
                conn.invalidate()
                conn.close()
                raise
            if got:
                self.session = conn
                self.lease.claim()
                return None
            conn.close()
            holder = self.lease.holder()
            if holder is not None:
                return holder
            # The holder writes its row just after taking the lock, and unlocks just before
            # deleting it: without a row, look again in a moment.
            time.sleep(0.05)
        now = self.lease.clock()
        return Holder("(another instance)", "(unknown)", now, now)

    def renew(self) -> bool:
        if self.session is not None:
            # The session lock cannot be lost while we run; keep the row fresh, and write it
            # again only if someone deleted it (a renewal must not move the "since" time).
            if not self.lease.renew():
                self.lease.claim()
            return True
        return self.lease.renew()

    def release(self) -> None:
        # Session lock first: the next holder overwrites our row anyway, while a row deleted
        # before the unlock would leave a moment in which nobody can say who holds the lock.
        try:
            if self.session is not None:
                conn, self.session = self.session, None
                try:
                    if not _release_session_lock(conn, self.name):
                        raise RuntimeError("lock was not held")
                    conn.commit()
                    conn.close()
                except Exception:  # noqa: BLE001 - whatever went wrong, end the session: it ends the lock
                    conn.invalidate()
                    conn.close()
        finally:
            self.lease.release()
