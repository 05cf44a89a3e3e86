"""The garbage collector's threshold is raised while syncs run, and put back when the last ends."""

from __future__ import annotations

import gc

import pytest

from halodb.sync import collector
from halodb.sync.collector import RUN_THRESHOLD, fewer_collections
from halodb.sync.engine import SyncEngine
from tests.helpers import add_client_with_site, user_records, users_entity


@pytest.fixture(autouse=True)
def default_threshold():
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)


def test_raised_inside_and_restored_after():
    with fewer_collections():
        assert gc.get_threshold() == (RUN_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_restored_after_an_exception():
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("the run failed")
    assert gc.get_threshold() == (700, 10, 10)
    assert collector._active == 0


def test_overlapping_runs_restore_only_when_the_last_ends():
    first, second = fewer_collections(), fewer_collections()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert gc.get_threshold()[0] == RUN_THRESHOLD  # the second run is still going
    second.__exit__(None, None, None)
    assert gc.get_threshold() == (700, 10, 10)


def test_a_higher_threshold_set_by_the_application_is_kept():
    gc.set_threshold(100_000, 5, 5)
    with fewer_collections():
        assert gc.get_threshold() == (100_000, 5, 5)
    assert gc.get_threshold() == (100_000, 5, 5)


def test_the_engine_reads_the_source_under_the_raised_threshold(halo):
    _, site_id = add_client_with_site(halo)
    seen = []

    def source(ctx):
        for record in user_records(3, site_id):
            seen.append(gc.get_threshold()[0])
            yield record

    report = SyncEngine(halo, instance="t", agent_id=2).run(users_entity(source))
    assert report.status == "ok" and report.created == 3
    assert seen == [RUN_THRESHOLD] * 3
    assert gc.get_threshold() == (700, 10, 10)


def test_automatic_collection_turned_off_by_the_application_stays_off():
    gc.set_threshold(0)
    with fewer_collections():
        assert gc.get_threshold()[0] == 0
    assert gc.get_threshold()[0] == 0


class _Cycle:
    def __init__(self):
        self.me = self  # freed only by the cyclic collector


def test_cyclic_garbage_of_a_batch_is_collected_when_the_batch_ends(halo):
    # Under the raised threshold a small run never triggers a collection on its own; the engine
    # collects the young generations after every batch, so cycles made per batch do not pile up.
    # The source reads up to a few batches ahead of the writes (4 records at most in a thread,
    # batches of 2), so it looks only at the cycles it made 8 records earlier.
    import weakref

    from halodb.sync.engine import Limits

    _, site_id = add_client_with_site(halo)
    cycles, alive_late = [], []

    def source(ctx):
        for record in user_records(16, site_id):
            alive_late.extend(ref() is not None for ref in cycles[:-8])
            cycle = _Cycle()
            cycles.append(weakref.ref(cycle))
            del cycle
            yield record

    gc.collect()
    report = SyncEngine(halo, instance="t", agent_id=2, limits=Limits(batch_size=2)).run(users_entity(source))
    assert report.status == "ok" and report.created == 16
    assert alive_late and not any(alive_late)
