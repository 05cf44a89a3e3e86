"""Stress: N rounds of 4 ``halodb run`` processes started at once on one fresh demo database
(SQLite file, or a fresh PostgreSQL schema), then one settling run. Reports, per backend, how
often an entity was run by more than one process in a round (records created twice: must be 0),
how many entity runs were skipped because another instance held them, and round times.

    python -m benchmarks.stress_instances --rounds 20 --backends sqlite,postgresql
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from halodb import demo
from halodb.database import engine_for_url
from halodb.halo.schema import device, users

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
EXPECTED = {"spreadsheet 'Demo clients'": 2, "spreadsheet 'Demo sites'": 2, "spreadsheet 'Demo assets'": 7, "SQL import 'HR employees'": 11}


def _run(config: Path, cwd: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "halodb", "run", "--config", str(config), "--json"]
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def one_round(backend: str, work: Path, processes: int) -> dict:
    url, schema, admin = None, None, None
    if backend == "postgresql":
        admin = create_engine(PG, isolation_level="AUTOCOMMIT")
        schema = f"stress_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        url = make_url(PG).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    config = demo.create(work / "demo", database_url=url)
    started = time.monotonic()
    procs = [_run(config, work) for _ in range(processes)]
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        if p.returncode != 0:
            raise SystemExit(f"a process failed: {err}")
        reports.append(json.loads(out))
    seconds = time.monotonic() - started
    settle = _run(config, work)
    out, _ = settle.communicate(timeout=300)
    reports.append(json.loads(out))
    created = Counter()
    for r in reports:
        for e in r["entities"]:
            created[e["label"]] += e["created"]
    engine = engine_for_url(url or f"sqlite:///{config.parent / 'halo.db'}")
    with engine.connect() as conn:
        dup_users = conn.execute(select(func.count()).select_from(users)).scalar_one() - conn.execute(select(func.count(func.distinct(users.c.emailaddress)))).scalar_one()
        dup_devices = conn.execute(select(func.count()).select_from(device)).scalar_one() - conn.execute(select(func.count(func.distinct(device.c.inventory_number)))).scalar_one()
    engine.dispose()
    if admin is not None:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    return {
        "seconds": seconds,
        "exactly_once": created == EXPECTED,
        "duplicates": dup_users + dup_devices,
        "entity_runs": sum(len(r["entities"]) for r in reports[:-1]),
        "skips": sum(len(r["skipped"]) for r in reports[:-1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    print(f"{'backend':<11} {'rounds':>6} {'exactly once':>12} {'duplicates':>10} {'entity runs':>11} {'skips':>6} {'median s':>8} {'max s':>6}")
    for backend in args.backends.split(","):
        results = []
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as tmp:
                results.append(one_round(backend, Path(tmp), args.processes))
        times = [r["seconds"] for r in results]
        print(f"{backend:<11} {len(results):>6} {sum(r['exactly_once'] for r in results):>12} {sum(r['duplicates'] for r in results):>10} "
              f"{sum(r['entity_runs'] for r in results):>11} {sum(r['skips'] for r in results):>6} {statistics.median(times):>8.2f} {max(times):>6.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
