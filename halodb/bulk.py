"""Bulk writes of rows that need no ids back: COPY on PostgreSQL, one executemany elsewhere.

SQL Server gets ``fast_executemany`` from the engine (pyodbc binds the whole batch as arrays and
sends it in one round trip), SQLite a plain executemany. PostgreSQL's executemany pages
multi-row ``VALUES`` statements that the server must parse and plan; ``COPY`` streams the rows
and is several times faster, so links, change rows, audit rows and new Halo rows go that way
there. The COPY runs on the connection's own cursor, so it is part of the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import psycopg
from sqlalchemy import Table, insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError


class Gaps:
    """Work to do while PostgreSQL stores a COPY's rows, measured out per table.

    ``work(seconds)`` does about that much and says whether it has more to do (the engine reads
    its source ahead and prepares it: ``halodb.sync.prefetch.ReadInGaps``). A gap is worked in
    slices of ``SLICE``; after each one the COPY's rows still held on the client are sent
    (``send``), so the server never runs dry while the client computes. How long a gap may last
    is learnt from the table's last COPY: if its end still had to wait for the server, the next
    gap is stretched so that the work would have lasted that long; if not, the server was done
    first and the next gap is a quarter shorter. A gap whose work ran out is not stretched: more
    time would not have been used. Work in a gap the server does not fill lengthens the run.
    Ending a COPY costs a round trip even when the server has nothing left to do, so a wait
    counts only beyond the shortest one seen (a remote server's round trip would otherwise look
    like a busy server every time)."""

    #: The first gap of a table, before anything is learnt, and the longest, in seconds.
    FIRST, LONGEST = 0.005, 0.05
    #: A wait this much longer than the shortest seen means the server was still busy.
    BUSY = 0.0005
    #: The work between two sends of the rows held on the client, in seconds.
    SLICE = 0.002

    def __init__(self, work: Callable[[float], bool]):
        self._work = work
        self._gap: dict[str, float] = {}
        self._shortest_wait = float("inf")

    def fill(self, table: str, send: Callable[[], None] = lambda: None) -> tuple[float, float, bool]:
        """Run the work for this table's gap: (the time it was given, the time it took, whether
        it ran out of work)."""
        given = self._gap.get(table, self.FIRST)
        started = time.monotonic()
        end = started + given
        token = _gaps.set(None)  # a COPY made by the work itself must not call it again
        try:
            while True:
                more = self._work(min(self.SLICE, end - time.monotonic()))
                send()
                if not more or time.monotonic() >= end:
                    break
        finally:
            _gaps.reset(token)
        return given, time.monotonic() - started, not more

    def learn(self, table: str, given: float, worked: float, waited: float, ran_out: bool = False) -> None:
        """The COPY's end waited ``waited`` seconds after a gap given ``given`` that took
        ``worked``; ``ran_out``: its work was done before its time was."""
        self._shortest_wait = min(self._shortest_wait, waited)
        busy = waited - self._shortest_wait
        if busy > self.BUSY and ran_out:
            gap = given  # the server needed longer than there was work for: more time would idle
        elif busy > self.BUSY and worked > 0:
            gap = given * (worked + busy) / worked  # the work overran its time by as much as before
        else:
            gap = given * 0.75
        self._gap[table] = min(gap, self.LONGEST)


_gaps: ContextVar[Gaps | None] = ContextVar("halodb_bulk_gaps", default=None)


@contextmanager
def meanwhile(work: Callable[[float], bool]) -> Iterator[None]:
    """Inside this block, every PostgreSQL COPY calls ``work(seconds)`` once its rows are written
    and before it ends the COPY and waits for the server to finish storing them, so the client
    computes while the server works (``Gaps``). ``work`` returns whether it has more to do; it
    must not raise and should keep to its time, never more than ``Gaps.LONGEST``: it runs inside
    the COPY statement, which a slow read must not hold open into a ``statement_timeout``."""
    token = _gaps.set(Gaps(work))
    try:
        yield
    finally:
        _gaps.reset(token)


def copy_text(value: Any) -> Any:
    """``value`` in the text form COPY reads, for a value that repeats in every row (a batch's
    stamp): a naive datetime, which psycopg would render again for each row. Anything else is
    returned as it is."""
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.isoformat(sep=" ")
    return value


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (dicts keyed by column keys, all with the same keys) into ``table``."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        keys = list(rows[0])
        copy_values(conn, table, keys, [tuple(row[k] for k in keys) for row in rows])
    else:
        conn.execute(insert_statement(table), list(rows))  # already the dicts executemany takes


def insert_values(conn: Connection, table: Table, keys: Sequence[str], values: Sequence[tuple]) -> None:
    """Insert one tuple per row, its items in the order of the column keys ``keys``.

    Tuples rather than dicts: the caller builds 100,000 of them for a first load, and on
    PostgreSQL they go to COPY as they are."""
    if not values:
        return
    if conn.dialect.name == "postgresql":
        copy_values(conn, table, keys, values)
    else:
        conn.execute(insert_statement(table), [dict(zip(keys, v)) for v in values])


def insert_statement(table: Table):
    """A plain INSERT that fetches nothing back. Without ``inline()`` a batch of one row runs as
    a single execute, for which SQLAlchemy adds ``OUTPUT inserted.id`` on SQL Server to learn the
    new key; SQL Server refuses that on a table with a trigger (error 334), e.g. ``audit``."""
    return insert(table).inline()


def copy_values(conn: Connection, table: Table, keys: Sequence[str], values: Iterable[tuple]) -> None:
    """PostgreSQL ``COPY … FROM STDIN`` of ``values`` through psycopg, inside the open transaction."""
    preparer = conn.dialect.identifier_preparer
    columns = ", ".join(preparer.quote(table.c[k].name) for k in keys)
    sql = f"COPY {preparer.format_table(table)} ({columns}) FROM STDIN"
    if not conn.in_transaction():
        conn.begin()  # SQLAlchemy must know of the transaction the COPY opens, or commit() skips it
    raw = conn.connection.driver_connection
    gaps = _gaps.get()
    gap = None
    try:
        with raw.cursor() as cur:
            with cur.copy(sql) as copy:
                write = copy.write_row
                for row in values:
                    write(row)
                if gaps is not None:
                    send = _sender(raw, copy)
                    send()
                    gap = (*gaps.fill(table.name, send), time.monotonic())
            if gap is not None:
                given, worked, ran_out, ending = gap
                gaps.learn(table.name, given, worked, time.monotonic() - ending, ran_out)
    except psycopg.Error as err:
        # The raw cursor raises the driver's own errors; wrapped as SQLAlchemy would wrap them,
        # the engine rolls the batch back, retries it if transient, and fails the entity cleanly.
        # A lost connection is invalidated the way SQLAlchemy does for its own statements, so the
        # rollback succeeds, the retry reconnects, and is_transient sees connection_invalidated.
        lost = conn.dialect.is_disconnect(err, raw, None)
        if lost:
            conn.invalidate()
        raise DBAPIError.instance(sql, None, err, psycopg.Error, connection_invalidated=lost, dialect=conn.dialect) from err


def _sender(raw: psycopg.Connection, copy: psycopg.Copy) -> Callable[[], None]:
    """A function that hands the server every row the COPY has written so far, without waiting.

    psycopg keeps up to 32 KiB of rows until the COPY ends, and libpq what the socket would not
    take until its next write: about a fifth of a batch of links, which the server then stored
    only after the gap. A first load's links COPY waited 8 ms after each 35 ms gap that way, and
    2 ms with the rows sent before and during the gap (0.40 s against 0.12-0.14 s per 100,000
    users, one run each).

    It takes the rows psycopg holds from its formatter (``Copy.formatter``, ``Copy.writer``:
    public attributes, not documented API). That is only right for a text COPY, whose ``end()``
    adds nothing; a psycopg without them gets a send that only flushes libpq. psycopg's writer
    waits for the socket once 1 MiB of a COPY is unsent, as it does between rows."""
    formatter, writer, pgconn = getattr(copy, "formatter", None), getattr(copy, "writer", None), raw.pgconn
    rows_held = formatter is not None and writer is not None and formatter.format == psycopg.pq.Format.TEXT

    def send() -> None:
        if rows_held:
            held = formatter.end()  # a text COPY's rows so far, as they are (nothing else is added)
            if held:
                writer.write(held)
        pgconn.flush()  # non-blocking: what the socket will not take now goes with the next send

    return send
