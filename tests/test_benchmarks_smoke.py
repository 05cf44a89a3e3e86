"""The benchmark runs end to end at a tiny N and its correctness figures hold; never timed."""

from __future__ import annotations

import pytest

from benchmarks import __main__ as bench
from benchmarks import data
from tests.conftest import use_test_postgresql_for_benchmarks

N = 200

pytestmark = pytest.mark.slow


def test_directory_is_deterministic_and_lazy():
    records = data.source_records(50)
    assert iter(records) is records  # a generator, not a list
    first = [r.key for r in data.source_records(50)]
    assert first == [r.key for r in records] and len(set(first)) == 50
    w3 = list(data.source_records(N, variant="w3"))
    updated, deactivated = data.expected_w3(N)
    assert (updated, deactivated) == (2, 1) and len(w3) == N - deactivated


def _schemas() -> set[str]:
    from sqlalchemy import create_engine, text

    engine = create_engine(bench.PG_URL)
    try:
        with engine.connect() as conn:
            return set(conn.execute(text("SELECT nspname FROM pg_namespace")).scalars())
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_benchmark_completes_with_zero_writes_on_resync_and_exact_w3_counts(backend, tmp_path, monkeypatch):
    if backend == "postgresql":
        use_test_postgresql_for_benchmarks(monkeypatch)
        schemas_before = _schemas()
    results = bench.run_all(N, [backend], list(bench.WORKLOADS), w4_n=2 * N, log=lambda *a: None, timeout=300)
    if backend == "postgresql":  # the run leaves nothing behind, dlt's staging schemas included
        assert _schemas() == schemas_before
    by_w = results[backend]
    assert by_w["W1"]["halodb"]["created"] == N and by_w["W1"]["halodb"]["status"] == "ok"
    assert by_w["W1"]["limit"]["written"] == N
    assert by_w["W1"]["naive"]["inserted"] == N
    w2 = by_w["W2"]["halodb"]
    assert w2["halo_writes"] == 0 and w2["audit_rows"] == 0 and w2["unchanged"] == N
    w2d = by_w["W2D"]["halodb"]  # the delta read from the position the first load left: nothing
    assert w2d["status"] == "ok" and (w2d["fetched"], w2d["halo_writes"], w2d["audit_rows"], w2d["deactivated"]) == (0, 0, 0, 0)
    assert set(by_w["W2D"]) == {"halodb"}
    w3 = by_w["W3"]["halodb"]
    assert (w3["updated"], w3["deactivated"]) == data.expected_w3(N)
    assert w3["status"] == "ok" and w3["active_after"] == N - data.expected_w3(N)[1]
    assert by_w["W4"]["halodb"]["created"] == 2 * N
    if backend == "postgresql" and bench.dlt_available():
        assert by_w["W1"]["dlt"]["written"] == N
    assert by_w["W1"]["source"]["read"] == N
    # The directory as a CSV file: imported, then not read again while unchanged, or read in full
    # once its fingerprint is forgotten; neither re-import writes a Halo row.
    assert set(by_w["S1"]) == set(by_w["S2"]) == set(by_w["S2R"]) == {"halodb"}
    assert (by_w["S1"]["halodb"]["status"], by_w["S1"]["halodb"]["created"]) == ("ok", N)
    s2, s2r = by_w["S2"]["halodb"], by_w["S2R"]["halodb"]
    assert (s2["status"], s2["fetched"], s2["halo_writes"], s2["audit_rows"]) == ("ok", 0, 0, 0)
    assert (s2r["status"], s2r["fetched"], s2r["unchanged"], s2r["halo_writes"], s2r["audit_rows"]) == ("ok", N, N, 0, 0)
    # The directory as a PostgreSQL table read by a SQL import: the same three runs, PostgreSQL
    # fingerprinting the query's result; no SQL import workload on SQLite (its source is PostgreSQL).
    if backend == "postgresql":
        assert set(by_w["Q1"]) == set(by_w["Q2"]) == set(by_w["Q2R"]) == {"halodb"}
        assert (by_w["Q1"]["halodb"]["status"], by_w["Q1"]["halodb"]["created"]) == ("ok", N)
        q2, q2r = by_w["Q2"]["halodb"], by_w["Q2R"]["halodb"]
        assert (q2["status"], q2["fetched"], q2["halo_writes"], q2["audit_rows"]) == ("ok", 0, 0, 0)
        assert (q2r["status"], q2r["fetched"], q2r["unchanged"], q2r["halo_writes"], q2r["audit_rows"]) == ("ok", N, N, 0, 0)
    else:
        assert not {"Q1", "Q2", "Q2R"} & set(by_w)
    report = bench.render(results, N, None, bench.dt.datetime.now(bench.dt.timezone.utc))
    assert "| W2 re-sync" not in report or "Halo rows written 0" in report
    assert "What changes on SQL Server" in report
    assert f"- {backend}: reading the source alone takes " in report
    assert f"- {backend} W2D: Halo rows written 0 (expected 0; audit rows 0), records read 0 (expected 0), deactivated 0 (expected 0)" in report
    assert "### Re-sync with nothing changed, by source" in report
    resyncs = bench.resync_table(results)[2:]
    assert all(line in report for line in resyncs)
    expected = ["W2D", "S2", "W2", "S2R"] + (["Q2", "Q2R"] if backend == "postgresql" else [])
    assert sorted(line.split(" | ")[3].split()[0] for line in resyncs) == sorted(expected)
    assert all(line.endswith(" | 0 |") for line in resyncs)  # no re-sync wrote a Halo row


