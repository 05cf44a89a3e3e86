"""halodb benchmarks: the sync engine against a raw bulk insert, a per-record loop and dlt.

    python -m benchmarks [--n 100000] [--backends postgresql,sqlite] [--workloads W1,W2,W2D,W3,W4,S1,S2,S2R,Q1,Q2,Q2R]
                         [--out benchmarks/RESULTS.md] [--profile] [--shares ROUNDS]

Workloads (each measured in a fresh process; its setup runs in another one before it):
  W1  first load of N directory users into an empty Halo fixture
  W2  re-sync with nothing changed, the whole source read again (Halo rows written must be 0)
  W2D re-sync with nothing changed from a source that tracks changes, as Azure AD's delta read
  W3  1 % changed and 0.5 % removed (deactivated in the same run)
  W4  first load of 10 x N users, for memory
  S1  the same N users as a CSV file, imported by the Spreadsheet integration
  S2  S1's file imported again, unchanged (not read: its fingerprint matches)
  S2R S1's file imported again, unchanged, its fingerprint forgotten (read in full)
  Q1  the same N users as a PostgreSQL table, imported by the SQL Import integration
  Q2  Q1's query imported again, its result unchanged (not read: PostgreSQL's fingerprint matches)
  Q2R Q1's query imported again, result unchanged, its fingerprint forgotten (read in full)
Methods: halodb (the engine), limit (COPY / executemany of the final rows, no logic), naive
(per record SELECT then INSERT/UPDATE, at most 10,000 records, extrapolated), dlt (merge,
PostgreSQL only), source (the synthetic directory read alone, no database: the part of every
method's time that no engine removes). Never pass/fail on time: this prints figures and ratios from one run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from benchmarks import data

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("HALODB_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
#: Extra server options for halodb's PostgreSQL connections (an experiment: "-cplan_cache_mode=force_custom_plan").
PG_OPTIONS = ""
WORKLOADS = ("W1", "W2", "W2D", "W3", "W4", "S1", "S2", "S2R", "Q1", "Q2", "Q2R")
METHODS = ("halodb", "limit", "naive", "dlt", "source")
DESCRIPTION = {
    "W1": "first load",
    "W2": "re-sync, nothing changed (full re-read)",
    "W2D": "re-sync, nothing changed (delta read)",
    "W3": "1 % changed, 0.5 % removed",
    "W4": "first load at 10 x N (memory)",
    "S1": "spreadsheet (CSV) first import",
    "S2": "spreadsheet re-import, file unchanged",
    "S2R": "spreadsheet re-import, file unchanged, read in full",
    "Q1": "SQL import first import",
    "Q2": "SQL re-import, result unchanged",
    "Q2R": "SQL re-import, result unchanged, read in full",
}
#: Workloads that read nothing new: neither a rate nor a ratio to a load applies.
READS_NOTHING = ("W2D", "S2", "Q2")
#: The integrations' own workloads (spreadsheet, SQL import): halodb alone, no raw insert of their rows.
IMPORTS = ("S", "Q")


class BenchError(RuntimeError):
    pass


def applies(method: str, workload: str, backend: str) -> bool:
    if workload == "W2D":
        return method == "halodb"  # only halodb keeps a change position between runs
    if workload.startswith("S"):
        return method == "halodb"  # the Spreadsheet integration, against itself
    if workload.startswith("Q"):  # the SQL import, against itself; its source table is on PostgreSQL
        return method == "halodb" and backend == "postgresql"
    if method == "limit":
        return workload in ("W1", "W4")  # a bulk insert only has a first load
    if method == "naive":
        return workload != "W4"
    if method == "dlt":
        return backend == "postgresql" and workload != "W4"
    if method == "source":
        return workload == "W1"  # the same read as W2's; W3's lacks 0.5 % of it
    return True


def dlt_available() -> str | None:
    """dlt's version, or None when it is not installed (the dlt column is then n/a)."""
    try:
        from importlib.metadata import version

        return version("dlt")
    except Exception:  # noqa: BLE001 - PackageNotFoundError and friends
        return None


