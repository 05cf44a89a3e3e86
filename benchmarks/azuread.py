"""Azure AD benchmark: N users from the local Graph into PostgreSQL through the real integration.

    python -m benchmarks.azuread [--n 10000,100000] [--out benchmarks/AZUREAD.md] [--timeout S]

For each N: a fresh PostgreSQL schema with a Halo fixture (20 clients, 60 sites) and one Azure AD
connection (two group → site mappings, one through a nested group, a landing site for the rest); the
local HTTPS Graph fake from ``tests/fakes`` serves N generated users (non-ASCII names, missing
fields, disabled accounts, guests) from this process. Then, each in a fresh process so that its
peak RSS (``VmHWM``) is its own and includes none of the fake's memory:

1. setup   - the fixture, halodb's migrations and the connection;
2. full    - ``halodb run --integration AzureAD``: the first sync, a full ``/users/delta`` read;
3. delta   - after exactly 10 users were changed in the fake: the delta run.

The users the delta run wrote are counted from the database, not taken from halodb's report: the
Halo ``users`` rows whose content changed (a hash of every column before and after) plus new rows,
and the distinct users in the audit rows the run added. Both must be 10. Never pass/fail on time:
this prints figures from one run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, insert, select, text

from benchmarks.worker import peak_rss_mib  # VmHWM: the step's own memory, not the orchestrator's

ROOT = Path(__file__).resolve().parent.parent
CHANGED = 10
SEED = 4
#: Graph property each office maps to a group; UK is the nested group (London ⊂ UK).
OFFICE_SITES = {"Seattle": 2, "UK": 1}  # site ids of the fixture (benchmarks.data)
LANDING_SITE = 4


# -- the local Graph (this process) ---------------------------------------------------------------


class LocalGraph:
    """The Graph fake of ``tests/fakes`` on its own TLS server, outside pytest."""

    def __init__(self, n: int, workdir: Path):
        import trustme
        from pytest_httpserver import HTTPServer

        from tests.fakes.directory import generate_users
        from tests.fakes.graph import FakeGraph

        self.ca = trustme.CA()
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
        self.server = HTTPServer(host="127.0.0.1", port=0, ssl_context=server_ctx)
        self.server.start()
        self.ca_file = workdir / "graph-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.fake = FakeGraph(self.server, self.ca)
        people = generate_users(n, seed=SEED)
        self.ids = self.fake.add_many(people)
        by_office: dict[str, list[str]] = {}
        for p in people:
            by_office.setdefault(p.get("officeLocation") or "", []).append(p["id"])
        london = self.fake.add_group(by_office.get("London", []), display_name="London")
        self.groups = {
            "Seattle": self.fake.add_group(by_office.get("Seattle", []), display_name="Seattle"),
            "UK": self.fake.add_group([london, *by_office.get("Manchester", [])], display_name="UK"),
        }
        self.expected_sites = {oid: OFFICE_SITES["Seattle"] for oid in by_office.get("Seattle", [])}
        for office in ("London", "Manchester"):
            self.expected_sites.update({oid: OFFICE_SITES["UK"] for oid in by_office.get(office, [])})
        self.n = n

    def change(self, count: int = CHANGED) -> dict[str, str]:
        """Change the job title of ``count`` users spread over the directory; id → new title."""
        step = max(1, self.n // count)
        changed = {self.ids[i * step]: f"Benchmark Title {i}" for i in range(count)}
        for oid, title in changed.items():
            self.fake.update(oid, jobTitle=title)
        return changed

    def close(self) -> None:
        self.server.clear()
        if self.server.is_running():
            self.server.stop()


# -- one step in its own process ------------------------------------------------------------------


def _setup(spec: dict) -> dict:
    from benchmarks.worker import fixture
    from halodb.database import engine_for_url
    from halodb.halo import settings as halo_settings
    from halodb.halo.schema import azureadconnection, azureadmapping

    engine = engine_for_url(spec["url"])
    fixture(engine)  # the Halo fixture, halodb's migrations, 20 clients and 60 sites
    with engine.begin() as conn:
        row_id = conn.execute(insert(azureadconnection).returning(azureadconnection.c.id), {
            "name": "Contoso", "directoryid": spec["tenant_id"], "applicationid": spec["client_id"],
            "graph_host": spec["graph_host"], "authority_host": spec["graph_host"],
            "halointegratorenabled": True, "halo_integrator_import_list": "users",
            "createunmatchedusers": True, "unmatchedusersite": LANDING_SITE, "deactivate_users": True,
        }).scalar_one()  # fmt: skip
        for seq, (office, group_id) in enumerate(spec["groups"].items(), 1):
            conn.execute(insert(azureadmapping), {"connection_id": row_id, "group_id": group_id, "siteid": OFFICE_SITES[office], "sequenceid": seq})
        halo_settings.set_enabled(conn, "AzureAD", True)
    engine.dispose()
    return {"connection_id": row_id}


def _sync(spec: dict) -> dict:
    from halodb import runner
    from halodb.config import load_settings

    settings = load_settings(spec["config"])
    started = time.perf_counter()
    report = runner.run(settings, runner.RunOptions(integration="AzureAD"))
    seconds = time.perf_counter() - started
    (users,) = [e for e in report.entities if e.entity == "Users"]
    return {
        "seconds": seconds, "status": users.status, "error": users.error, "fetched": users.fetched,
        "created": users.created, "updated": users.updated, "unchanged": users.unchanged,
        "deactivated": users.deactivated, "quarantined": users.quarantined, "complete": users.complete,
    }  # fmt: skip


STEPS = {"setup": _setup, "full": _sync, "delta": _sync}


def worker(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    result = STEPS[spec["step"]](spec)
    result["peak_rss_mib"] = round(peak_rss_mib(), 1)
    print(json.dumps(result, default=str))


class BenchError(RuntimeError):
    pass


def _step(spec: dict, env: dict, timeout: float | None) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.azuread", "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise BenchError(f"step {spec['step']} at N={spec.get('n')} failed:\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- counting from the database (this process) ----------------------------------------------------


def users_state(engine) -> tuple[dict[int, str], int]:
    """(Halo user id → hash of the whole row, highest audit id)."""
    from halodb.halo.schema import audit, users

    with engine.connect() as conn:
        rows = {
            r[0]: hashlib.sha1(repr(tuple(r)).encode()).hexdigest()
            for r in conn.execute(select(*users.c).order_by(users.c.id))
        }
        top = conn.execute(select(func.max(audit.c.id))).scalar() or 0
    return rows, top


def written_since(engine, before: tuple[dict[int, str], int]) -> dict:
    from halodb.halo.schema import audit

    rows_before, audit_before = before
    rows_after, _ = users_state(engine)
    changed = [i for i, h in rows_after.items() if rows_before.get(i) != h]
    with engine.connect() as conn:
        audited = conn.execute(
            select(func.count(func.distinct(audit.c.id1))).where(audit.c.id > audit_before, audit.c.table_name == "USERS")
        ).scalar_one()
    return {"rows_written": len(changed), "new_rows": len(rows_after) - len(rows_before), "audited_users": audited}


def full_checks(engine, graph: LocalGraph) -> dict:
    """What the first sync left in Halo, against what the fake holds."""
    from halodb.halo.schema import users

    with engine.connect() as conn:
        rows = conn.execute(select(users.c.azureoid, users.c.site_id, users.c.name)).all()
    sites = {oid: site for oid, site, _ in rows if oid}
    misplaced = sum(1 for oid, site in sites.items() if site != graph.expected_sites.get(oid, LANDING_SITE))
    unnamed = sum(1 for _, _, name in rows if not name)
    return {"halo_users": len(rows), "linked_users": len(sites), "misplaced": misplaced, "unnamed": unnamed}


def titles(engine, oids) -> dict[str, str]:
    from halodb.halo.schema import users

    with engine.connect() as conn:
        return dict(conn.execute(select(users.c.azureoid, users.c.title).where(users.c.azureoid.in_(list(oids)))).all())


# -- one N ------------------------------------------------------------------------------------------


def measure(n: int, workdir: Path, *, timeout: float | None = None, log=print) -> dict:
    from benchmarks.__main__ import Database
    from halodb.database import engine_for_url

    db = Database("postgresql", workdir)
    graph = LocalGraph(n, workdir)
    engine = engine_for_url(db.url)
    try:
        spec = {"n": n, "url": db.url}
        setup = _step({**spec, "step": "setup", "tenant_id": graph.fake.tenant_id, "client_id": graph.fake.client_id,
                       "graph_host": graph.fake.graph_host, "groups": graph.groups}, dict(os.environ), timeout)  # fmt: skip
        config = workdir / f"appsettings-{n}.json"
        config.write_text(json.dumps({
            "InstanceName": "bench-azuread",
            "Database": {"Url": db.url},
            "Integrations": {"AzureAD": {"Users": True}},
            "AzureAD": {"Secrets": {str(setup["connection_id"]): graph.fake.client_secret}},
            "Logging": {"Folder": str(workdir / "logs")},
        }))  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("HALODB_AZUREAD")}
        env["HALODB_AZUREAD_CA_FILE"] = str(graph.ca_file)
        log(f"  N={n:,}: full sync ...")
        full = _step({**spec, "step": "full", "config": str(config)}, env, timeout)
        full.update(full_checks(engine, graph))
        full["graph_requests"] = len(graph.fake.request_log)
        log(f"  N={n:,}: full sync {full['seconds']:.1f} s, {full['created']:,} created, peak RSS {full['peak_rss_mib']:.0f} MiB")
        changed = graph.change(CHANGED)
        before = users_state(engine)
        graph.fake.request_log.clear()
        log(f"  N={n:,}: delta run after {CHANGED} changes ...")
        delta = _step({**spec, "step": "delta", "config": str(config)}, env, timeout)
        delta.update(written_since(engine, before))
        delta["graph_requests"] = len(graph.fake.request_log)
        delta["titles_right"] = sum(1 for oid, title in titles(engine, changed).items() if changed[oid] == title)
        log(f"  N={n:,}: delta run {delta['seconds']:.2f} s, {delta['rows_written']} users written, peak RSS {delta['peak_rss_mib']:.0f} MiB")
        return {"n": n, "setup": setup, "full": full, "delta": delta}
    finally:
        engine.dispose()
        graph.close()
        db.drop()


def run_all(sizes: list[int], *, timeout: float | None = None, log=print) -> list[dict]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access-log line per Graph request
    workdir = Path(tempfile.mkdtemp(prefix="halodb-bench-azuread-"))
    try:
        return [measure(n, workdir, timeout=timeout, log=log) for n in sizes]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# -- report -----------------------------------------------------------------------------------------


def problems(results: list[dict]) -> list[str]:
    """Every correctness figure that is not what it must be (empty when all hold)."""
    out = []
    for r in results:
        n, full, delta = r["n"], r["full"], r["delta"]
        if (full["status"], full["created"], full["linked_users"], full["misplaced"], full["unnamed"]) != ("ok", n, n, 0, 0):
            out.append(f"N={n:,} full: status {full['status']}, created {full['created']:,}, linked {full['linked_users']:,}, "
                       f"misplaced {full['misplaced']}, unnamed {full['unnamed']} ({full.get('error')})")  # fmt: skip
        got = (delta["status"], delta["fetched"], delta["updated"], delta["created"], delta["rows_written"], delta["new_rows"], delta["audited_users"], delta["titles_right"])
        if got != ("ok", CHANGED, CHANGED, 0, CHANGED, 0, CHANGED, CHANGED):
            out.append(f"N={n:,} delta: {dict(zip(('status', 'fetched', 'updated', 'created', 'rows_written', 'new_rows', 'audited_users', 'titles_right'), got))} ({delta.get('error')})")
    return out


def table(results: list[dict]) -> list[str]:
    lines = [
        "| N | full sync s | users/s | peak RSS MiB | Graph requests | delta s | delta fetched | users written (counted) | delta peak RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        f, d = r["full"], r["delta"]
        lines.append(
            f"| {r['n']:,} | {f['seconds']:.2f} | {r['n'] / f['seconds']:,.0f} | {f['peak_rss_mib']:.0f} | {f['graph_requests']:,} "
            f"| {d['seconds']:.2f} | {d['fetched']} | {d['rows_written']} | {d['peak_rss_mib']:.0f} |"
        )
    return lines


def header(started: dt.datetime) -> str:
    from benchmarks.__main__ import PG_URL, _version
    from halodb.database import engine_for_url

    engine = engine_for_url(PG_URL)
    try:
        with engine.connect() as conn:
            server = conn.execute(text("SHOW server_version")).scalar()
    finally:
        engine.dispose()
    return (
        f"Run {started:%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPUs, `{platform.platform()}` "
        f"({platform.processor() or platform.machine()}); Python {platform.python_version()}, "
        f"SQLAlchemy {_version('SQLAlchemy')}, psycopg {_version('psycopg')}, msal {_version('msal')}, httpx {_version('httpx')}, "
        f"PostgreSQL {server} at 127.0.0.1:5432 on the same machine."
    )


def render(results: list[dict], started: dt.datetime, head: str | None = None) -> str:
    issues = problems(results)
    out = [
        "# Azure AD benchmark",
        "",
        head or header(started),
        "",
        "`python -m benchmarks.azuread`: the Azure AD integration (`halodb run --integration AzureAD`, Users) from the "
        "local HTTPS Graph fake of `tests/fakes` (real TLS, MSAL client-credentials token, `/users/delta` pages of 100 "
        "users, `transitiveMembers` pages of 100) into a fresh PostgreSQL schema holding the Halo fixture. The directory "
        "is `generate_users(N)`: about 5 % non-ASCII names, 3 % disabled accounts, 2 % guests, missing mail, phones, "
        "titles. Two group mappings place users on sites (Seattle; UK, which holds the London group nested), the "
        "rest land on the connection's landing site. "
        "The fake runs in the orchestrating process; setup, the full sync and the delta run each run in a fresh "
        "process, so peak RSS (`VmHWM`, which exec resets, unlike `ru_maxrss`) is halodb's own. On this machine the fake, PostgreSQL and halodb share "
        "the same cores, so the seconds include serving Graph. One run, not a median; never pass/fail on time.",
        "",
        f"Delta run: exactly {CHANGED} users get a new job title in the fake, then halodb reads the stored delta link. "
        "\"Users written\" is counted from the database: Halo `users` rows whose content changed plus new rows "
        "(a hash of every column before and after the run); the distinct users in the audit rows it added agree.",
        "",
        *table(results),
        "",
        "Correctness of the same run:",
        "",
    ]
    for r in results:
        f, d = r["full"], r["delta"]
        out.append(
            f"- N={r['n']:,}: full sync {f['status']}, {f['created']:,} created, {f['linked_users']:,} Halo users carry "
            f"their Azure object id, {f['misplaced']} on the wrong site; delta {d['status']}: {d['fetched']} fetched, "
            f"{d['updated']} updated, {d['rows_written']} rows written, {d['new_rows']} new, {d['audited_users']} users "
            f"audited, {d['titles_right']} of {CHANGED} new titles in Halo, {d['graph_requests']} Graph requests."
        )
    out += ["", "All counts as they must be." if not issues else "PROBLEMS: " + "; ".join(issues), ""]
    return "\n".join(out)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        worker(argv[1:])
        return 0
    p = argparse.ArgumentParser(prog="python -m benchmarks.azuread", description=__doc__.splitlines()[0])
    p.add_argument("--n", default="10000,100000", help="comma-separated directory sizes")
    p.add_argument("--out", default=str(Path(__file__).with_name("AZUREAD.md")))
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument("--timeout", type=float, default=None, help="seconds any one step may take")
    args = p.parse_args(argv)
    sizes = [int(s.replace("_", "").replace(",", "")) for s in args.n.split(",") if s.strip()]
    started = dt.datetime.now(dt.timezone.utc)
    print(f"halodb Azure AD benchmark, N = {', '.join(f'{n:,}' for n in sizes)}")
    results = run_all(sizes, timeout=args.timeout)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    report = render(results, started)
    Path(args.out).write_text(report + "\n")
    print()
    print("\n".join(table(results)))
    issues = problems(results)
    print("\n" + ("all counts as they must be" if not issues else "PROBLEMS:\n" + "\n".join(issues)))
    print(f"written to {args.out}")
    return 1 if issues else 0


if __name__ == "__main__":
    sys.exit(main())
