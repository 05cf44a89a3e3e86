"""halodb.schedule: intervals, Task Scheduler XML, crontab lines and systemd units."""

from __future__ import annotations

import configparser
import datetime as dt
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from halodb import schedule
from halodb.errors import UsageError
from halodb.schedule import (
    cron_line,
    execution_time_limit,
    iso8601_duration,
    parse_every,
    systemd_timespan,
    systemd_units,
    windows_task_xml,
    write_task_xml,
)

NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
WIN_CONFIG = "C:\\HaloIntegrator\\5min\\appsettings.json"
DAY = dt.date(2025, 3, 1)


def _tag(element: ET.Element) -> str:
    return element.tag.split("}", 1)[1]


def _task(every="5m", **kwargs) -> ET.Element:
    kwargs.setdefault("config_path", WIN_CONFIG)
    kwargs.setdefault("start_date", DAY)
    return ET.fromstring(windows_task_xml(every=every, **kwargs))


def _get(root: ET.Element, path: str) -> str:
    element = root.find(path, NS)
    assert element is not None, f"missing {path}"
    return element.text


# --------------------------------------------------------------------------- parse_every


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("5m", 5),
        ("15min", 15),
        ("1h", 60),
        ("1d", 1440),
        ("30 mins", 30),
        ("2 hours", 120),
        ("3days", 4320),
        ("5M", 5),
        ("60s", 1),
        ("1m", 1),
    ],
)
def test_parse_every(text, minutes):
    assert parse_every(text) == dt.timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("30s", "shorter than the 1 minute minimum"),
        ("0m", "shorter than the 1 minute minimum"),
        ("90s", "not a whole number of minutes"),
        ("5", "cannot read interval"),
        ("", "cannot read interval"),
        ("m", "cannot read interval"),
        ("1.5h", "cannot read interval"),
        ("-5m", "cannot read interval"),
        ("5 fortnights", "unknown unit"),
        ("5w", "unknown unit"),
    ],
)
def test_parse_every_rejects(text, message):
    with pytest.raises(UsageError, match=message) as info:
        parse_every(text)
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("minutes", "iso", "span"),
    [
        (5, "PT5M", "5min"),
        (60, "PT1H", "1h"),
        (90, "PT1H30M", "1h 30min"),
        (1440, "P1D", "1d"),
        (2160, "P1DT12H", "1d 12h"),
    ],
)
def test_duration_formats(minutes, iso, span):
    assert iso8601_duration(dt.timedelta(minutes=minutes)) == iso
    assert systemd_timespan(dt.timedelta(minutes=minutes)) == span


@pytest.mark.parametrize(("every", "hours"), [("1m", 2), ("5m", 2), ("15m", 3), ("1h", 12), ("4h", 48), ("1d", 72)])
def test_execution_time_limit(every, hours):
    assert execution_time_limit(parse_every(every)) == dt.timedelta(hours=hours)


# --------------------------------------------------------------------------- Windows


def test_task_xml_declaration_and_namespace():
    text = windows_task_xml(config_path=WIN_CONFIG, every="5m", start_date=DAY)
    assert text.startswith('<?xml version="1.0" encoding="UTF-16"?>\n<Task version="1.2" ')
    root = ET.fromstring(text)
    assert root.tag == "{http://schemas.microsoft.com/windows/2004/02/mit/task}Task"
    assert root.get("version") == "1.2"


def test_task_children_in_export_order():
    root = _task()
    assert [_tag(child) for child in root] == ["RegistrationInfo", "Triggers", "Principals", "Settings", "Actions"]


