"""Leases on ``halodb_lock``: one instance at a time per (integration, connection, entity).

A lease works on every backend and dies by itself: a run killed mid-sync holds its lease only
until ``expires``, and the next run takes it over. The holder renews the lease after every
batch, so a long sync never loses it while it is alive.

(SQL Server's ``sp_getapplock`` and PostgreSQL's advisory locks, which die with the session,
are the planned refinement; the lease is the portable base they fall back to.)
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine
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