def _worker(spec: dict, timeout: float | None) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.worker", json.dumps(spec)]
    env = dict(os.environ, RUNTIME__DLTHUB_TELEMETRY="false")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise BenchError(f"{spec['method']} {spec['workload']} {spec['phase']} on {spec['backend']} failed:\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class Database:
    """A fresh PostgreSQL schema or SQLite file for one measurement; dropped afterwards."""

    def __init__(self, backend: str, workdir: Path):
        self.backend = backend
        self.schema = f"b_{uuid.uuid4().hex[:12]}"
        if backend == "postgresql":
            self.admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
            with self.admin.connect() as conn:
                conn.execute(text(f"CREATE SCHEMA {self.schema}"))
            self.url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={self.schema} {PG_OPTIONS}".strip()}).render_as_string(hide_password=False)
        else:
            self.path = workdir / f"{self.schema}.db"
            self.url = f"sqlite:///{self.path}"

    def drop(self) -> None:
        if self.backend == "postgresql":
            with self.admin.connect() as conn:
                conn.execute(text(f"DROP SCHEMA {self.schema} CASCADE"))
                # dlt's merge stages its rows in a schema of its own beside the dataset's.
                conn.execute(text(f"DROP SCHEMA IF EXISTS {self.schema}_staging CASCADE"))
            self.admin.dispose()
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)


def measure(backend: str, workload: str, method: str, n: int, workdir: Path, *, profile: str | None = None, timeout: float | None = None) -> dict:
    db = Database(backend, workdir)
    pg = make_url(PG_URL)
    spec = {
        "backend": backend, "workload": workload, "method": method, "n": n, "url": db.url, "schema": db.schema,
        "pipelines_dir": str(workdir / "dlt"), "profile": profile, "csv": str(workdir / f"{db.schema}.csv"),
        "dlt_credentials": f"postgresql://{pg.username}{':' + pg.password if pg.password else ''}@{pg.host}:{pg.port or 5432}/{pg.database}",
    }  # fmt: skip
    try:
        _worker({**spec, "phase": "setup"}, timeout)
        result = _worker({**spec, "phase": "measure"}, timeout)
    finally:
        db.drop()
        Path(spec["csv"]).unlink(missing_ok=True)
    return result


#: Methods measured ``--repeat`` times (their ratio is the tight target); the slow baselines run once.
REPEATED = ("halodb", "limit", "source")