def test_task_every_5_minutes():
    root = _task(description="five & <more>")
    assert _get(root, "t:RegistrationInfo/t:Description") == "five & <more>"
    assert _get(root, "t:RegistrationInfo/t:URI") == "\\halodb 5min"

    (trigger,) = root.find("t:Triggers", NS)
    assert _tag(trigger) == "TimeTrigger"
    # triggerBaseType is an xs:sequence: Enabled, StartBoundary, EndBoundary, Repetition
    assert [_tag(child) for child in trigger] == ["Enabled", "StartBoundary", "Repetition"]
    assert _get(trigger, "t:Enabled") == "true"
    assert _get(trigger, "t:StartBoundary") == "2025-03-01T00:00:00"
    assert _get(trigger, "t:Repetition/t:Interval") == "PT5M"
    assert trigger.find("t:Repetition/t:Duration", NS) is None  # repeat indefinitely
    assert trigger.find("t:EndBoundary", NS) is None

    principals = root.find("t:Principals", NS)
    assert len(principals) == 1
    principal = principals[0]
    assert _get(principal, "t:LogonType") == "Password"
    assert _get(principal, "t:RunLevel") == "LeastPrivilege"
    assert root.find("t:Actions", NS).get("Context") == principal.get("id") == "Author"

    settings = {_tag(child): child.text for child in root.find("t:Settings", NS)}
    assert settings["MultipleInstancesPolicy"] == "IgnoreNew"
    assert settings["DisallowStartIfOnBatteries"] == "false"
    assert settings["StopIfGoingOnBatteries"] == "false"
    assert settings["ExecutionTimeLimit"] == "PT2H"
    assert settings["Enabled"] == "true"
    assert settings["StartWhenAvailable"] == "true"

    (execute,) = root.find("t:Actions", NS)
    assert _tag(execute) == "Exec"
    assert _get(execute, "t:Command") == "halodb"
    assert _get(execute, "t:Arguments") == 'AUTO "C:\\HaloIntegrator\\5min\\appsettings.json"'
    assert _get(execute, "t:WorkingDirectory") == "C:\\HaloIntegrator\\5min"


def test_task_default_description_and_hourly_trigger():
    root = _task("2h")
    assert _get(root, "t:Triggers/t:TimeTrigger/t:Repetition/t:Interval") == "PT2H"
    assert _get(root, "t:RegistrationInfo/t:Description") == (
        "halodb AUTO C:\\HaloIntegrator\\5min\\appsettings.json every 2 hours (generated by halodb schedule windows)"
    )
    assert _get(root, "t:Settings/t:ExecutionTimeLimit") == "PT24H"


@pytest.mark.parametrize(("every", "days"), [("1d", "1"), ("24h", "1"), ("2d", "2")])
def test_task_daily_uses_calendar_trigger(every, days):
    root = _task(every, config_path="C:\\HaloIntegrator\\daily\\appsettings.json")
    (trigger,) = root.find("t:Triggers", NS)
    assert _tag(trigger) == "CalendarTrigger"
    assert [_tag(child) for child in trigger] == ["Enabled", "StartBoundary", "ScheduleByDay"]
    assert _get(trigger, "t:StartBoundary") == "2025-03-01T03:17:00"
    assert _get(trigger, "t:ScheduleByDay/t:DaysInterval") == days
    assert trigger.find("t:Repetition", NS) is None
    assert _get(root, "t:Settings/t:ExecutionTimeLimit") == "PT72H"
    assert _get(root, "t:RegistrationInfo/t:URI") == "\\halodb daily"


def test_task_start_date_defaults_to_today(monkeypatch):
    monkeypatch.setattr(schedule, "_today", lambda: dt.date(2031, 12, 24))
    root = ET.fromstring(windows_task_xml(config_path=WIN_CONFIG, every="15m"))
    assert _get(root, "t:Triggers/t:TimeTrigger/t:StartBoundary") == "2031-12-24T00:00:00"


def test_task_escapes_ampersand_and_quotes_in_paths():
    config = "D:\\Halo & Co's sync\\<5min>\\appsettings.json"
    text = windows_task_xml(
        config_path=config,
        every="5m",
        name="Halo & Co's 5min",
        program="C:\\Program Files\\halodb & tools\\halodb.exe",
        start_date=DAY,
    )
    assert "&amp;" in text and "&lt;5min&gt;" in text
    assert " & " not in text.split("?>", 1)[1]  # no raw ampersand anywhere in the document
    root = ET.fromstring(text)
    assert _get(root, "t:Actions/t:Exec/t:Command") == "C:\\Program Files\\halodb & tools\\halodb.exe"
    assert _get(root, "t:Actions/t:Exec/t:Arguments") == f'AUTO "{config}"'
    assert _get(root, "t:Actions/t:Exec/t:WorkingDirectory") == "D:\\Halo & Co's sync\\<5min>"
    assert _get(root, "t:RegistrationInfo/t:URI") == "\\Halo & Co's 5min"


