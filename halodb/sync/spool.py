"""Read a source to the end before the engine writes anything.

The engine commits batch by batch, so a source that fails halfway leaves the batches before the
failure in Halo (safe, since the next run picks up from the old cursor, but not "untouched"). An
API read that pages for minutes (Graph) is the likeliest to fail halfway, so such sources are
spooled: every record goes to an anonymous temporary file first, and only a read that reached
its end is handed to the engine. Memory stays flat; the file vanishes when the run ends.
"""

from __future__ import annotations

import pickle
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator

from halodb.sync.entity import SourceRecord


def spooled(
    records: Iterable[SourceRecord], heartbeat: Callable[[], None] = lambda: None, every: float = 10.0
) -> Iterator[SourceRecord]:
    """``records``, yielded only after all of them were read; an error while reading raises
    before the first record comes out. ``heartbeat`` is called every ``every`` seconds meanwhile
    (the run's lease must outlive a read of minutes)."""
    with tempfile.TemporaryFile(prefix="halodb-spool-") as spool:
        count, last = 0, time.monotonic()
        for record in records:
            pickle.dump(record, spool, protocol=pickle.HIGHEST_PROTOCOL)
            count += 1
            if time.monotonic() - last >= every:
                heartbeat()
                last = time.monotonic()
        spool.seek(0)
        for _ in range(count):
            yield pickle.load(spool)
