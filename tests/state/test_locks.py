import datetime as dt

from halodb.state.locks import Lease
from halodb.state.tables import lock
from sqlalchemy import select

T0 = dt.datetime(2026, 1, 1, 12, 0, 0)


class Clock:
    def __init__(self, now=T0):
        self.now = now

    def __call__(self):
        return self.now


def lease(halo, owner, clock, instance=None):
    return Lease(halo, "SqlImport/1/Users", instance=instance or owner, owner=owner, clock=clock, ttl=dt.timedelta(minutes=10))


def test_second_owner_is_refused_and_told_who_holds_it(halo):
    clock = Clock()
    assert lease(halo, "5min", clock).acquire() is None
    holder = lease(halo, "daily", clock).acquire()
    assert (holder.instance, holder.since, holder.expires) == ("5min", T0, T0 + dt.timedelta(minutes=10))


def test_release_lets_the_next_owner_in(halo):
    clock = Clock()
    first = lease(halo, "5min", clock)
    first.acquire()
    first.release()
    assert lease(halo, "daily", clock).acquire() is None


def test_expired_lease_of_a_dead_run_is_taken_over(halo):
    clock = Clock()
    dead = lease(halo, "5min", clock)
    dead.acquire()  # the process is killed: no release
    clock.now = T0 + dt.timedelta(minutes=9)
    assert lease(halo, "daily", clock).acquire() is not None  # still within the lease
    clock.now = T0 + dt.timedelta(minutes=11)
    assert lease(halo, "daily", clock).acquire() is None
    assert dead.renew() is False  # the dead run, if it woke up, would know it lost the lease


def test_renew_pushes_the_expiry_forward(halo):
    clock = Clock()
    mine = lease(halo, "5min", clock)
    mine.acquire()
    clock.now = T0 + dt.timedelta(minutes=8)
    assert mine.renew() is True
    clock.now = T0 + dt.timedelta(minutes=15)
    assert lease(halo, "daily", clock).acquire() is not None
    with halo.connect() as conn:
        assert conn.execute(select(lock.c.expires)).scalar_one() == T0 + dt.timedelta(minutes=18)


def test_renewing_an_entity_lock_keeps_the_time_it_was_taken(halo):
    # `halodb status` and "locked by ... since" show `acquired`: a heartbeat after every batch
    # must push the expiry, not the start. (PostgreSQL and SQL Server hold a session lock and
    # keep the row for people to read; SQLite holds the row alone.)
    from halodb.state.locks import EntityLock

    clock = Clock()
    mine = EntityLock(halo, "SqlImport/1/Users", instance="5min", owner="5min-a", clock=clock, ttl=dt.timedelta(minutes=10))
    assert mine.acquire() is None
    try:
        clock.now = T0 + dt.timedelta(minutes=8)
        assert mine.renew() is True
        with halo.connect() as conn:
            row = conn.execute(select(lock.c.acquired, lock.c.expires)).one()
        assert tuple(row) == (T0, T0 + dt.timedelta(minutes=18))
    finally:
        mine.release()