def test_task_start_in_unc_and_folder_name():
    root = _task(
        config_path="\\\\fileserver\\halo\\5min\\appsettings.json",
        start_in="E:\\HaloLogs\\5min",
        name="\\HaloIntegrator\\5min",
    )
    assert _get(root, "t:Actions/t:Exec/t:Arguments") == 'AUTO "\\\\fileserver\\halo\\5min\\appsettings.json"'
    assert _get(root, "t:Actions/t:Exec/t:WorkingDirectory") == "E:\\HaloLogs\\5min"
    assert _get(root, "t:RegistrationInfo/t:URI") == "\\HaloIntegrator\\5min"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"config_path": "appsettings.json"}, "must be an absolute Windows path"),
        ({"config_path": "/srv/halo/appsettings.json"}, "must be an absolute Windows path"),
        ({"start_in": "logs"}, "must be an absolute Windows path"),
        ({"config_path": 'C:\\a"b\\appsettings.json'}, "double quote"),
        ({"config_path": "C:\\a\nb\\appsettings.json"}, "control character"),
        ({"name": "halodb|5min"}, "characters Task Scheduler refuses"),
        ({"every": "745h"}, "31-day repetition maximum"),
        ({"every": "366d"}, "365-day maximum"),
        ({"every": "30s"}, "1 minute minimum"),
    ],
)
def test_task_rejects(kwargs, message):
    args = {"config_path": WIN_CONFIG, "every": "5m", **kwargs}
    with pytest.raises(UsageError, match=message):
        windows_task_xml(**args)


def test_write_task_xml_is_utf16_with_bom(tmp_path):
    text = windows_task_xml(config_path="C:\\Halo & Co\\5min\\appsettings.json", every="5m", start_date=DAY)
    target = tmp_path / "task.xml"
    write_task_xml(target, text)
    data = target.read_bytes()
    assert data[:2] == b"\xff\xfe"
    decoded = data.decode("utf-16")
    assert decoded == text.replace("\n", "\r\n")
    root = ET.fromstring(data)  # the parser honours the BOM and the UTF-16 declaration
    assert _get(root, "t:Actions/t:Exec/t:WorkingDirectory") == "C:\\Halo & Co\\5min"


def test_schtasks_command():
    assert schedule.schtasks_command(xml_file="C:\\tasks\\halodb-5min.xml", name="halodb 5min", user="HALO\\svc-sync") == (
        'schtasks /Create /XML "C:\\tasks\\halodb-5min.xml" /TN "halodb 5min" /RU "HALO\\svc-sync" /RP'
    )


# --------------------------------------------------------------------------- cron

POSIX_CONFIG = "/srv/halo/5min/appsettings.json"


@pytest.mark.parametrize(
    ("every", "spec", "hours"),
    [
        ("5m", "*/5 * * * *", 2),
        ("1m", "* * * * *", 2),
        ("30min", "*/30 * * * *", 6),
        ("1h", "0 * * * *", 12),
        ("2h", "0 */2 * * *", 24),
        ("1d", "17 3 * * *", 72),
        ("24h", "17 3 * * *", 72),
    ],
)
def test_cron_line(every, spec, hours):
    assert cron_line(config_path=POSIX_CONFIG, every=every, program="halodb") == (
        f"{spec} cd '/srv/halo/5min' && flock -n .halodb.lock timeout {hours}h "
        "halodb AUTO '/srv/halo/5min/appsettings.json' >/dev/null 2>&1"
    )


def test_cron_line_without_lock():
    assert cron_line(config_path=POSIX_CONFIG, every="5m", program="halodb", lock=False) == (
        "*/5 * * * * cd '/srv/halo/5min' && halodb AUTO '/srv/halo/5min/appsettings.json' >/dev/null 2>&1"
    )


@pytest.mark.parametrize(
    ("every", "message"),
    [
        ("7m", "7 does not divide 60"),
        ("90m", "90 does not divide 60"),
        ("5h", "5 does not divide 24"),
        ("2d", "day-of-month steps restart each month"),
    ],
)
def test_cron_rejects_inexact_intervals(every, message):
    with pytest.raises(UsageError, match=message) as info:
        cron_line(config_path=POSIX_CONFIG, every=every, program="halodb")
    assert "systemd" in str(info.value)


def test_cron_quotes_and_escapes():
    line = cron_line(
        config_path="/srv/O'Brien halo/50%/appsettings.json",
        every="5m",
        start_in="/var/lib/halo logs",
        program="/opt/halo db/bin/halodb",
        lock=False,
    )
    assert line == (
        "*/5 * * * * cd '/var/lib/halo logs' && '/opt/halo db/bin/halodb' AUTO "
        "'/srv/O'\"'\"'Brien halo/50\\%/appsettings.json' >/dev/null 2>&1"
    )


