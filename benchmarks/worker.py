"""One benchmark step in its own process: ``python -m benchmarks.worker '<json spec>'``.

The spec names the backend and database, the workload (W1..W4), the method (halodb, limit,
naive, dlt), the phase (setup or measure) and N. The last line on stdout is a JSON result with
seconds, peak RSS of this process and the counters the workload checks. Setup runs in a process
of its own so the measured process's peak RSS is the workload's alone.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import resource
import sys
import time
from pathlib import Path

from sqlalchemy import func, insert, select, update

from benchmarks import data
from halodb import migrate
from halodb.database import engine_for_url
from halodb.halo import REPOSITORIES
from halodb.halo.fixture import INTEGRATOR_AGENT, create_halo_fixture
from halodb.halo.repository import WriteContext
from halodb.halo import settings as halo_settings
from halodb.halo.schema import audit, importcsv, sqlimport, users
from halodb.state.tables import cursor
from halodb.sync.engine import Limits, SyncEngine, utcnow
from halodb.sync.entity import Entity

#: The naive per-record loop runs at most this many records; its time is extrapolated to N.
NAIVE_CAP = 10_000
MATCH_FIELDS = [("azureoid",), ("emailaddress",), ("login",)]  # as the Azure AD integration adopts


def peak_rss_mib() -> float:
    """Peak resident set of this process since it started its program, in MiB.

    Linux's ``VmHWM`` (``/proc/self/status``) belongs to the process's own address space, which
    exec replaces. ``ru_maxrss`` is not reset by exec: a worker started from an orchestrator that
    holds 250 MB reports at least 250 MB, whatever it used itself (the Azure AD benchmark's Graph
    fake showed it). ``ru_maxrss`` (KiB on Linux) stays the fallback elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def users_entity(n: int, variant: str, *, tracked: bool = False) -> Entity:
    """The directory as the Users entity; ``tracked``: read as a source that tracks changes (W2D)."""
    read = data.tracked_read(n, variant=variant) if tracked else (lambda ctx: data.source_records(n, variant=variant))
    return Entity(
        integration="Bench", connection="1", name="Users", label="bench users", repository=REPOSITORIES["Users"],
        read=read, match_fields=MATCH_FIELDS,
    )  # fmt: skip


#: The spreadsheet workloads: the same directory as a CSV file, imported by the Spreadsheet
#: integration as Halo's import configuration lists it (S1 first import, S2 again with the file
#: unchanged, S2R the same with the file's stored fingerprint forgotten, so it is read in full).
SPREADSHEET = ("S1", "S2", "S2R")
CSV_COLUMNS = ("emailaddress", "azureoid", "firstname", "surname", "login", "title", "department", "phonenumber", "mobilenumber", "site_id")


def write_csv(path: str, n: int) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(CSV_COLUMNS)
        for _, fields in data.user_fields(n):
            out.writerow([fields[c] for c in CSV_COLUMNS])


#: The SQL import workloads: the same directory as a table in the PostgreSQL database, imported
#: by the SQL Import integration (Q1 first import, Q2 again with the table unchanged, Q2R the same
#: with the stored fingerprint forgotten, so the query's rows are read in full).
SQL_IMPORT = ("Q1", "Q2", "Q2R")
SOURCE_TABLE = "hr_directory"


def write_source_table(conn, n: int) -> None:
    """The directory as a table beside the Halo fixture (the SQL import's external database)."""
    columns = ", ".join(f"{c} integer" if c == "site_id" else f"{c} varchar(255)" for c in CSV_COLUMNS)
    conn.exec_driver_sql(f"CREATE TABLE {SOURCE_TABLE} ({columns})")
    with conn.connection.driver_connection.cursor() as cur, cur.copy(f"COPY {SOURCE_TABLE} ({', '.join(CSV_COLUMNS)}) FROM STDIN") as copy:
        for _, fields in data.user_fields(n):
            copy.write_row([fields[c] for c in CSV_COLUMNS])
    conn.exec_driver_sql(f"ANALYZE {SOURCE_TABLE}")


def import_entity(engine, workload: str) -> Entity:
    """The import that ``setup`` registered in Halo, as its integration reads it."""
    # Imported here: the integrations package brings every integration's client library (httpx,
    # msal: about 20 MiB), which the other workloads' peak RSS must not include.
    if workload in SQL_IMPORT:
        from halodb.integrations.sqlimport import integration
    else:
        from halodb.integrations.spreadsheet import integration

    with engine.connect() as conn:
        (entity,) = integration.entities(conn, None)
    return entity


def halo_snapshot(engine) -> dict:
    with engine.connect() as conn:
        return {
            "users": conn.execute(select(func.count()).select_from(users)).scalar_one(),
            "active": conn.execute(select(func.count()).select_from(users).where(users.c.inactive == False)).scalar_one(),  # noqa: E712
            "audit": conn.execute(select(func.count()).select_from(audit)).scalar_one(),
            "max_lastupdate": conn.execute(select(func.max(users.c.lastupdate))).scalar_one(),
        }