def test_repeat_keeps_the_median_run_of_halodb_and_the_limit_and_lists_every_time(tmp_path):
    results = bench.run_all(N, ["sqlite"], ["W1"], ["halodb", "limit", "naive"], log=lambda *a: None, timeout=300, repeat=3)
    by_m = results["sqlite"]["W1"]
    for method in ("halodb", "limit"):
        runs = by_m[method]["runs"]
        assert len(runs) == 3
        assert round(by_m[method]["seconds"], 2) == sorted(runs)[1]  # the kept run is the middle one
    assert len(by_m["naive"]["runs"]) == 1  # the slow baseline runs once
    report = bench.render(results, N, None, bench.dt.datetime.now(bench.dt.timezone.utc))
    # The header names the median cells from the data; the naive single run is not among them.
    assert "Medians, their times listed under 'Every measurement': sqlite halodb W1 (median of 3); sqlite limit W1 (median of 3). Every other cell is one run." in report
    assert "naive W1 (median" not in report
    assert f"| sqlite | W1 | halodb (median of {', '.join(f'{t:.2f}' for t in by_m['halodb']['runs'])}) (halodb/limit by round: " in report


def test_a_single_run_report_claims_no_median():
    results = {"sqlite": {"W1": {"halodb": {"seconds": 1.0, "runs": [1.0], "n": N, "peak_rss_mib": 50.0, "created": N, "status": "ok"}}}}
    report = bench.render(results, N, None, bench.dt.datetime.now(bench.dt.timezone.utc))
    (header,) = [line for line in report.splitlines() if line.startswith("Run ")]
    assert "Every cell is one run, not a median." in header and "Medians" not in header


@pytest.mark.parametrize("value", ["0", "-1", "2", "4", "x"])
def test_repeat_must_be_an_odd_count_of_at_least_one(value, capsys):
    with pytest.raises(SystemExit) as exited:
        bench.main(["--repeat", value])
    assert exited.value.code == 2  # argparse's usage error, before anything runs
    assert "--repeat" in capsys.readouterr().err


@pytest.mark.parametrize("repeat", [0, -1, 2, 4])
def test_run_all_refuses_a_repeat_that_has_no_middle_run(repeat):
    with pytest.raises(ValueError, match="odd number"):
        bench.run_all(N, ["sqlite"], ["W1"], log=lambda *a: None, repeat=repeat)


def test_the_source_lines_do_the_arithmetic_of_the_two_targets():
    """S = 0.6, L = 1.0, W1 = 2.6, W2 = 0.9: both targets together need W2 <= 0.625 s; beyond the
    read, W1 costs 2.0 s and W2 0.3 s (15 %)."""
    by_w = {
        "W1": {"source": {"seconds": 0.6}, "limit": {"seconds": 1.0}, "halodb": {"seconds": 2.6}},
        "W2": {"halodb": {"seconds": 0.9}},
    }
    assert bench.source_lines("postgresql", by_w) == [
        "- postgresql: reading the source alone takes 0.60 s: 60 % of the limit (1.00 s) and 23 % of halodb's W1.",
        "- postgresql: a full re-read within 25 % of a first load within 2.5 × the limit would need W2 ≤ 0.625 × limit = 0.62 s, "
        "for any engine. The read alone is 0.60 s of that; halodb's W2 is 0.90 s.",
        "- postgresql: halodb's own time beyond the read: W1 2.00 s, W2 0.30 s (15 % of W1's); the limit's own 0.40 s.",
    ]
    assert bench.source_lines("postgresql", {"W1": {"halodb": {"seconds": 2.6}}}) == []  # no source measured: nothing claimed