def run_all(
    n: int, backends, workloads, methods=METHODS, *, w4_n: int | None = None, log=print, timeout: float | None = None, repeat: int = 1
) -> dict:
    """Every (backend, workload, method) that applies; returns {backend: {workload: {method: result}}}.

    halodb, the limit and the source read run ``repeat`` times each on W1-W3 (an odd count, so
    that one run is the median) and keep the run with the median time (its ``runs`` lists every
    time, sorted; ``in_turn`` the same times in the order of the rounds). Their runs take turns
    (halodb, limit, source, halodb, ...), so a machine that slows down for a minute slows all of
    them, not one: on a shared 2-vCPU machine single seconds vary by a fifth, and by half when
    its speed changes between rounds (``paired_ratio``)."""
    if repeat < 1 or repeat % 2 == 0:
        raise ValueError(f"repeat must be an odd number of runs, at least 1 (got {repeat})")
    results: dict = {}
    have_dlt = dlt_available()
    workdir = Path(tempfile.mkdtemp(prefix="halodb-bench-"))
    try:
        for backend in backends:
            for workload in workloads:
                size = (w4_n or 10 * n) if workload == "W4" else n
                todo = [m for m in methods if applies(m, workload, backend)]
                if not todo:
                    continue  # no row for a workload that does not apply here (the SQL import on SQLite)
                cell = results.setdefault(backend, {}).setdefault(workload, {})
                if "dlt" in todo and not have_dlt:
                    cell["dlt"] = {"na": "dlt is not installed"}
                    todo.remove("dlt")
                rounds = [[m for m in todo if m in REPEATED and workload != "W4"]] * repeat
                rounds += [[m] for m in todo if m not in REPEATED or workload == "W4"]
                runs: dict[str, list[dict]] = {}
                for turn in rounds:
                    for method in turn:
                        log(f"  {backend:<10} {workload} {method:<7} N={size:,} ...")
                        runs.setdefault(method, []).append(measure(backend, workload, method, size, workdir, timeout=timeout))
                for method in todo:
                    ordered = sorted(runs[method], key=lambda r: r["seconds"])
                    result = ordered[len(ordered) // 2]
                    result["runs"] = [round(r["seconds"], 2) for r in ordered]
                    result["in_turn"] = [round(r["seconds"], 3) for r in runs[method]]
                    result["n"] = size
                    cell[method] = result
                    log(f"  {backend:<10} {workload} {method:<7} {result['seconds']:.2f}s  peak RSS {result['peak_rss_mib']:.0f} MiB")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


# -- report -----------------------------------------------------------------------------------------


def _f(value, fmt="{:.2f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def _ratio(a, b, digits: int = 1) -> str:
    return "n/a" if a is None or b is None or not b else f"{a / b:.{digits}f}×"


def paired_ratio(a: dict, b: dict) -> float | None:
    """``a``'s time over ``b``'s, as the median of the ratios of the rounds in which they took
    turns; the ratio of the two medians where they did not (one run each, or merged results).

    Each round measures halodb, the limit and the source read one after the other, within
    seconds. This machine's speed can change by half between rounds (the source read took 0.63 s
    in three rounds of one run and 1.1 s in the other two), and then the two medians come from
    different rounds: a ratio taken within each round is the one that speed does not move."""
    by_round = round_ratios(a, b)
    if by_round:
        return statistics.median(by_round)
    if a.get("seconds") and b.get("seconds"):
        return a["seconds"] / b["seconds"]
    return None


def round_ratios(a: dict, b: dict) -> list[float] | None:
    """``a``'s time over ``b``'s in each round they took turns in; None if they did not."""
    x, y = a.get("in_turn") or [], b.get("in_turn") or []
    if len(x) > 1 and len(x) == len(y) and all(y):
        return [p / q for p, q in zip(x, y)]
    return None


def checks(results: dict, n: int) -> list[str]:
    """The correctness figures of the run, as lines; raises nothing (the smoke test asserts)."""
    lines = []
    up, deact = data.expected_w3(n)
    for backend, by_w in results.items():
        if "halodb" in by_w.get("W1", {}):
            r = by_w["W1"]["halodb"]
            lines.append(f"- {backend} W1: created {r['created']:,} of {n:,} (status {r['status']})")
        if "halodb" in by_w.get("W2", {}):
            r = by_w["W2"]["halodb"]
            lines.append(f"- {backend} W2: Halo rows written {r['halo_writes']} (expected 0; audit rows {r['audit_rows']}), unchanged {r['unchanged']:,}")
        if "halodb" in by_w.get("W2D", {}):
            r = by_w["W2D"]["halodb"]
            lines.append(
                f"- {backend} W2D: Halo rows written {r['halo_writes']} (expected 0; audit rows {r['audit_rows']}), "
                f"records read {r['fetched']:,} (expected 0), deactivated {r['deactivated']:,} (expected 0)"
            )
        if "halodb" in by_w.get("W3", {}):
            r = by_w["W3"]["halodb"]
            ok = "as expected" if (r["updated"], r["deactivated"]) == (up, deact) else "MISMATCH"
            lines.append(
                f"- {backend} W3: updated {r['updated']:,} (expected {up:,}), deactivated {r['deactivated']:,} "
                f"(expected {deact:,}) - {ok}; audit rows {r['audit_rows']:,}, Halo rows written {r['halo_writes']:,}"
            )
        if "halodb" in by_w.get("W4", {}):
            r = by_w["W4"]["halodb"]
            lines.append(f"- {backend} W4: created {r['created']:,} of {r['n']:,} (status {r['status']})")
        for workload in ("S1", "Q1"):  # the integrations' first imports
            if "halodb" in by_w.get(workload, {}):
                r = by_w[workload]["halodb"]
                lines.append(f"- {backend} {workload}: created {r['created']:,} of {n:,} (status {r['status']})")
        for workload, read in (("S2", 0), ("S2R", n), ("Q2", 0), ("Q2R", n)):
            if "halodb" in by_w.get(workload, {}):
                r = by_w[workload]["halodb"]
                lines.append(
                    f"- {backend} {workload}: Halo rows written {r['halo_writes']} (expected 0; audit rows {r['audit_rows']}), "
                    f"records read {r['fetched']:,} (expected {read:,}), status {r['status']}"
                )
    return lines


def table(results: dict) -> list[str]:
    head = (
        "| backend | workload | N | halodb s | rows/s | peak RSS MiB | limit s | halodb/limit | naive s | naive/halodb "
        "| dlt s | dlt/halodb | dlt peak RSS MiB |"
    )
    lines = [head, "|" + "---|" * 3 + "---:|" * 10]
    for backend, by_w in results.items():
        first_limit = by_w.get("W1", {}).get("limit", {}).get("seconds")
        for workload, by_m in by_w.items():
            h = by_m.get("halodb", {})
            lim = by_m.get("limit", {}).get("seconds", first_limit if workload in ("W2", "W2D", "W3") else None)
            naive = by_m.get("naive", {}).get("seconds")
            dl = by_m.get("dlt", {})
            hs = h.get("seconds")
            own_limit = by_m.get("limit")
            to_limit = _f(paired_ratio(h, own_limit), "{:.2f}×") if own_limit and h else _ratio(hs, lim, 2)
            if workload in READS_NOTHING or workload.startswith(IMPORTS):  # no raw insert of the import's rows ran
                lim, to_limit = None, "n/a"
            lines.append(
                f"| {backend} | {workload} {DESCRIPTION[workload]} | {h.get('n', 0):,} | {_f(hs)} | "
                f"{_f(h['n'] / hs if hs and workload not in READS_NOTHING else None, '{:,.0f}')} | {_f(h.get('peak_rss_mib'), '{:.0f}')} | "
                f"{_f(lim)} | {to_limit} | {_f(naive)}{'*' if by_m.get('naive', {}).get('extrapolated') else ''} | "
                f"{_ratio(naive, hs)} | {dl.get('na') and 'n/a' or _f(dl.get('seconds'))} | {_ratio(dl.get('seconds'), hs)} | "
                f"{_f(dl.get('peak_rss_mib'), '{:.0f}')} |"
            )
    return lines


def method_table(results: dict) -> list[str]:
    lines = ["| backend | workload | method | N | seconds | rows/s | peak RSS MiB |", "|---|---|---|---:|---:|---:|---:|"]
    for backend, by_w in results.items():
        for workload, by_m in by_w.items():
            for method, r in by_m.items():
                if "seconds" not in r:
                    lines.append(f"| {backend} | {workload} | {method} | | n/a | n/a | n/a |")
                    continue
                note = f" (ran {r['ran']:,}, extrapolated)" if r.get("extrapolated") else ""
                if len(r.get("runs", ())) > 1:
                    note += f" (median of {', '.join(f'{t:.2f}' for t in r['runs'])})"
                limit = by_m.get("limit", {})
                by_round = round_ratios(r, limit) if method == "halodb" else None
                if by_round:
                    shown = ", ".join(f"{x:.2f}" for x in by_round)
                    note += f" (halodb/limit by round: {shown}; median {statistics.median(by_round):.2f}, ratio of the medians {r['seconds'] / limit['seconds']:.2f})"
                rate = "n/a" if workload in READS_NOTHING else f"{r['n'] / r['seconds']:,.0f}"
                lines.append(f"| {backend} | {workload} | {method}{note} | {r['n']:,} | {r['seconds']:.2f} | {rate} | {r['peak_rss_mib']:.0f} |")
    return lines


#: The re-syncs with nothing changed, each against its own first load: (re-sync, first load,
#: the source, how halodb knows nothing changed).
RESYNCS = (
    ("W2D", "W1", "a directory that tracks its changes (Azure AD)", "the change position stored with the last run (Graph's delta)"),
    ("S2", "S1", "a spreadsheet (CSV)", "the file's SHA-256 against the last complete import's"),
    ("Q2", "Q1", "a SQL import from PostgreSQL", "the source database's fingerprint of the result"),
    ("W2", "W1", "a source that can do none of these", "nothing: the whole source is read and settled by hash"),
    ("S2R", "S1", "the spreadsheet, its fingerprint forgotten", "nothing: read in full"),
    ("Q2R", "Q1", "the SQL import, its fingerprint forgotten", "nothing: read in full"),
)


def paired_shares(n: int, backends, rounds: int, *, log=print, timeout: float | None = None) -> dict:
    """Each re-sync's time over its first load's, measured in turns: in each round a first load,
    then its re-syncs. Returns {backend: {re-sync: [share per round]}}.

    The main run measures each workload's rounds together, minutes apart from another's; on a
    machine whose speed drifts that far (W1 took 4.4 s in one stretch of a run and S1, the same
    users from a file, 2.6 s in another), a ratio of two medians says more about the drift than
    about the re-sync. A share taken within a round does not."""
    groups: dict[str, list[str]] = {}
    for resync, first, *_ in RESYNCS:
        groups.setdefault(first, []).append(resync)
    shares: dict = {}
    workdir = Path(tempfile.mkdtemp(prefix="halodb-bench-"))
    try:
        for backend in backends:
            for turn in range(rounds):
                for first, resyncs in groups.items():
                    if not applies("halodb", first, backend):
                        continue
                    log(f"  {backend:<10} shares, round {turn + 1}: {first} then {', '.join(resyncs)} ...")
                    base = measure(backend, first, "halodb", n, workdir, timeout=timeout)["seconds"]
                    for resync in resyncs:
                        again = measure(backend, resync, "halodb", n, workdir, timeout=timeout)["seconds"]
                        shares.setdefault(backend, {}).setdefault(resync, []).append(round(again / base, 4))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return shares


def resync_table(results: dict, shares: dict | None = None) -> list[str]:
    """Every re-sync with nothing changed this run measured, as a share of its own first load:
    the median of the shares taken in turns (``paired_shares``) where there are some, with their
    range, else the ratio of the two medians."""
    lines = []
    for backend, by_w in results.items():
        for resync, first, source, how in RESYNCS:
            again, load = (by_w.get(w, {}).get("halodb") for w in (resync, first))
            if not (again and load and load.get("seconds")):
                continue
            paired = (shares or {}).get(backend, {}).get(resync)
            if paired:
                share = f"{100 * statistics.median(paired):.1f} % (in turns, {len(paired)} rounds: {100 * min(paired):.1f}-{100 * max(paired):.1f} %)"
            else:
                share = f"{100 * again['seconds'] / load['seconds']:.1f} %"
            lines.append(
                f"| {backend} | {source} | {how} | {resync} {again['seconds']:.2f} s | {first} {load['seconds']:.2f} s | "
                f"{share} | {again.get('fetched', 0):,} | {again.get('halo_writes', 0):,} |"
            )
    if not lines:
        return []
    head = "| backend | source | how halodb knows nothing changed | re-sync | first load | share of the first load | records read | Halo rows written |"
    return [head, "|---|---|---|---:|---:|---:|---:|---:|", *lines]


def source_lines(backend: str, by_w: dict) -> list[str]:
    """What the source read alone says about the W1 target and a full re-read, from this run's figures.

    Every method generates the same records inside its timer, so the read (S) is in the limit
    (L) and in both halodb times. A full re-read within 25 % of a first load within 2.5 L needs
    W2 <= 0.625 L, whatever the engine; and W2 reads everything W1 reads, so W2 >= S. Only a
    source that tracks its changes (W2D) can re-sync for less than its own read."""
    s = by_w.get("W1", {}).get("source", {}).get("seconds")
    lim = by_w.get("W1", {}).get("limit", {}).get("seconds")
    w1, w2 = (by_w.get(w, {}).get("halodb", {}).get("seconds") for w in ("W1", "W2"))
    if not (s and lim and w1):
        return []
    lines = [
        f"- {backend}: reading the source alone takes {s:.2f} s: {100 * s / lim:.0f} % of the limit ({lim:.2f} s) "
        f"and {100 * s / w1:.0f} % of halodb's W1."
    ]
    if w2:
        lines.append(
            f"- {backend}: a full re-read within 25 % of a first load within 2.5 × the limit would need W2 ≤ 0.625 × limit = "
            f"{0.625 * lim:.2f} s, for any engine. The read alone is {s:.2f} s of that; halodb's W2 is {w2:.2f} s."
        )
        if w1 > s:
            lines.append(
                f"- {backend}: halodb's own time beyond the read: W1 {w1 - s:.2f} s, W2 {max(w2 - s, 0):.2f} s "
                f"({100 * max(w2 - s, 0) / (w1 - s):.0f} % of W1's); the limit's own {max(lim - s, 0):.2f} s."
            )
    return lines


def _version(name: str) -> str:
    """The installed version of distribution ``name``, or "not installed"."""
    from importlib.metadata import version

    try:
        return version(name)
    except Exception:  # noqa: BLE001 - PackageNotFoundError and friends
        return "not installed"


def versions() -> str:
    return f"Python {platform.python_version()}, SQLAlchemy {_version('SQLAlchemy')}, psycopg {_version('psycopg')}, dlt {_version('dlt')}"


def repeat_note(results: dict) -> str:
    """Which cells are medians, from the results themselves: a cell is a median when its result
    lists more than one run (W4, the slow baselines and cells merged from a single run are not)."""
    medians: dict[tuple[str, str, int], list[str]] = {}
    for backend, by_w in results.items():
        for workload, by_m in by_w.items():
            for method, r in by_m.items():
                runs = len(r.get("runs", ()))
                if runs > 1:
                    medians.setdefault((backend, method, runs), []).append(workload)
    if not medians:
        return "Every cell is one run, not a median."
    cells = "; ".join(f"{backend} {method} {', '.join(ws)} (median of {runs})" for (backend, method, runs), ws in medians.items())
    return f"Medians, their times listed under 'Every measurement': {cells}. Every other cell is one run."


SQL_SERVER = """\
## What changes on SQL Server

Production is SQL Server through pyodbc. None of this run's seconds carry over; the statement shapes
and batch sizes do, and this is where they differ from the PostgreSQL run above:

- **Batches** stay at 2,000 source records (`Sync.BatchSize`), one transaction each.
- **Lookups** (links by source key, Halo records by id) are `IN` lists of at most 2,000 parameters
  (`IN_LIST_LIMIT`), under SQL Server's 2,100 per request. PostgreSQL gets one array parameter
  (`= ANY(:keys)`) instead, because binding and planning 2,000 scalars cost more there than the lookup.
  On both, a run that read the scope's links in one pass sends no lookup for a key it has never
  seen, so a first load into an empty scope sends none.
- **The source is read ahead differently** (`halodb/sync/prefetch.py`). On PostgreSQL it is
  read in the engine's own thread, inside each `COPY` once its rows are sent, while the server
  stores them; once the next batch is read, its records are prepared there too, from the sites the
  run has looked up (`sites.Known`). A reader thread gained nothing there: psycopg waits in short
  steps, and after each one the engine must win the GIL back from the computing reader. On SQL
  Server a thread still reads and hashes a batch ahead, and each batch is prepared when it is
  written: there is no `COPY` gap, and pyodbc runs a whole `fast_executemany` in one call that
  releases the GIL, so the engine takes it back once per statement, not once per step. Sites and
  clients are looked up once per run on every backend. That reasoning is not measured: no SQL
  Server runs here.
- **COPY rows are pushed during the gap** on PostgreSQL: psycopg holds the last 32 KiB of rows
  until a `COPY` ends, which starved the server in every gap (step 28 of the tuning notes).
  `fast_executemany` sends a statement's whole parameter array at once, so SQL Server has no
  such tail.
- **New Halo rows** need their identity values back in row order. pyodbc has no `COPY`, and Halo's
  identity columns cannot be pre-allocated the way this run takes PostgreSQL sequence values, so
  SQLAlchemy's insertmanyvalues sends `INSERT … OUTPUT inserted.id SELECT … FROM (VALUES …) ORDER BY`
  pages of at most 2,099 parameters. For 15 user columns that is 139 rows a page, or 15 round trips
  per batch. On a table with triggers, where a plain `OUTPUT` is refused, the same pages go through
  `OUTPUT … INTO @ids` (`halodb/halo/output_into.py`).
- **Rows that need no ids back** (links, change rows, audit rows, updates) go as one
  `fast_executemany` per statement and batch. pyodbc binds them as parameter arrays in one round trip;
  that is what stands in for `COPY`. A new record writes no change row of its own on either backend:
  its link carries the run that created it (migration 0004), one statement per batch fewer.
- **New ids on PostgreSQL** come from the table's sequence, its name resolved once per statement.
  SQL Server has nothing to look up: the identity values come back from the `INSERT` itself.
- **Timestamps** reach PostgreSQL's `COPY` as text rendered once per batch; pyodbc binds the
  batch's one `datetime` as a parameter array, so there is nothing to render per row there.
- **Batches of 2,000** rather than 5,000, although 5,000 made W1 about 7 % faster here: SQL Server
  escalates a statement's row locks to a table lock at about 5,000 locks, which would block Halo's
  own users of the table for the rest of the batch.
- **Device numbering** reads `max(devnum)` `WITH (UPDLOCK, HOLDLOCK)`, so a device added in Halo
  meanwhile waits for halodb's transaction instead of taking the same number.
- **Statistics**: SQL Server refreshes them itself before it compiles a plan on a table that has
  grown, so the `ANALYZE` halodb runs on PostgreSQL after a big load (0.01 s at 100,000 links,
  with the 10 buckets per column of migration 0005) has no SQL Server counterpart.
- **Link keys compare bytewise** on both: `source_key` has a binary collation on SQL Server
  (migration 0002), and on PostgreSQL the link table's four key columns take the `C` collation
  (0005), which made its unique index 20 % cheaper to fill. The three scope columns keep the Halo
  database's case-insensitive collation on SQL Server; whether a binary one would pay there too is
  not measured.

The physical-limit proxy there would be `fast_executemany` in chunks, or the bulk-copy API of
Microsoft's `mssql-python` driver. A first load therefore pays more round trips per batch on SQL
Server than here. A re-sync with nothing changed costs the same shape on both: one streamed pass
over the scope's links (or one lookup per batch above 200,000 links) and no writes.
"""


def render(results: dict, n: int, profile_text: str | None, started: dt.datetime, shares: dict | None = None) -> str:
    """The report. Which cells are medians comes from ``results``, not from the command line, so
    merged and single-run cells are described as they are."""
    cpus = os.cpu_count()
    out = [
        "# halodb benchmarks",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC on {cpus} CPUs, `{platform.platform()}` ({platform.processor() or platform.machine()}); "
        f"{versions()}. N = {n:,} directory users (20 clients, 60 sites; ~5 % non-ASCII names), backends: "
        f"{', '.join(results)}. PostgreSQL at 127.0.0.1:5432 on the same machine, a fresh schema per measurement; "
        "SQLite a fresh temp file. Every measurement runs in a fresh process (its setup in another), so peak RSS "
        "(`VmHWM`, which exec resets, unlike `ru_maxrss`) is the workload's own. " + repeat_note(results) + " Ratios, never pass/fail on time.",
        "",
        "Methods: **halodb** = `SyncEngine.run` of the Users entity (match by azureoid, email, login; batches of 2,000); "
        "**limit** = raw bulk insert of the final Halo `users` rows, no logic (psycopg `COPY` on PostgreSQL, sqlite3 "
        "`executemany` on SQLite; W2/W3 are compared with the first-load limit); **naive** = per record: prepare through "
        "the same repository, `SELECT` by azureoid, then `INSERT` or `UPDATE` one row, one transaction - "
        "run on min(N, 10,000) records and extrapolated linearly to N (marked *); **dlt** = `dlt.pipeline(...).run(rows, "
        "table_name=\"users\", write_disposition=\"merge\", primary_key=\"azureoid\")` of the same final rows, PostgreSQL only "
        "(W2/W3 after a first dlt run into the same dataset; dlt's merge does not deactivate removed rows); "
        "**source** = the synthetic directory read alone, as halodb's read yields it, no database: every other "
        "method generates the same records inside its timer, so this part of each time is the same for all of them.",
        "",
        "## Results",
        "",
        *table(results),
        "",
        "halodb/limit: how many times a raw bulk insert halodb takes (design target for W1 on PostgreSQL: ≤ 2.5×); "
        "where both ran in turns, the median of the ratios within each round (`paired_ratio`), the ratio of the "
        "medians being listed under 'Every measurement'; "
        "naive/halodb and dlt/halodb: how many times faster halodb is (targets: ≥ 20× and ≥ 1.5×).",
        "",
        "### Every measurement",
        "",
        *method_table(results),
        "",
        "### Correctness of the same run",
        "",
        *checks(results, n),
        "",
    ]
    resyncs = resync_table(results, shares)
    if resyncs:
        out += [
            "### Re-sync with nothing changed, by source",
            "",
            "Each re-sync as a share of its own first load (design target ≤ 25 %, and no Halo row written), the "
            "way halodb runs it for each kind of source, and read in full for comparison. The seconds are the medians "
            "above; a share measured in turns (`--shares`) is the median of the shares within rounds, each round a "
            "first load and then its re-syncs:",
            "",
            *resyncs,
            "",
        ]
    for backend, by_w in results.items():
        # The re-syncs' shares are in the table above; here what the source read alone says.
        w1 = by_w.get("W1", {}).get("halodb")
        out += source_lines(backend, by_w)
        w4 = by_w.get("W4", {}).get("halodb")
        if w1 and w4 and w4["n"] > w1["n"]:
            out.append(
                f"- {backend}: peak RSS {w1['peak_rss_mib']:.0f} MiB at {w1['n']:,} users, {w4['peak_rss_mib']:.0f} MiB at "
                f"{w4['n']:,} ({w4['n'] // w1['n']}× the records)."
            )
    notes = Path(__file__).with_name("run_notes.md")
    if notes.exists():
        out += ["", notes.read_text().rstrip()]
    out += ["", SQL_SERVER]
    if profile_text:
        out += ["## Profile", "", "pyinstrument (or cProfile) of halodb W1 on PostgreSQL at N, in its own run (not the timed one):", "", "```", profile_text.rstrip(), "```", ""]
    notes = Path(__file__).with_name("next_tuning.md")
    if notes.exists():
        out += [notes.read_text().rstrip(), ""]
    return "\n".join(out)


def profile_w1(n: int) -> str:
    workdir = Path(tempfile.mkdtemp(prefix="halodb-prof-"))
    try:
        path = workdir / "profile.txt"
        measure("postgresql", "W1", "halodb", n, workdir, profile=str(path))
        return trim_profile(path.read_text())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def trim_profile(textout: str, lines: int = 70) -> str:
    return "\n".join(textout.splitlines()[:lines])


def odd_repeat(value: str) -> int:
    """``--repeat``: an odd count of at least 1, so that the median is one of the runs."""
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if count < 1 or count % 2 == 0:
        raise argparse.ArgumentTypeError(f"{count} is not an odd number of runs of at least 1 (1, 3, 5, ...): the median of an even count is no single run")
    return count


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--w4-n", type=int, default=None, help="N for W4 (default 10 x N)")
    p.add_argument("--backends", default="postgresql,sqlite")
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument("--profile", action="store_true", help="profile halodb W1 on PostgreSQL at N into the report")
    p.add_argument("--profile-file", help="where --profile keeps its text; without --profile, a profile to include")
    p.add_argument("--timeout", type=float, default=None, help="seconds any one step may take")
    p.add_argument("--repeat", type=odd_repeat, default=1, help="runs of halodb, the limit and the source read per cell (W1-W3), an odd number; the median is kept")
    p.add_argument("--pg-options", default="", help='extra PostgreSQL options for the run, e.g. "-cplan_cache_mode=force_custom_plan"')
    p.add_argument("--merge", help="raw results JSON of an earlier run to merge in (e.g. a W4 run)")
    p.add_argument("--shares", type=odd_repeat, default=None, metavar="ROUNDS",
                   help="also measure each re-sync's share of its first load in turns, this many rounds (an odd number)")
    args = p.parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc)
    global PG_OPTIONS
    PG_OPTIONS = args.pg_options
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    workloads = [w.strip().upper() for w in args.workloads.split(",") if w.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    print(f"halodb benchmarks, N={args.n:,}, {', '.join(backends)}: {', '.join(workloads)}")
    results = run_all(args.n, backends, workloads, methods, w4_n=args.w4_n, timeout=args.timeout, repeat=args.repeat)
    earlier_shares = None
    if args.merge:
        earlier = json.loads(Path(args.merge).read_text())
        earlier_shares = earlier.pop("_shares", None)
        for backend, by_w in earlier.items():
            for workload, by_m in by_w.items():
                results.setdefault(backend, {}).setdefault(workload, {}).update({k: v for k, v in by_m.items() if k not in results.get(backend, {}).get(workload, {})})
        order = sorted(results, key=lambda b: (b != "postgresql", b))
        results = {b: {w: results[b][w] for w in WORKLOADS if w in results[b]} for b in order}
    shares = paired_shares(args.n, backends, args.shares, timeout=args.timeout) if args.shares else earlier_shares
    if args.json:
        Path(args.json).write_text(json.dumps({**results, **({"_shares": shares} if shares else {})}, indent=1, default=str))
    profile_text = None
    if args.profile:
        profile_text = profile_w1(args.n)
        if args.profile_file:
            Path(args.profile_file).write_text(profile_text)
    elif args.profile_file and Path(args.profile_file).exists():
        profile_text = Path(args.profile_file).read_text()
    report = render(results, args.n, profile_text, started, shares)
    Path(args.out).write_text(report + "\n")
    print()
    print("\n".join(table(results)))
    print()
    print("\n".join(checks(results, args.n)))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