def rows_written(engine, before: dict) -> int:
    """Halo rows written since ``before``: new users, users with a newer lastupdate, audit rows."""
    after = halo_snapshot(engine)
    with engine.connect() as conn:
        stamped = 0
        if before["max_lastupdate"] is not None:
            stamped = conn.execute(select(func.count()).select_from(users).where(users.c.lastupdate > before["max_lastupdate"])).scalar_one()
    return (after["users"] - before["users"]) + stamped + (after["audit"] - before["audit"])


# -- setup ---------------------------------------------------------------------------------------


def fixture(engine, *, halodb_tables: bool = True) -> None:
    create_halo_fixture(engine)
    if halodb_tables:
        migrate.upgrade(engine)
    with engine.begin() as conn:
        data.create_directory_owners(conn)


def halodb_load(engine, n: int, clock=utcnow, *, tracked: bool = False):
    sync = SyncEngine(engine, instance="bench", agent_id=INTEGRATOR_AGENT, clock=clock)
    report = sync.run(users_entity(n, "base", tracked=tracked))
    if report.status != "ok" or report.created != n:
        raise SystemExit(f"setup load failed: {report.status} {report.error} created={report.created}")


def setup(spec: dict) -> dict:
    method, workload, n = spec["method"], spec["workload"], spec["n"]
    if method == "source":
        return {}  # reads no database
    if method == "dlt":
        if workload in ("W2", "W3"):
            dlt_run(dlt_pipeline(spec), data.halo_rows(n, utcnow()))
        return {}
    engine = engine_for_url(spec["url"])
    fixture(engine, halodb_tables=method != "limit")
    if workload in SPREADSHEET + SQL_IMPORT:
        with engine.begin() as conn:
            if workload in SPREADSHEET:
                write_csv(spec["csv"], n)
                conn.execute(insert(importcsv), {"name": "directory", "type": "users", "filepath": spec["csv"], "integrator_enabled": True})
                halo_settings.set_enabled(conn, "Spreadsheet", True)
            else:
                write_source_table(conn, n)
                query = f"SELECT {', '.join(CSV_COLUMNS)} FROM {SOURCE_TABLE}"
                conn.execute(insert(sqlimport), {"name": "directory", "table": "users", "sql": query, "keyfield": "emailaddress", "sqlserver": spec["url"], "integrator_enabled": True})
                halo_settings.set_enabled(conn, "SqlImport", True)
        if workload not in ("S1", "Q1"):
            clock = lambda: utcnow() - dt.timedelta(hours=1)  # noqa: E731 - as for W2
            report = SyncEngine(engine, instance="bench", agent_id=INTEGRATOR_AGENT, clock=clock).run(import_entity(engine, workload))
            if report.status != "ok" or report.created != n:
                raise SystemExit(f"setup import failed: {report.status} {report.error} created={report.created}")
        if workload in ("S2R", "Q2R"):
            with engine.begin() as conn:
                conn.execute(update(cursor).values(content=None))  # as if no import had stored one
    elif workload in ("W2", "W2D", "W3") and method == "halodb":
        # An hour in the past, so any write of the measured run shows as a newer lastupdate.
        halodb_load(engine, n, clock=lambda: utcnow() - dt.timedelta(hours=1), tracked=workload == "W2D")
    elif workload in ("W2", "W3") and method == "naive":
        bulk_insert(engine, min(n, NAIVE_CAP))  # the loop only needs the rows it will find
    engine.dispose()
    return {}


# -- measured methods ----------------------------------------------------------------------------


def measure_halodb(spec: dict) -> dict:
    engine = engine_for_url(spec["url"])
    workload, n = spec["workload"], spec["n"]
    variant = "w3" if workload == "W3" else "base"
    limits = Limits(deactivate_after_missed_runs=1, max_deactivation_percent=100, max_deactivations=10**9) if workload == "W3" else Limits()
    before = halo_snapshot(engine)
    sync = SyncEngine(engine, instance="bench", agent_id=INTEGRATOR_AGENT, limits=limits)
    if workload in SPREADSHEET + SQL_IMPORT:
        entity = import_entity(engine, workload)
    else:
        entity = users_entity(n, variant, tracked=workload == "W2D")
    profiler = None
    if spec.get("profile"):
        profiler = _start_profiler()
    started = time.perf_counter()
    report = sync.run(entity)
    seconds = time.perf_counter() - started
    if profiler is not None:
        _stop_profiler(profiler, spec["profile"])
    after = halo_snapshot(engine)
    out = {
        "seconds": seconds, "rows": n, "status": report.status, "error": report.error,
        "fetched": report.fetched, "created": report.created, "updated": report.updated, "unchanged": report.unchanged,
        "deactivated": report.deactivated, "quarantined": report.quarantined,
        "halo_writes": rows_written(engine, before), "audit_rows": after["audit"] - before["audit"],
        "active_after": after["active"],
    }  # fmt: skip
    engine.dispose()
    return out