def test_repeated_methods_take_turns_and_the_slow_baselines_run_once(monkeypatch):
    # Only the order is under test here, so the measurement itself is replaced by a recorder.
    calls = []

    def record(backend, workload, method, n, workdir, timeout=None):
        calls.append(method)
        return {"seconds": float(len(calls)), "peak_rss_mib": 1.0}

    monkeypatch.setattr(bench, "measure", record)
    results = bench.run_all(N, ["sqlite"], ["W1"], ["halodb", "limit", "naive", "source"], log=lambda *a: None, repeat=3)
    assert calls == ["halodb", "limit", "source"] * 3 + ["naive"]
    assert results["sqlite"]["W1"]["halodb"]["runs"] == [1.0, 4.0, 7.0] and results["sqlite"]["W1"]["halodb"]["seconds"] == 4.0
    assert results["sqlite"]["W1"]["limit"]["in_turn"] == [2.0, 5.0, 8.0]  # in the order of the rounds


def test_halodb_over_the_limit_is_taken_round_by_round_where_they_took_turns():
    # The machine was twice as fast in the first round: each round says 2x, the medians 4x.
    halodb = {"seconds": 4.0, "runs": [2.0, 4.0, 4.2], "in_turn": [2.0, 4.0, 4.2], "n": N, "peak_rss_mib": 1.0}
    limit = {"seconds": 1.0, "runs": [1.0, 1.0, 2.0], "in_turn": [1.0, 2.0, 1.0], "n": N, "peak_rss_mib": 1.0}
    assert bench.paired_ratio(halodb, limit) == pytest.approx(2.0)
    assert bench.paired_ratio({"seconds": 3.0}, {"seconds": 1.5}) == pytest.approx(2.0)  # one run each: the plain ratio
    rows = bench.table({"postgresql": {"W1": {"halodb": halodb, "limit": limit}}})
    assert "| 1.00 | 2.00× |" in rows[2]
    lines = bench.method_table({"postgresql": {"W1": {"halodb": halodb, "limit": limit}}})
    assert "halodb/limit by round: 2.00, 2.00, 4.20; median 2.00, ratio of the medians 4.00" in lines[2]


def test_the_tracked_read_leaves_a_position_and_reads_nothing_from_it():
    from halodb.sync.entity import ReadContext

    read = data.tracked_read(20)
    full = ReadContext(None)
    assert [r.key for r in read(full)] == [r.key for r in data.source_records(20)]
    assert full.new_cursor == "synthetic:base:20" and full.incomplete_reason is None
    again = ReadContext(full.new_cursor)
    assert list(read(again)) == [] and again.incomplete_reason == "delta read"
    other = ReadContext("synthetic:base:10")  # a position of another directory: read it all
    assert len(list(read(other))) == 20 and other.incomplete_reason is None


def test_shares_are_taken_in_turns_and_shown_with_their_range(tmp_path):
    shares = bench.paired_shares(N, ["sqlite"], 1, log=lambda *a: None, timeout=300)
    assert set(shares["sqlite"]) == {"W2D", "W2", "S2", "S2R"}  # no SQL import on SQLite
    assert all(len(v) == 1 and v[0] > 0 for v in shares["sqlite"].values())
    results = {"sqlite": {w: {"halodb": {"seconds": 1.0, "fetched": 0, "halo_writes": 0}} for w in ("W1", "W2", "W2D")}}
    (w2d,) = [line for line in bench.resync_table(results, {"sqlite": {"W2D": [0.01, 0.03, 0.02]}}) if "W2D" in line]
    assert "| 2.0 % (in turns, 3 rounds: 1.0-3.0 %) |" in w2d
    (w2,) = [line for line in bench.resync_table(results, {"sqlite": {"W2D": [0.01]}}) if "| W2 " in line]
    assert "| 100.0 % |" in w2  # no shares for W2: the ratio of the medians
