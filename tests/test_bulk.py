"""Bulk writes (``halodb.bulk``): COPY on PostgreSQL, and what its failures look like to the engine."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, func, select, text

from halodb import bulk, database
from halodb.halo.schema import area, users
from halodb.state.tables import link
from halodb.sync.engine import Limits, SyncEngine
from tests.helpers import ListSource, add_client_with_site, user_records, users_entity


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # COPY is PostgreSQL's
def test_a_connection_lost_during_copy_is_retried_and_the_batch_written_once(halo, monkeypatch):
    # The server ends the session in the middle of a batch (a failover, a restart, a killed
    # backend). The COPY's error must look like SQLAlchemy's own for a dropped connection, so the
    # engine rolls back, reconnects and writes the batch again, instead of failing the run.
    _, site_id = add_client_with_site(halo)
    copy_values, killed = bulk.copy_values, []
    admin = create_engine(halo.url)

    def kill_then_copy(conn, table, keys, values):
        if not killed:
            pid = conn.connection.driver_connection.info.backend_pid
            with admin.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            killed.append(pid)
        return copy_values(conn, table, keys, values)

    monkeypatch.setattr(bulk, "copy_values", kill_then_copy)
    monkeypatch.setattr("halodb.sync.engine.time.sleep", lambda seconds: None)
    try:
        engine = SyncEngine(halo, instance="t", agent_id=2, limits=Limits(batch_size=3), is_transient=database.is_transient)
        report = engine.run(users_entity(ListSource(user_records(5, site_id))))
    finally:
        admin.dispose()
    assert killed
    assert report.status == "ok", report.error
    assert report.created == 5
    with halo.connect() as conn:
        assert conn.execute(select(func.count()).select_from(users)).scalar_one() == 5
        assert conn.execute(select(func.count()).select_from(link)).scalar_one() == 5


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_meanwhile_runs_once_inside_each_copy_while_it_is_still_open(halo):
    # The engine reads its source ahead in this gap (halodb.sync.prefetch.ReadInGaps); the
    # server's progress view proves the COPY is still open when the work runs. (How many of its
    # rows the server has stored by then depends on psycopg's 32 KiB buffer: not asserted.)
    admin = create_engine(halo.url)
    seen = []
    try:
        with halo.begin() as conn:
            pid = conn.connection.driver_connection.info.backend_pid

            def work(seconds):
                with admin.connect() as other:
                    seen.append(other.execute(text("SELECT command FROM pg_stat_progress_copy WHERE pid = :pid"), {"pid": pid}).scalar())

            with bulk.meanwhile(work):
                bulk.insert_values(conn, area, ["name"], [(f"Client {i}",) for i in range(500)])
                bulk.insert_values(conn, area, ["name"], [("One more",)])
            bulk.insert_values(conn, area, ["name"], [("After the block",)])
    finally:
        admin.dispose()
    assert seen == ["COPY FROM", "COPY FROM"]
    with halo.connect() as conn:
        assert conn.execute(select(func.count()).select_from(area)).scalar_one() == 502


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_meanwhile_is_not_called_where_there_is_no_copy(halo):
    called = []
    with halo.begin() as conn, bulk.meanwhile(lambda seconds: called.append(1)):
        bulk.insert_values(conn, area, ["name"], [("Contoso",), ("Fabrikam",)])
    assert called == []
    with halo.connect() as conn:
        assert conn.execute(select(func.count()).select_from(area)).scalar_one() == 2


def test_copy_text_renders_naive_datetimes_and_leaves_everything_else():
    import datetime as dt

    assert bulk.copy_text(dt.datetime(2024, 5, 1, 12, 0, 0)) == "2024-05-01 12:00:00"
    assert bulk.copy_text(dt.datetime(2024, 5, 1, 12, 0, 0, 250)) == "2024-05-01 12:00:00.000250"
    aware = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert bulk.copy_text(aware) is aware  # its zone is psycopg's business
    assert [bulk.copy_text(v) for v in (None, 3, "x", True)] == [None, 3, "x", True]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_copy_made_by_the_work_itself_does_not_call_the_work_again(halo):
    # The work runs inside a COPY; a COPY it makes (here on another connection) must not re-enter
    # it - for the engine, that would read the source generator while it is already running.
    other = create_engine(halo.url)
    seen = []
    try:
        with halo.begin() as conn, other.begin() as side:

            def work(seconds):
                seen.append("work")
                bulk.insert_values(side, area, ["name"], [("Side",)])

            with bulk.meanwhile(work):
                bulk.insert_values(conn, area, ["name"], [("Main",)])
    finally:
        other.dispose()
    assert seen == ["work"]
    with halo.connect() as conn:
        assert sorted(conn.execute(select(area.c.name)).scalars()) == ["Main", "Side"]


def test_gaps_stretch_while_the_server_was_busy_and_shrink_when_it_was_not():
    gaps = bulk.Gaps(lambda seconds: False)
    given = [gaps.fill("users")[0]]
    gaps.learn("users", bulk.Gaps.FIRST, worked=0.006, waited=0.0002)  # the server was done first
    given.append(gaps.fill("users")[0])
    gaps.learn("users", 0.00375, worked=0.004, waited=0.0062)  # still busy 6 ms beyond the shortest wait
    given.append(gaps.fill("users")[0])
    gaps.learn("users", 0.009375, worked=0.01, waited=0.5)  # a long wait: stretched only to LONGEST
    given.append(gaps.fill("users")[0])
    given.append(gaps.fill("halodb_link")[0])  # each table learns on its own
    assert given == [bulk.Gaps.FIRST, pytest.approx(0.00375), pytest.approx(0.009375), bulk.Gaps.LONGEST, bulk.Gaps.FIRST]


def test_a_gap_whose_work_ran_out_is_not_stretched():
    # The server was still busy, but the work was done before the gap was: a longer gap would idle.
    gaps = bulk.Gaps(lambda seconds: False)
    gaps.learn("users", 0.01, worked=0.003, waited=0.0002)
    gaps.learn("users", 0.0075, worked=0.003, waited=0.004, ran_out=True)
    assert gaps.fill("users")[0] == pytest.approx(0.0075)
    gaps.learn("users", 0.0075, worked=0.0075, waited=0.004)  # it did not run out: stretched
    assert gaps.fill("users")[0] == pytest.approx(0.0075 * (0.0075 + 0.0038) / 0.0075)


def test_gaps_do_not_take_a_remote_servers_round_trip_for_a_busy_server():
    # Ending a COPY always waits a round trip; 2 ms on every COPY is the network, not the server.
    gaps = bulk.Gaps(lambda seconds: False)
    given = []
    for _ in range(3):
        given.append(gaps.fill("users")[0])
        gaps.learn("users", given[-1], worked=0.005, waited=0.002)
    assert given == [bulk.Gaps.FIRST, pytest.approx(0.00375), pytest.approx(0.0028125)]


class Clock:
    """``time.monotonic`` for ``bulk``, moved on only by the work."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_gap_is_worked_in_slices_with_the_held_rows_sent_after_each(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(bulk.time, "monotonic", clock)
    log = []

    def work(seconds):  # always more to do, and takes the time it is given
        log.append(("work", round(seconds, 6)))
        clock.now += seconds
        return True

    gaps = bulk.Gaps(work)
    given, worked, ran_out = gaps.fill("users", lambda: log.append("send"))
    assert (given, worked, ran_out) == (bulk.Gaps.FIRST, pytest.approx(bulk.Gaps.FIRST), False)
    assert log == [("work", 0.002), "send", ("work", 0.002), "send", ("work", 0.001), "send"]


