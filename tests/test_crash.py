"""A run killed with SIGKILL while it holds an entity lock mid-sync: the next run recovers the
lock (at once on PostgreSQL, whose session lock died with the process; after the lease on
SQLite), marks the dead run failed, and converges to the right state without duplicates."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from halodb import demo
from halodb.database import engine_for_url
from halodb.halo.schema import users
from halodb.state.tables import link, run

pytestmark = pytest.mark.slow
EXTRA = 20_000
LEASE = 5


def _grow_hr(folder):
    rows = [(f"X{i}", f"Extra{i}", "Person", f"extra{i}@contoso.example", "Contoso Ltd", "Head Office", "Ops", "Clerk", 1) for i in range(EXTRA)]
    with sqlite3.connect(folder / "hr.db") as db:
        db.executemany("INSERT INTO employees VALUES (?,?,?,?,?,?,?,?,?)", rows)


def _halodb(config, tmp_path, *args, **kw):
    env = {**os.environ, "HALODB_Sync__BatchSize": "200", "HALODB_Sync__LockLeaseSeconds": str(LEASE)}
    cmd = [sys.executable, "-m", "halodb", "run", "--config", str(config), "--integration", "SqlImport", "--json", *args]
    return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _count(engine, stmt):
    with engine.connect() as conn:
        return conn.execute(stmt).scalar_one()


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_sigkill_mid_sync_then_the_next_run_recovers(db_url, tmp_path):
    url = None if db_url.startswith("sqlite") else db_url
    config = demo.create(tmp_path / "demo", database_url=url)
    _grow_hr(config.parent)
    engine = engine_for_url(url or f"sqlite:///{config.parent / 'halo.db'}")
    victim = _halodb(config, tmp_path)
    deadline = time.monotonic() + 60
    while _count(engine, select(func.count()).select_from(link)) < 1000:  # some batches committed
        assert victim.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert _count(engine, select(func.count()).select_from(run).where(run.c.status == "running")) == 1

    if url is None:  # SQLite: the dead run's lease still stands until it expires
        early = _halodb(config, tmp_path)
        out, _ = early.communicate(timeout=60)
        assert "locked by instance demo" in out
        time.sleep(LEASE + 1)
    again = _halodb(config, tmp_path)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err  # users of sites not imported yet are quarantined: not a failure
    with engine.connect() as conn:
        dead = conn.execute(select(run).where(run.c.error.like("the run stopped without finishing%"))).all()
        assert len(dead) == 1 and dead[0].status == "failed"
        total = conn.execute(select(func.count()).select_from(users)).scalar_one()
        distinct = conn.execute(select(func.count(func.distinct(users.c.emailaddress)))).scalar_one()
    assert total == distinct == 1 + 5 + EXTRA  # Ana (adopted) + 5 resolvable HR users + the extras
    engine.dispose()
