"""Spooled reads (``halodb.sync.spool``): nothing comes out until the source has been read to the end."""

from __future__ import annotations

import pytest

from halodb.sync.entity import SourceRecord
from halodb.sync.spool import spooled


def source(n, fail_at=None, seen=None):
    for i in range(n):
        if i == fail_at:
            raise OSError("Graph page 3 failed")
        if seen is not None:
            seen.append(i)
        yield SourceRecord(f"k{i}", {"name": f"Ünïcode {i}", "n": i, "none": None}, None if i % 3 else "bad row")


def test_records_come_out_whole_and_in_order():
    out = list(spooled(source(2500)))
    assert out == list(source(2500))
    assert all(type(r) is SourceRecord for r in out)  # a named tuple equals a plain tuple too


def test_a_failing_read_raises_before_the_first_record():
    read = []
    out = spooled(source(10, fail_at=7, seen=read))
    with pytest.raises(OSError, match="page 3"):
        next(out)
    assert read == list(range(7))  # the source was read up to the failure, nothing was handed on


def test_the_heartbeat_is_called_while_reading():
    beats = []
    records = list(spooled(source(5), heartbeat=lambda: beats.append(1), every=0))
    assert len(records) == 5 and len(beats) == 5
