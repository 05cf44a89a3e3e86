"""Reading the source ahead of the writes: in the gaps a COPY leaves, or in a thread of its own.

A batch's writes spend much of their time waiting for the database (COPY, commit, round trips),
and a source's read spends its time waiting for the network (Graph, another database) or
computing records (parsing, hashing). Run one after the other, each waits for the other. Two ways
to overlap them, chosen by the engine per database:

- ``ReadInGaps`` (PostgreSQL): the read stays in the engine's thread. Once a COPY's rows are
  written and sent (``bulk.meanwhile``), the engine reads part of the next batch (``read_ahead``)
  for about as long as PostgreSQL took to store the table's last COPY, and only then finishes the
  COPY. Once the next batch is read, the gap's time left goes to preparing its records from what
  the run has looked up so far (``ahead``; the engine's ``prepare_known``). A thread does not
  overlap here: psycopg waits in many short steps, and after each one the engine's thread must
  take the GIL back from a reader that is computing, up to the 5 ms switch interval each time.
  50 COPYs of 2,000 rows took 0.51 s alone and 1.8 s beside a computing thread, and a
  100,000-user first load took 2.56 s with the reader thread against 2.15 s reading in the gaps
  (medians of 5 runs, interleaved).
- ``Prefetch`` (SQL Server, SQLite): a thread reads a batch or two ahead. pyodbc and sqlite3 run
  a whole statement in one call that releases the GIL, so the reader computes while the server
  works and the engine takes the GIL back once per statement.

Either way only the read (and, in the gaps, preparing) moves: the engine's connection, its run
state and every write stay in the calling thread, so what a batch does and how a failed batch
rolls back is unchanged. What the source raises is raised in the calling thread where the next
batch would have been taken, and the source is closed when the run ends. Memory stays flat: at
most ``depth`` batches (a thread) or one batch (the gaps) wait.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
P = TypeVar("P")

#: ``ReadInGaps`` hands ``ahead`` this many items at a time, and looks at the clock in between.
AHEAD_PART = 100

_DONE = object()

#: How long a run that ends waits for the source's thread to stop, in seconds.
STOP_WAIT = 10.0



class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


class Prefetch(Generic[T, R]):
    """``(batch, work(batch))`` for batches of ``size`` items, read ahead in a thread.

    Use it as a context manager so the thread is stopped and the source closed whatever happens."""

    def __init__(self, items: Iterable[T], size: int, work: Callable[[list[T]], R], depth: int = 2):
        self._items, self._size, self._work = items, size, work
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="halodb-source", daemon=True)

    def __enter__(self) -> Prefetch[T, R]:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        deadline = time.monotonic() + STOP_WAIT
        while self._thread.is_alive():
            if time.monotonic() > deadline:
                # A read stuck in the network (a Graph page, an LDAP search) must not hold the run
                # up: the thread is a daemon, and it stops at its next batch.
                log.warning("the source did not stop within %.0f s; leaving its thread behind", STOP_WAIT)
                return
            try:  # make room, so a reader blocked on a full queue sees the stop
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass

    #: Nothing is worked on ahead beyond ``work`` (see ``ReadInGaps.ready``).
    ready = None

    def read_ahead(self, seconds: float) -> bool:
        """Nothing to do: the thread reads ahead on its own."""
        return False

    def __iter__(self) -> Iterator[tuple[list[T], R]]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item

    def _read(self) -> None:
        it = iter(self._items)
        try:
            while not self._stop.is_set():
                batch = list(islice(it, self._size))
                if not batch:
                    self._put(_DONE)
                    return
                self._put((batch, self._work(batch)))
        except BaseException as err:  # handed to the calling thread, which decides
            self._put(_Failed(err))
        finally:
            _close(it)

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue


class ReadInGaps(Generic[T, R, P]):
    """``(batch, work(part) + work(part) + …)`` for batches of ``size`` items, read in the calling
    thread: on demand, and ahead of time whenever the caller calls ``read_ahead`` (from inside a
    COPY, through ``bulk.meanwhile``, for as long as the server stores its rows).

    ``work`` maps a list of items to a list of results, one per item (the record hashes), so a
    batch read in parts is worked on in parts. ``ahead``, if given, is optional work on the next
    batch (preparing its records) for the time a gap has left once that batch is read: it maps a
    part to one result per item, or to None when it cannot do that part; it must not touch the
    database, being called inside a COPY. Its results for the batch just yielded are in
    ``ready``. Use it as a context manager so the source is closed whatever happens."""

    def __init__(
        self, items: Iterable[T], size: int, work: Callable[[list[T]], list[R]], ahead: Callable[[list[T]], list[P] | None] | None = None
    ):
        self._items_in, self._size, self._work, self._ahead = iter(items), size, work, ahead
        self._batch: list[T] = []
        self._results: list[R] = []
        self._done_ahead: list[P | None] = []  # ahead's results for the first items of _batch
        self._ended = False
        self._error: Exception | None = None
        #: ``ahead``'s result for each item of the batch just yielded, None where it has none;
        #: None if it had none at all.
        self.ready: list[P | None] | None = None

    def __enter__(self) -> ReadInGaps[T, R, P]:
        return self

    def __exit__(self, *exc) -> None:
        _close(self._items_in)

    def read_ahead(self, seconds: float) -> bool:
        """Read more of the next batch for about ``seconds``, at most up to one batch ahead, and
        then work on it ``ahead``; return whether more could be done.

        The caller is inside a statement (``bulk.Gaps`` gives at most 50 ms): a source that waits
        (a slow remote view, a network page) must neither hold it open into a
        ``statement_timeout`` nor keep its locks for the source's sake, so the read stops at the
        first item that comes after the deadline. One item that is slow to come (a page fetched
        on demand) still comes inside the statement; a spooled source (Azure AD) fetches
        everything before its first item, outside any COPY. What the source (or ``work``) raises
        is kept and raised where that batch is taken, never here: the write must not fail for the
        source's sake. At least one item is read."""
        deadline = time.monotonic() + seconds
        self._read(self._size, deadline=deadline)
        if self._ahead is not None:
            self._work_ahead(deadline)
        if self._error is not None:
            return False
        if len(self._batch) < self._size and not self._ended:
            return True
        return self._ahead is not None and len(self._done_ahead) < len(self._batch)

    def _work_ahead(self, deadline: float) -> None:
        """``ahead`` on the items read and not yet worked on ahead, a part at a time, until the
        deadline. A part it cannot do, fails on, or answers with the wrong number of results is
        left to the batch's own work, which meets a failure again where it is reported (a shifted
        result would be written for another item)."""
        while len(self._done_ahead) < len(self._batch) and time.monotonic() < deadline:
            part = self._batch[len(self._done_ahead) : len(self._done_ahead) + AHEAD_PART]
            try:
                done = self._ahead(part)
                if done is None or len(done) != len(part):
                    done = [None] * len(part)
            except Exception:
                done = [None] * len(part)
            self._done_ahead.extend(done)

    def __iter__(self) -> Iterator[tuple[list[T], list[R]]]:
        while True:
            self._read(self._size)
            if self._error is not None:
                raise self._error  # the part of a batch read before it is dropped, as in Prefetch
            if not self._batch:
                return
            batch, results, ready = self._batch, self._results, self._done_ahead
            self._batch, self._results, self._done_ahead = [], [], []
            self.ready = ready + [None] * (len(batch) - len(ready)) if any(r is not None for r in ready) else None
            yield batch, results

    def _read(self, count: int, deadline: float | None = None) -> None:
        """Read up to ``count`` more items of the next batch (until ``deadline``, if given); what
        the source or ``work`` raises is kept for ``__iter__`` to raise."""
        count = min(count, self._size - len(self._batch))
        if self._ended or self._error is not None or count <= 0:
            return
        try:
            if deadline is None:
                part = list(islice(self._items_in, count))
                self._ended = len(part) < count
            else:
                part = []
                for item in self._items_in:
                    part.append(item)
                    if len(part) == count or time.monotonic() >= deadline:
                        break
                else:
                    self._ended = True
            if part:
                results = self._work(part)
                self._batch.extend(part)
                self._results.extend(results)
        except Exception as err:
            self._error = err


def _close(items: Iterator) -> None:
    """Close a source that can be closed: a generator's finally blocks (temporary files,
    connections) run here. The run's outcome is decided by now, so a failure is logged, not raised."""
    close = getattr(items, "close", None)
    if close is not None:
        try:
            close()
        except Exception as err:
            log.warning("closing the source failed: %s", err)
