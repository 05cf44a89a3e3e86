"""Reading the source a batch or two ahead of the writes, in a thread of its own.

A batch's writes spend much of their time waiting for the database (COPY, commit, round trips),
and a source's read spends its time waiting for the network (Graph, LDAP, another database) or
computing records. Run one after the other, each waits for the other. With the read in a thread,
the next batch is read and hashed while the database works on the last one: the waits overlap.

Only the read moves: the engine's connection, its run state and every write stay in the calling
thread, so what a batch does and how a failed batch rolls back is unchanged. What the source
raises is raised in the calling thread, where the next batch would have been taken; a source
that stops early (the run failed) is closed in its own thread. Memory stays flat: at most
``depth`` batches wait in the queue.
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
            close = getattr(it, "close", None)
            if close is not None:
                try:
                    close()  # a generator's finally blocks (temporary files, connections) run here
                except Exception as err:  # the run's outcome is decided; say so, do not crash the thread
                    log.warning("closing the source failed: %s", err)

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