def test_a_gap_ends_when_its_work_runs_out(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(bulk.time, "monotonic", clock)
    left = [0.0015, 0.0015]  # two slices' worth of work, the second one short

    def work(seconds):
        clock.now += left.pop(0)
        return bool(left)

    sent = []
    given, worked, ran_out = bulk.Gaps(work).fill("users", lambda: sent.append(1))
    assert (worked, ran_out, len(sent)) == (pytest.approx(0.003), True, 2)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_each_copy_learns_the_gap_of_the_next_one_on_its_table(halo, monkeypatch):
    learnt = []
    learn = bulk.Gaps.learn
    monkeypatch.setattr(bulk.Gaps, "learn", lambda self, table, given, *rest: (learnt.append(given), learn(self, table, given, *rest)))
    with halo.begin() as conn, bulk.meanwhile(lambda seconds: False):
        for _ in range(2):
            bulk.insert_values(conn, area, ["name"], [(f"Client {i}",) for i in range(200)])
    assert learnt[0] == bulk.Gaps.FIRST and learnt[1] != bulk.Gaps.FIRST  # learnt from the first COPY


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_server_has_every_row_written_before_the_gap_while_the_gap_lasts(halo):
    # psycopg keeps the last 32 KiB of rows, and libpq what the socket would not take, until the
    # COPY ends: the server would store them only after the gap. They are sent before it starts.
    admin = create_engine(halo.url)
    processed = []
    rows = [(f"Client {i:05d} with a name long enough to fill psycopg's buffer",) for i in range(2000)]
    try:
        with halo.begin() as conn:
            pid = conn.connection.driver_connection.info.backend_pid

            def work(seconds):
                with admin.connect() as other:
                    for _ in range(200):  # the server stores what it has been sent: wait up to 2 s
                        count = other.execute(text("SELECT tuples_processed FROM pg_stat_progress_copy WHERE pid = :pid"), {"pid": pid}).scalar()
                        if count == len(rows):
                            break
                        time.sleep(0.01)
                processed.append(count)
                return False

            with bulk.meanwhile(work):
                bulk.insert_values(conn, area, ["name"], rows)
    finally:
        admin.dispose()
    assert processed == [len(rows)]