def bulk_insert(engine, n: int) -> None:
    """Raw bulk insert of the final Halo users rows: COPY on PostgreSQL, executemany on SQLite."""
    now = utcnow()
    cols = [users.c[k].name for k in data.HALO_COLUMNS]
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        if engine.dialect.name == "postgresql":
            with raw.cursor() as cur, cur.copy(f"COPY users ({', '.join(cols)}) FROM STDIN") as copy:
                for row in data.halo_rows(n, now):
                    copy.write_row([row[k] for k in data.HALO_COLUMNS])
        else:
            cur = raw.cursor()
            sql = f"INSERT INTO users ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            cur.executemany(sql, ([row[k] for k in data.HALO_COLUMNS] for row in data.halo_rows(n, now)))


def measure_limit(spec: dict) -> dict:
    engine = engine_for_url(spec["url"])
    halo_snapshot(engine)  # a first connection before the timer, as halodb's measurement has
    started = time.perf_counter()
    bulk_insert(engine, spec["n"])
    seconds = time.perf_counter() - started
    count = halo_snapshot(engine)["users"]
    engine.dispose()
    return {"seconds": seconds, "rows": spec["n"], "written": count}


def measure_source(spec: dict) -> dict:
    """The source read alone: the synthetic directory as halodb's read yields it, no engine.

    Every other method pays for generating the same records inside its timer, so this is the
    part of each time that no engine can remove, measured in the same run."""
    variant = "w3" if spec["workload"] == "W3" else "base"
    started = time.perf_counter()
    count = sum(1 for _ in data.source_records(spec["n"], variant=variant))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": spec["n"], "read": count}


def measure_naive(spec: dict) -> dict:
    """Per record, through the same repository: prepare, SELECT by azureoid, INSERT or UPDATE."""
    engine = engine_for_url(spec["url"])
    workload, n = spec["workload"], spec["n"]
    ran = min(n, NAIVE_CAP)
    repo = REPOSITORIES["Users"]
    inserted = updated = 0
    with engine.connect() as conn:
        started = time.perf_counter()
        wctx = WriteContext(INTEGRATOR_AGENT, utcnow())
        for record in data.source_records(ran, variant="w3" if workload == "W3" else "base"):
            row = repo.prepare(conn, [record.fields])[0]
            found = conn.execute(select(users.c.id).where(users.c.azureoid == record.key)).scalar()
            if found is None:
                repo.insert(conn, [row], wctx)
                inserted += 1
            else:
                conn.execute(update(users).where(users.c.id == found).values(**row, lastupdate=wctx.now))
                updated += 1
        conn.commit()
        seconds = time.perf_counter() - started
    engine.dispose()
    return {"seconds": seconds * n / ran, "measured_seconds": seconds, "ran": ran, "rows": n, "extrapolated": ran < n, "inserted": inserted, "updated": updated}


def dlt_pipeline(spec: dict):
    """The dlt pipeline into the spec's schema (imports dlt: not part of any timed run)."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    if ":" not in spec["dlt_credentials"].split("@")[0].removeprefix("postgresql://"):
        # dlt insists on a password; the local server trusts 127.0.0.1 and ignores it.
        os.environ.setdefault("DESTINATION__POSTGRES__CREDENTIALS__PASSWORD", "unused")
    import dlt

    return dlt.pipeline(
        pipeline_name=f"bench_{spec['schema']}", pipelines_dir=spec["pipelines_dir"],
        destination=dlt.destinations.postgres(spec["dlt_credentials"]), dataset_name=spec["schema"],
    )  # fmt: skip


def dlt_run(pipeline, rows) -> object:
    return pipeline.run(rows, table_name="users", write_disposition="merge", primary_key="azureoid")


def measure_dlt(spec: dict) -> dict:
    workload, n = spec["workload"], spec["n"]
    variant = "w3" if workload == "W3" else "base"
    pipeline = dlt_pipeline(spec)  # dlt's import and the pipeline's creation stay outside the timer
    rows = data.halo_rows(n, utcnow(), variant=variant)
    started = time.perf_counter()
    dlt_run(pipeline, rows)
    seconds = time.perf_counter() - started
    engine = engine_for_url(spec["url"])
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(users)).scalar_one()
    engine.dispose()
    return {"seconds": seconds, "rows": n, "written": count}


# -- profiling -----------------------------------------------------------------------------------


def _start_profiler():
    try:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001)
    except ImportError:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        return profiler
    profiler.start()
    return profiler


def _stop_profiler(profiler, path: str) -> None:
    if hasattr(profiler, "output_text"):
        profiler.stop()
        Path(path).write_text(profiler.output_text(unicode=True, color=False, show_all=False))
    else:
        import io
        import pstats

        profiler.disable()
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats("tottime").print_stats(30)
        Path(path).write_text(buf.getvalue())


METHODS = {"halodb": measure_halodb, "limit": measure_limit, "naive": measure_naive, "dlt": measure_dlt, "source": measure_source}


def main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    if spec["phase"] == "setup":
        result = setup(spec)
    else:
        result = METHODS[spec["method"]](spec)
    result["peak_rss_mib"] = round(peak_rss_mib(), 1)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
