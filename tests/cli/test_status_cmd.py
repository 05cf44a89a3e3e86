"""``halodb status`` and ``--wait``: what instances did, who holds a lock, which runs died."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import insert

from halodb.cli import main
from halodb.database import engine_for_url
from halodb.state.locks import Lease
from halodb.state.tables import run
from halodb.sync.engine import utcnow


@pytest.fixture
def demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = CliRunner()
    assert cli.invoke(main, ["demo", "demo"]).exit_code == 0
    engine = engine_for_url(f"sqlite:///{tmp_path / 'demo' / 'halo.db'}")
    yield cli, engine
    engine.dispose()


def _hold(engine, name="SqlImport/1/Users", minutes=10):
    lease = Lease(engine, name, instance="daily", owner="daily@host:42:abc", clock=utcnow, ttl=dt.timedelta(minutes=minutes))
    assert lease.acquire() is None
    return lease


def test_status_lists_entities_locks_and_dead_runs(demo):
    cli, engine = demo
    _hold(engine)
    with engine.begin() as conn:  # a run of another instance that was killed mid-sync
        conn.execute(insert(run).values(instance="daily", integration="SqlImport", connection="1", entity="Users",
                                        started=utcnow(), status="running", dry_run=False, pid=4242, fetched=0,
                                        created=0, updated=0, unchanged=0, deactivated=0, held_back=0, quarantined=0))  # fmt: skip
    result = cli.invoke(main, ["status", "--config", "demo/appsettings.json"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("instances: daily (last run ") and ", demo (last run " in lines[0]
    assert lines[1].split() == ["entity", "instance", "last", "run", "(UTC)", "status", "last", "success", "changed", "last", "error"]
    rows = {line.split()[0]: line.split() for line in lines[2:6]}
    assert rows["Spreadsheet/1/Clients"][1] == "demo" and rows["Spreadsheet/1/Clients"][4] == "ok"
    assert rows["Spreadsheet/3/Assets"][-1] == "7"  # changed in the last run
    assert rows["SqlImport/1/Users"][1] == "daily" and rows["SqlImport/1/Users"][4] == "running"
    assert lines[6] == "locks held now: "
    assert lines[7].startswith("  SqlImport/1/Users: instance daily (daily@host:42:abc) since ")

    # The lock frees up; the next run of the demo instance finds the dead run and says so.
    Lease(engine, "SqlImport/1/Users", instance="daily", owner="daily@host:42:abc", clock=utcnow).release()
    assert cli.invoke(main, ["AUTO", "demo/appsettings.json"]).exit_code == 0
    after = cli.invoke(main, ["status", "--config", "demo/appsettings.json", "--json"])
    assert '"last_status": "ok"' in after.stdout
    text = cli.invoke(main, ["status", "--config", "demo/appsettings.json"]).stdout
    assert "runs that died:" in text and "SqlImport/1/Users of instance daily (pid 4242)" in text


def test_locked_entity_is_skipped_with_its_holder_and_exit_0(demo):
    cli, engine = demo
    _hold(engine)
    result = cli.invoke(main, ["AUTO", "demo/appsettings.json"])
    assert result.exit_code == 0, result.output
    assert any(line.startswith("skipped SQL import 'HR employees': locked by instance daily since ") for line in result.stdout.splitlines())


def test_wait_that_runs_out_exits_1(demo):
    cli, engine = demo
    _hold(engine)
    result = cli.invoke(main, ["run", "--config", "demo/appsettings.json", "--wait", "1"])
    assert result.exit_code == 1
    assert "skipped SQL import 'HR employees': locked by instance daily" in result.stdout


def test_wait_gets_the_lock_once_the_holder_lets_go(demo):
    cli, engine = demo
    lease = _hold(engine)  # a live lease: another instance is running the SQL import
    release_after = 1.0
    letting_go = threading.Timer(release_after, lease.release)
    started = time.monotonic()
    letting_go.start()
    try:
        result = cli.invoke(main, ["run", "--config", "demo/appsettings.json", "--wait", "10"])
    finally:
        letting_go.cancel()
        letting_go.join()
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert "skipped" not in result.stdout and "locked" not in result.stdout
    ran = [line.split() for line in result.stdout.splitlines() if line.startswith("SqlImport ")]
    assert ran == [["SqlImport", "Users", "SQL", "import", "'HR", "employees'", "12", "0", "0", "12", "0", "0", "0", "ok"]]
    assert elapsed >= release_after  # it waited for the holder instead of finding the lock free
