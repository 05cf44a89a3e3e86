"""Several real ``halodb`` processes on one database at once: every record is created exactly
once, nobody fails, and whoever finds an entity locked says so and moves on."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from halodb import demo
from halodb.database import engine_for_url
from halodb.halo.schema import area, device, site, users

pytestmark = pytest.mark.slow
PROCESSES = 4


def _second_instance(config: Path) -> Path:
    """A "daily" folder on the same database whose entities overlap the demo's (SQL import users,
    spreadsheet assets), with its own instance name."""
    settings = json.loads(config.read_text())
    settings["InstanceName"] = "daily"
    settings["Integrations"] = {"Spreadsheet": {"Assets": True}, "SqlImport": {"Users": True}}
    if settings["Database"]["Url"].startswith("sqlite:///") and not settings["Database"]["Url"].startswith("sqlite:////"):
        settings["Database"]["Url"] = f"sqlite:///{config.parent / 'halo.db'}"
    other = config.parent.parent / "daily" / "appsettings.json"
    other.parent.mkdir()
    other.write_text(json.dumps(settings))
    return other


@pytest.mark.parametrize("configs", ["one config", "two overlapping configs"])
@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_four_processes_create_everything_exactly_once(db_url, configs, tmp_path):
    url = None if db_url.startswith("sqlite") else db_url
    config = demo.create(tmp_path / "demo", database_url=url)
    paths = [config] * PROCESSES if configs == "one config" else [config, _second_instance(config)] * (PROCESSES // 2)
    procs = [
        subprocess.Popen([sys.executable, "-m", "halodb", "run", "--config", str(path), "--json"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for path in paths
    ]  # fmt: skip
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        reports.append(json.loads(out))
    # Users refer to sites another integration creates: a process that ran the SQL import before
    # the spreadsheet's sites existed quarantined those users. One more run converges.
    settle = subprocess.run([sys.executable, "-m", "halodb", "run", "--config", str(config), "--json"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert settle.returncode == 0, settle.stderr
    reports.append(json.loads(settle.stdout))
    created = Counter()
    for report in reports:
        for entity in report["entities"]:
            created[entity["label"]] += entity["created"]
        for label, reason in report["skipped"]:
            assert reason.startswith(("locked by instance demo since", "locked by instance daily since", "after ")), (label, reason)
    # Every record created exactly once, whoever created it.
    assert created == {"spreadsheet 'Demo clients'": 2, "spreadsheet 'Demo sites'": 2, "spreadsheet 'Demo assets'": 7, "SQL import 'HR employees'": 11}
    assert reports[-1]["entities"] and all(e["quarantined"] == 0 for e in reports[-1]["entities"])
    engine = engine_for_url(url or f"sqlite:///{Path(config).parent / 'halo.db'}")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(users)).scalar_one() == 12  # 11 + Ana, adopted
        assert conn.execute(select(func.count(func.distinct(users.c.emailaddress)))).scalar_one() == 12
        assert conn.execute(select(func.count()).select_from(device)).scalar_one() == 7
        assert conn.execute(select(func.count()).select_from(area)).scalar_one() == 4
        assert conn.execute(select(func.count()).select_from(site)).scalar_one() == 5
    engine.dispose()
