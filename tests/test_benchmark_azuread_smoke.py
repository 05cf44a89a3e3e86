"""The Azure AD benchmark runs end to end at a tiny N against PostgreSQL and its counts hold.

Correctness only: the full sync creates every user on the right site, and the delta run after
exactly 10 changes in the fake writes exactly those 10 users (counted from the database). Never
timed."""

from __future__ import annotations

import datetime as dt

import pytest

from benchmarks import azuread as bench
from tests.conftest import use_test_postgresql_for_benchmarks

N = 200

pytestmark = pytest.mark.slow


@pytest.fixture
def postgresql(monkeypatch):
    """The suite's PostgreSQL as the benchmark's (Database and header() read ``PG_URL``)."""
    use_test_postgresql_for_benchmarks(monkeypatch)


def test_azuread_benchmark_full_sync_and_a_delta_of_exactly_ten(postgresql):
    (result,) = bench.run_all([N], timeout=300, log=lambda *a: None)

    full, delta = result["full"], result["delta"]
    assert (full["status"], full["created"], full["fetched"], full["complete"]) == ("ok", N, N, True), full
    assert (full["halo_users"], full["linked_users"], full["misplaced"], full["unnamed"]) == (N, N, 0, 0)
    assert full["quarantined"] == 0 and full["peak_rss_mib"] > 0
    assert delta["status"] == "ok", delta
    assert (delta["fetched"], delta["updated"], delta["created"], delta["deactivated"]) == (10, 10, 0, 0)
    assert (delta["rows_written"], delta["new_rows"], delta["audited_users"]) == (10, 0, 10)  # counted in the DB
    assert delta["titles_right"] == 10 and delta["complete"] is False
    assert bench.problems([result]) == []

    report = bench.render([result], dt.datetime.now(dt.timezone.utc), head="(header)")
    assert f"| {N} |" in report and "All counts as they must be." in report
