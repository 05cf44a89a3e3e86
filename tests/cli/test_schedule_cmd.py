"""``halodb schedule windows|cron|systemd`` run in-process through the real ``main`` group."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from halodb import schedule
from halodb.cli import main

WIN_CONFIG = "C:\\HaloIntegrator\\5min\\appsettings.json"
NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}


@pytest.fixture(autouse=True)
def _pinned_today(monkeypatch):
    monkeypatch.setattr(schedule, "_today", lambda: dt.date(2025, 3, 1))


def _run(*args: str):
    return CliRunner().invoke(main, ["schedule", *args], catch_exceptions=False)


def test_schedule_help_lists_targets():
    result = _run("--help")
    assert result.exit_code == 0
    for target in ("windows", "cron", "systemd"):
        assert target in result.stdout


def test_windows_prints_xml():
    result = _run("windows", "--every", "5m", "--config", WIN_CONFIG)
    assert result.exit_code == 0, result.output
    assert result.stdout == schedule.windows_task_xml(config_path=WIN_CONFIG, every="5m")
    root = ET.fromstring(result.stdout)
    assert root.find("t:RegistrationInfo/t:URI", NS).text == "\\halodb 5min"
    assert root.find("t:Actions/t:Exec/t:Arguments", NS).text == f'AUTO "{WIN_CONFIG}"'
    assert root.find("t:Triggers/t:TimeTrigger/t:Repetition/t:Interval", NS).text == "PT5M"


def test_windows_options_reach_the_xml():
    result = _run(
        "windows", "--every", "1d", "--config", "C:\\HaloIntegrator\\daily\\appsettings.json",
        "--name", "Halo nightly", "--start-in", "D:\\HaloLogs\\daily",
        "--program", "C:\\Program Files\\halodb\\halodb.exe",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    root = ET.fromstring(result.stdout)
    assert root.find("t:RegistrationInfo/t:URI", NS).text == "\\Halo nightly"
    assert root.find("t:Actions/t:Exec/t:Command", NS).text == "C:\\Program Files\\halodb\\halodb.exe"
    assert root.find("t:Actions/t:Exec/t:WorkingDirectory", NS).text == "D:\\HaloLogs\\daily"
    assert root.find("t:Triggers/t:CalendarTrigger/t:StartBoundary", NS).text == "2025-03-01T03:17:00"


def test_windows_output_writes_utf16_and_prints_import_command(tmp_path):
    target = tmp_path / "halodb-5min.xml"
    result = _run(
        "windows", "--every", "5m", "--config", WIN_CONFIG, "--output", str(target), "--user", "HALO\\svc-sync"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"wrote {target}\n"
        "import it on the Windows server (schtasks asks for the account's password):\n"
        f'  schtasks /Create /XML "{target}" /TN "halodb 5min" /RU "HALO\\svc-sync" /RP\n'
    )
    data = target.read_bytes()
    assert data.startswith(b"\xff\xfe<\x00?\x00x\x00m\x00l\x00")
    text = data.decode("utf-16")
    assert text.startswith('<?xml version="1.0" encoding="UTF-16"?>\r\n')
    assert text == schedule.windows_task_xml(config_path=WIN_CONFIG, every="5m").replace("\n", "\r\n")
    root = ET.fromstring(data)
    assert root.find("t:Settings/t:MultipleInstancesPolicy", NS).text == "IgnoreNew"


def test_windows_placeholder_user(tmp_path):
    target = tmp_path / "t.xml"
    result = _run("windows", "--every", "1h", "--config", WIN_CONFIG, "--output", str(target), "--name", "Halo hourly")
    assert result.stdout.splitlines()[-1] == f'  schtasks /Create /XML "{target}" /TN "Halo hourly" /RU "DOMAIN\\user" /RP'


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--every", "30s", "--config", WIN_CONFIG], "error: interval 30s is shorter than the 1 minute minimum"),
        (["--every", "5m", "--config", "appsettings.json"], "error: config path must be an absolute Windows path"),
        (["--every", "soon", "--config", WIN_CONFIG], "error: cannot read interval 'soon'"),
    ],
)
def test_windows_bad_input_is_one_line_exit_2(args, message):
    result = _run("windows", *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1


def test_windows_unwritable_output(tmp_path):
    result = _run("windows", "--every", "5m", "--config", WIN_CONFIG, "--output", str(tmp_path / "missing" / "t.xml"))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: cannot write {tmp_path / 'missing' / 't.xml'}")


def test_cron_prints_line():
    result = _run("cron", "--every", "2h", "--config", "/srv/halo/2h/appsettings.json", "--program", "halodb")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "0 */2 * * * cd '/srv/halo/2h' && flock -n .halodb.lock timeout 24h "
        "halodb AUTO '/srv/halo/2h/appsettings.json' >/dev/null 2>&1\n"
    )


def test_cron_no_lock_start_in_and_relative_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _run(
        "cron", "--every", "1d", "--config", "appsettings.json", "--start-in", "/var/log/halo",
        "--program", "/usr/local/bin/halodb", "--no-lock",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"17 3 * * * cd '/var/log/halo' && /usr/local/bin/halodb AUTO '{tmp_path}/appsettings.json' >/dev/null 2>&1\n"
    )


def test_cron_default_program_is_found_on_path(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: "/opt/halodb/bin/halodb" if name == "halodb" else None)
    result = _run("cron", "--every", "5m", "--config", "/srv/halo/5min/appsettings.json", "--no-lock")
    assert " && /opt/halodb/bin/halodb AUTO " in result.stdout


def test_cron_rejects_7_minutes():
    result = _run("cron", "--every", "7m", "--config", "/srv/halo/7min/appsettings.json", "--program", "halodb")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: cron cannot run every 7 minutes exactly: 7 does not divide 60 "
        "(use systemd timers (halodb schedule systemd) for intervals cron cannot express)\n"
    )


def test_systemd_prints_both_units_with_headers():
    args = ["--every", "5m", "--config", "/srv/halo/5min/appsettings.json", "--program", "/usr/local/bin/halodb"]
    result = _run("systemd", *args)
    assert result.exit_code == 0, result.output
    service, timer = schedule.systemd_units(
        config_path="/srv/halo/5min/appsettings.json", every="5m", program="/usr/local/bin/halodb"
    )
    assert result.stdout == f"# halodb-5min.service\n{service}\n# halodb-5min.timer\n{timer}"
    assert "ExecStart=/usr/local/bin/halodb AUTO /srv/halo/5min/appsettings.json\n" in result.stdout
    assert "Unit=halodb-5min.service\n" in result.stdout


def test_systemd_output_dir_writes_units(tmp_path):
    out = tmp_path / "units"
    result = _run(
        "systemd", "--every", "1d", "--config", "/srv/halo/daily/appsettings.json",
        "--program", "/usr/local/bin/halodb", "--name", "halo-nightly.timer", "--user", "halo",
        "--output-dir", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"wrote {out / 'halo-nightly.service'}\n"
        f"wrote {out / 'halo-nightly.timer'}\n"
        "enable it with:\n"
        "  sudo systemctl daemon-reload && sudo systemctl enable --now halo-nightly.timer\n"
    )
    assert "User=halo\n" in (out / "halo-nightly.service").read_text()
    timer = (out / "halo-nightly.timer").read_text()
    assert "OnCalendar=*-*-* 03:17:00\nPersistent=true\nUnit=halo-nightly.service\n" in timer


def test_systemd_without_halodb_on_path(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    result = _run("systemd", "--every", "5m", "--config", "/srv/halo/5min/appsettings.json")
    assert result.exit_code == 2
    assert result.stderr == "error: halodb is not on PATH (pass --program /absolute/path/to/halodb)\n"