def test_cron_rejects_relative_and_newlines():
    with pytest.raises(UsageError, match="absolute"):
        cron_line(config_path="appsettings.json", every="5m")
    with pytest.raises(UsageError, match="control character"):
        cron_line(config_path="/srv/a\n* * * * * evil/appsettings.json", every="5m")


# --------------------------------------------------------------------------- systemd


def _ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True, comment_prefixes=("#", ";"))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(text)
    return parser


def test_systemd_units_every_5_minutes():
    service, timer = systemd_units(config_path=POSIX_CONFIG, every="5m", program="/usr/local/bin/halodb")
    svc = _ini(service)
    assert svc.sections() == ["Unit", "Service"]
    assert svc["Service"]["Type"] == "oneshot"
    assert svc["Service"]["WorkingDirectory"] == "/srv/halo/5min"
    assert svc["Service"]["ExecStart"] == "/usr/local/bin/halodb AUTO /srv/halo/5min/appsettings.json"
    assert svc["Service"]["TimeoutStartSec"] == "2h"
    assert "User" not in svc["Service"]
    assert "never overlap" in service

    tmr = _ini(timer)
    assert tmr.sections() == ["Unit", "Timer", "Install"]
    assert dict(tmr["Timer"]) == {
        "OnBootSec": "1min",
        "OnUnitActiveSec": "5min",
        "AccuracySec": "1s",
        "Unit": "halodb-5min.service",
    }
    assert tmr["Install"]["WantedBy"] == "timers.target"
    assert tmr["Unit"]["Description"] == "Run halodb-5min.service every 5 minutes"


def test_systemd_units_daily_uses_calendar():
    _, timer = systemd_units(
        config_path="/srv/halo/daily/appsettings.json", every="1d", program="/usr/local/bin/halodb"
    )
    assert dict(_ini(timer)["Timer"]) == {
        "OnCalendar": "*-*-* 03:17:00",
        "Persistent": "true",
        "Unit": "halodb-daily.service",
    }


def test_systemd_units_two_days_and_user_and_name():
    service, timer = systemd_units(
        config_path="/srv/halo/weekend/appsettings.json",
        every="2d",
        program="/usr/local/bin/halodb",
        name="halo-sync.service",
        user="halo",
    )
    assert _ini(service)["Service"]["User"] == "halo"
    tmr = _ini(timer)["Timer"]
    assert tmr["OnUnitActiveSec"] == "2d"
    assert tmr["Unit"] == "halo-sync.service"
    assert "Persistent" not in tmr  # only meaningful with OnCalendar


def test_systemd_units_escape_specials():
    service, _ = systemd_units(
        config_path='/srv/my halo/100%/"$x".json',
        every="1h",
        program="/opt/halo db/halodb",
        start_in="/srv/my halo/100%",
    )
    svc = _ini(service)["Service"]
    assert svc["ExecStart"] == '"/opt/halo db/halodb" AUTO "/srv/my halo/100%%/\\"$$x\\".json"'
    assert svc["WorkingDirectory"] == "/srv/my halo/100%%"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"program": "halodb"}, "absolute program path"),
        ({"config_path": "appsettings.json"}, "absolute path"),
        ({"name": "halodb 5min"}, "unit name"),
        ({"user": "bad user"}, "not a valid user name"),
        ({"every": "10s"}, "1 minute minimum"),
    ],
)
def test_systemd_units_reject(kwargs, message):
    args = {"config_path": POSIX_CONFIG, "every": "5m", "program": "/usr/local/bin/halodb", **kwargs}
    with pytest.raises(UsageError, match=message):
        systemd_units(**args)


def test_default_names():
    assert schedule.default_unit_name("/srv/halo/5 min (prod)/appsettings.json") == "halodb-5-min-prod"
    assert schedule.default_task_name(WIN_CONFIG) == "halodb 5min"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("every", ["5m", "90m", "1d", "3d"])
def test_systemd_units_pass_systemd_analyze_verify(tmp_path, every):
    folder = tmp_path / "my halo"
    folder.mkdir()
    (folder / "appsettings.json").write_text("{}")
    service, timer = systemd_units(
        config_path=str(folder / "appsettings.json"),
        every=every,
        program=sys.executable,  # verify checks that the program exists and is executable
        name="halodb-test",
    )
    (tmp_path / "halodb-test.service").write_text(service)
    (tmp_path / "halodb-test.timer").write_text(timer)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "./halodb-test.service", "./halodb-test.timer"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "halodb-test" not in result.stderr, result.stderr
