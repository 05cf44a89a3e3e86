"""The links' bookkeeping of what a run saw (``halodb.state.links``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from halodb.state.links import Seen
from halodb.state.tables import link
from halodb.sync.engine import Limits, SyncEngine
from tests.helpers import ListSource, add_client_with_site, user_records, users_entity


@given(st.sets(st.integers(min_value=1, max_value=200_000)), st.sets(st.integers(min_value=1, max_value=200_000)))
def test_seen_holds_exactly_the_ids_added(added, probes):
    seen = Seen()
    seen.add(sorted(added, reverse=True))  # growing from the top must work as well as from below
    assert all(i in seen for i in added)
    assert not any(i in seen for i in probes - added)


def test_seen_is_a_bitmap_not_a_set():
    seen = Seen()
    seen.add(range(1, 1_000_001))
    assert len(seen._bits) <= 2 * 1_000_001 // 8 + 1  # about 125 kB for a million links


def test_an_unchanged_resync_writes_no_link_row_and_a_later_gap_is_still_found(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(6, site_id)
    engine = SyncEngine(halo, instance="t", agent_id=2, limits=Limits(batch_size=4, deactivate_after_missed_runs=2, max_deactivation_percent=50))
    engine.run(users_entity(ListSource(records)))
    with halo.connect() as conn:
        before = sorted(tuple(r) for r in conn.execute(select(link)))
    again = engine.run(users_entity(ListSource(records)))
    assert again.unchanged == 6
    with halo.connect() as conn:
        assert sorted(tuple(r) for r in conn.execute(select(link))) == before

    # u5 goes missing: counted once per complete run, deactivated on the second.
    first_gap = engine.run(users_entity(ListSource(records[:5])))
    second_gap = engine.run(users_entity(ListSource(records[:5])))
    assert (first_gap.deactivated, second_gap.deactivated) == (0, 1)
    with halo.connect() as conn:
        rows = {r.source_key: r for r in conn.execute(select(link))}
    assert rows["u5"].deactivated and rows["u5"].missed_runs == 2
    assert [rows[f"u{i}"].missed_runs for i in range(5)] == [0] * 5


def test_a_record_back_after_one_missed_run_starts_counting_again(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(6, site_id)
    engine = SyncEngine(halo, instance="t", agent_id=2, limits=Limits(deactivate_after_missed_runs=2, max_deactivation_percent=50))
    engine.run(users_entity(ListSource(records)))
    engine.run(users_entity(ListSource(records[:5])))  # u5 missed once
    engine.run(users_entity(ListSource(records)))  # back, unchanged: its count starts again
    with halo.connect() as conn:
        assert conn.execute(select(link.c.missed_runs).where(link.c.source_key == "u5")).scalar_one() == 0
    gap = engine.run(users_entity(ListSource(records[:5])))
    assert gap.deactivated == 0  # one missed run since it came back, not two


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # ANALYZE is PostgreSQL's
def test_analyze_refreshes_the_whole_link_table_at_the_small_statistics_target(halo):
    """``links.analyze`` samples every column (a column list would leave autovacuum believing
    the table unanalyzed), at the target migration 0005 gives them."""
    from halodb.state import links

    with halo.begin() as conn:
        conn.execute(link.insert(), [
            {"integration": "I", "connection": "1", "entity": "Users", "source_key": f"k{i}", "halo_id": i, "row_hash": "h",
             "first_seen_run": 1, "last_seen_run": 1, "missed_runs": 0, "deactivated": False}
            for i in range(500)
        ])  # fmt: skip
        links.analyze(conn)
    with halo.connect() as conn:
        analyzed = set(conn.exec_driver_sql("SELECT attname FROM pg_stats WHERE tablename = 'halodb_link' AND schemaname = current_schema()").scalars())
        histogram = conn.exec_driver_sql(
            "SELECT array_length(histogram_bounds::text::text[], 1) FROM pg_stats WHERE tablename = 'halodb_link' AND schemaname = current_schema() AND attname = 'source_key'"
        ).scalar_one()
    assert analyzed == {c.name for c in link.columns}
    assert histogram == 11  # 10 buckets: the target of 0005, not the default 100
