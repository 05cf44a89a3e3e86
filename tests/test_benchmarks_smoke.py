"""The benchmark runs end to end at a tiny N and its correctness figures hold; never timed."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from benchmarks import __main__ as bench
from benchmarks import data

N = 200

pytestmark = pytest.mark.slow


def _backends() -> list[str]:
    backends = ["sqlite"]
    try:
        engine = create_engine(bench.PG_URL, connect_args={"connect_timeout": 5})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        backends.append("postgresql")
    except Exception:  # noqa: BLE001 - no PostgreSQL here: sqlite alone
        pass
    return backends


def test_directory_is_deterministic_and_lazy():
    records = data.source_records(50)
    assert iter(records) is records  # a generator, not a list
    first = [r.key for r in data.source_records(50)]
    assert first == [r.key for r in records] and len(set(first)) == 50
    w3 = list(data.source_records(N, variant="w3"))
    updated, deactivated = data.expected_w3(N)
    assert (updated, deactivated) == (2, 1) and len(w3) == N - deactivated


@pytest.mark.parametrize("backend", _backends())
def test_benchmark_completes_with_zero_writes_on_resync_and_exact_w3_counts(backend, tmp_path):
    results = bench.run_all(N, [backend], ["W1", "W2", "W3", "W4"], w4_n=2 * N, log=lambda *a: None, timeout=300)
    by_w = results[backend]
    assert by_w["W1"]["halodb"]["created"] == N and by_w["W1"]["halodb"]["status"] == "ok"
    assert by_w["W1"]["limit"]["written"] == N
    assert by_w["W1"]["naive"]["inserted"] == N
    w2 = by_w["W2"]["halodb"]
    assert w2["halo_writes"] == 0 and w2["audit_rows"] == 0 and w2["unchanged"] == N
    w3 = by_w["W3"]["halodb"]
    assert (w3["updated"], w3["deactivated"]) == data.expected_w3(N)
    assert w3["status"] == "ok" and w3["active_after"] == N - data.expected_w3(N)[1]
    assert by_w["W4"]["halodb"]["created"] == 2 * N
    if backend == "postgresql" and bench.dlt_available():
        assert by_w["W1"]["dlt"]["written"] == N
    report = bench.render(results, N, None, None, bench.dt.datetime.now(bench.dt.timezone.utc))
    assert "| W2 re-sync" not in report or "Halo rows written 0" in report
    assert "What changes on SQL Server" in report


def test_repeat_keeps_the_median_run_of_halodb_and_the_limit_and_lists_every_time(tmp_path):
    results = bench.run_all(N, ["sqlite"], ["W1"], ["halodb", "limit", "naive"], log=lambda *a: None, timeout=300, repeat=3)
    by_m = results["sqlite"]["W1"]
    for method in ("halodb", "limit"):
        runs = by_m[method]["runs"]
        assert len(runs) == 3 and runs == sorted(runs)
        assert round(by_m[method]["seconds"], 2) == runs[1]
    assert len(by_m["naive"]["runs"]) == 1  # the slow baseline runs once
    args = bench.argparse.Namespace(repeat=3)
    report = bench.render(results, N, args, None, bench.dt.datetime.now(bench.dt.timezone.utc))
    assert "the median of 3 runs each" in report and "(median of " in report
