"""Scheduler entries that run ``halodb AUTO <appsettings.json>`` on a timer.

Three targets, one meaning: every ``every`` run ``<program> AUTO <config>`` with the working
directory set to ``start_in`` (where halodb writes ``logs/``), never two runs of the same
schedule at once, and a hung run killed after a limit so the schedule does not stall for good.

* Windows Task Scheduler - :func:`windows_task_xml` (import with ``schtasks /Create /XML``).
  Overlap: ``MultipleInstancesPolicy=IgnoreNew``. Limit: ``ExecutionTimeLimit``.
* cron - :func:`cron_line`. Overlap: ``flock -n``. Limit: coreutils ``timeout``.
* systemd - :func:`systemd_units`. Overlap: a ``Type=oneshot`` service cannot be started again
  while it is still running. Limit: ``TimeoutStartSec=``.

Paths are handled as text in the flavour of the *target* machine (``PureWindowsPath`` for
Windows, ``PurePosixPath`` otherwise), so a Windows task can be generated on Linux and
``C:\\HaloIntegrator\\5min\\appsettings.json`` keeps its backslashes.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import PurePosixPath, PureWindowsPath

from halodb.errors import UsageError

__all__ = [
    "DAILY_AT",
    "TASK_NAMESPACE",
    "cron_line",
    "default_task_name",
    "default_unit_name",
    "execution_time_limit",
    "iso8601_duration",
    "parse_every",
    "schtasks_command",
    "systemd_timespan",
    "systemd_units",
    "windows_task_xml",
    "write_task_xml",
]

TASK_NAMESPACE = "http://schemas.microsoft.com/windows/2004/02/mit/task"

#: Time of day for daily schedules, the same on all three targets. 03:17 is deep in the night
#: for a helpdesk (no agents editing tickets while the sync writes), and deliberately not on
#: the hour, when backups, index maintenance and everyone else's nightly jobs start.
DAILY_AT = dt.time(3, 17)

MIN_EVERY = dt.timedelta(minutes=1)  # Task Scheduler's smallest repetition interval
_MAX_REPETITION = dt.timedelta(days=31)  # Task Scheduler's largest repetition interval
_MAX_DAYS_INTERVAL = 365  # ScheduleByDay/DaysInterval

_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}  # fmt: skip
_EVERY_RE = re.compile(r"^\s*(\d+)\s*([a-z]+)\s*$", re.IGNORECASE)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_UNIT_NAME_RE = re.compile(r"^[A-Za-z0-9:_.\\-]+$")
_WINDOWS_NAME_BAD = set('<>:"/|?*')


# --------------------------------------------------------------------------- intervals


def parse_every(text: str) -> dt.timedelta:
    """``"5m"``, ``"15min"``, ``"1h"``, ``"1d"`` (also ``"90s"``-style seconds) -> timedelta.

    The result is a whole number of minutes and at least one minute: Task Scheduler cannot
    repeat more often than every minute and cron counts in minutes.
    """
    if isinstance(text, dt.timedelta):
        return _check_every(text)
    match = _EVERY_RE.match(str(text))
    if not match:
        raise UsageError(
            f"cannot read interval {text!r}", hint="use a whole number and a unit: 5m, 15min, 1h, 1d"
        )
    number, unit = int(match.group(1)), match.group(2).lower()
    if unit not in _UNITS:
        raise UsageError(f"unknown unit {unit!r} in interval {text!r}", hint="use m/min, h or d")
    return _check_every(dt.timedelta(seconds=number * _UNITS[unit]), text)


def _check_every(every: dt.timedelta, text: object = None) -> dt.timedelta:
    shown = text if text is not None else every
    if every < MIN_EVERY:
        raise UsageError(
            f"interval {shown} is shorter than the 1 minute minimum",
            hint="Task Scheduler and cron cannot repeat more often than every minute",
        )
    if every.total_seconds() % 60:
        raise UsageError(f"interval {shown} is not a whole number of minutes")
    return every


def _every(every: str | dt.timedelta) -> dt.timedelta:
    return parse_every(every) if isinstance(every, str) else _check_every(every)


def iso8601_duration(every: dt.timedelta) -> str:
    """``PT5M``, ``PT1H30M``, ``P1D``, ``P1DT12H`` - the xs:duration form Task Scheduler uses."""
    minutes = int(every.total_seconds()) // 60
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    out = "P" + (f"{days}D" if days else "")
    if hours or mins:
        out += "T" + (f"{hours}H" if hours else "") + (f"{mins}M" if mins else "")
    return out if out != "P" else "PT0M"


def systemd_timespan(every: dt.timedelta) -> str:
    """``5min``, ``1h``, ``2d``, ``1h 30min`` - the time span syntax of systemd.time(7)."""
    minutes = int(every.total_seconds()) // 60
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{mins}min" if mins else ""]
    return " ".join(p for p in parts if p) or "0"


def _human(every: dt.timedelta) -> str:
    minutes = int(every.total_seconds()) // 60
    for size, word in ((1440, "day"), (60, "hour"), (1, "minute")):
        if minutes % size == 0:
            n = minutes // size
            return word if n == 1 else f"{n} {word}s"
    raise AssertionError("unreachable")  # pragma: no cover


def execution_time_limit(every: dt.timedelta) -> dt.timedelta:
    """How long one run may take before the scheduler kills it: 12 intervals, 2h to 72h.

    Every target refuses to start a run while the previous one is still going, so a run that
    hangs (a stuck connection, a lock wait) silently stops the whole schedule until it is
    killed. Windows' default limit, 72 hours, is right for a daily job but would leave a
    5-minute integration dead for three days. Twelve intervals gives a slow run plenty of room;
    the floor of 2 hours lets a first full sync of a large source finish even on a 5-minute
    schedule; the ceiling is Windows' own default. Rounded up to whole hours.
    """
    hours = math.ceil(12 * every.total_seconds() / 3600)
    return dt.timedelta(hours=min(max(hours, 2), 72))


# --------------------------------------------------------------------------- checks


def _text(label: str, value: str) -> str:
    value = str(value)
    if not value.strip():
        raise UsageError(f"{label} is empty")
    if _CONTROL_RE.search(value):
        raise UsageError(f"{label} contains a control character (newline or tab): {value!r}")
    return value


def _windows_path(label: str, value: str) -> PureWindowsPath:
    path = PureWindowsPath(_text(label, value))
    if not path.is_absolute():
        raise UsageError(
            f"{label} must be an absolute Windows path (C:\\... or \\\\server\\share\\...): {value}",
            hint="Task Scheduler does not know which folder a relative path starts from",
        )
    if '"' in value:
        raise UsageError(f"{label} contains a double quote, which Windows paths cannot: {value}")
    return path


def _posix_path(label: str, value: str) -> PurePosixPath:
    path = PurePosixPath(_text(label, value))
    if not path.is_absolute():
        raise UsageError(f"{label} must be an absolute path: {value}")
    return path


# --------------------------------------------------------------------------- Windows


def default_task_name(config_path: str) -> str:
    """``halodb 5min`` for ``C:\\HaloIntegrator\\5min\\appsettings.json``."""
    folder = PureWindowsPath(config_path).parent.name
    return f"halodb {folder}" if folder else "halodb"


def _today() -> dt.date:  # a function so tests can pin the date
    return dt.date.today()


def windows_task_xml(
    *,
    config_path: str,
    every: str | dt.timedelta,
    name: str | None = None,
    start_in: str | None = None,
    program: str = "halodb",
    description: str | None = None,
    start_date: dt.date | None = None,
    time_limit: dt.timedelta | None = None,
) -> str:
    """A Task Scheduler task definition (schema 1.2) that runs ``program AUTO "config_path"``.

    The text starts with ``<?xml version="1.0" encoding="UTF-16"?>`` like Windows' own exports;
    write it with :func:`write_task_xml` so the bytes match the declaration.

    Sub-day intervals use a TimeTrigger that starts at midnight of ``start_date`` (default:
    today) and repeats every ``every`` with no Duration, i.e. forever, so runs sit on the clock
    grid (:00, :05, ...). Whole days use a CalendarTrigger at :data:`DAILY_AT` every N days.
    The task runs whether or not the user is logged on (LogonType Password: ``schtasks /RU ..
    /RP`` supplies the account), without elevation, on battery too, catches up a start missed
    while the machine was off, and ignores a trigger while the previous run is still going.
    """
    every = _every(every)
    config = _windows_path("config path", config_path)
    folder = _windows_path("start-in folder", start_in) if start_in else config.parent
    program = _text("program", program)
    if '"' in program:
        raise UsageError(f"program contains a double quote: {program}")
    name = _task_name(name if name is not None else default_task_name(str(config)))
    start_date = start_date or _today()
    time_limit = time_limit or execution_time_limit(every)
    if description is None:
        description = f"halodb AUTO {config} every {_human(every)} (generated by halodb schedule windows)"
    description = _text("description", description)

    task = ET.Element("Task", {"version": "1.2", "xmlns": TASK_NAMESPACE})

    info = ET.SubElement(task, "RegistrationInfo")
    _sub(info, "Description", description)
    _sub(info, "URI", "\\" + name)

    triggers = ET.SubElement(task, "Triggers")
    days, remainder = divmod(int(every.total_seconds()), 86400)
    if days and not remainder:
        if days > _MAX_DAYS_INTERVAL:
            raise UsageError(f"interval of {days} days is longer than Task Scheduler's 365-day maximum")
        trigger = ET.SubElement(triggers, "CalendarTrigger")
        # triggerBaseType is an xs:sequence: Enabled, StartBoundary, EndBoundary, Repetition, ...
        _sub(trigger, "Enabled", "true")
        _sub(trigger, "StartBoundary", dt.datetime.combine(start_date, DAILY_AT).isoformat())
        by_day = ET.SubElement(trigger, "ScheduleByDay")
        _sub(by_day, "DaysInterval", str(days))
    else:
        if every > _MAX_REPETITION:
            raise UsageError(
                f"interval {_human(every)} is longer than Task Scheduler's 31-day repetition maximum",
                hint="use a whole number of days",
            )
        trigger = ET.SubElement(triggers, "TimeTrigger")
        _sub(trigger, "Enabled", "true")
        _sub(trigger, "StartBoundary", dt.datetime.combine(start_date, dt.time(0, 0)).isoformat())
        repetition = ET.SubElement(trigger, "Repetition")
        _sub(repetition, "Interval", iso8601_duration(every))  # no Duration: repeat indefinitely
        _sub(repetition, "StopAtDurationEnd", "false")

    principal = ET.SubElement(ET.SubElement(task, "Principals"), "Principal", {"id": "Author"})
    _sub(principal, "LogonType", "Password")
    _sub(principal, "RunLevel", "LeastPrivilege")

    settings = ET.SubElement(task, "Settings")
    _sub(settings, "MultipleInstancesPolicy", "IgnoreNew")
    _sub(settings, "DisallowStartIfOnBatteries", "false")
    _sub(settings, "StopIfGoingOnBatteries", "false")
    _sub(settings, "AllowHardTerminate", "true")
    _sub(settings, "StartWhenAvailable", "true")
    _sub(settings, "AllowStartOnDemand", "true")
    _sub(settings, "Enabled", "true")
    _sub(settings, "ExecutionTimeLimit", _iso_hours_or_minutes(time_limit))

    execute = ET.SubElement(ET.SubElement(task, "Actions", {"Context": "Author"}), "Exec")
    _sub(execute, "Command", program)
    _sub(execute, "Arguments", f'AUTO "{config}"')
    _sub(execute, "WorkingDirectory", str(folder))  # never quoted: Task Scheduler takes it as is

    ET.indent(task, space="  ")
    return '<?xml version="1.0" encoding="UTF-16"?>\n' + ET.tostring(task, encoding="unicode") + "\n"


def _iso_hours_or_minutes(limit: dt.timedelta) -> str:
    """``PT72H`` rather than ``P3D``: the form Task Scheduler itself writes for time limits."""
    minutes = int(limit.total_seconds()) // 60
    return f"PT{minutes // 60}H" if minutes % 60 == 0 else iso8601_duration(limit)


def _sub(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = text  # ElementTree escapes &, < and > on output
    return element


def _task_name(name: str) -> str:
    name = _text("task name", name).strip("\\")
    bad = sorted(_WINDOWS_NAME_BAD.intersection(name))
    if bad or not name:
        raise UsageError(f"task name {name!r} contains characters Task Scheduler refuses: {''.join(bad)}")
    return name


def write_task_xml(path, xml_text: str) -> None:
    """Write the task as Windows does: UTF-16 little-endian with a BOM and CRLF line ends."""
    data = "\ufeff" + xml_text.replace("\r\n", "\n").replace("\n", "\r\n")
    with open(path, "wb") as fh:
        fh.write(data.encode("utf-16-le"))


def schtasks_command(*, xml_file: str, name: str, user: str | None = None) -> str:
    """The command that imports the task; ``/RP`` without a value makes schtasks prompt."""
    account = user or "DOMAIN\\user"
    return f'schtasks /Create /XML "{xml_file}" /TN "{name}" /RU "{account}" /RP'


# --------------------------------------------------------------------------- cron


def _sh_quote(value: str) -> str:
    """Always single-quote (the generated line reads the same for every path)."""
    return "'" + value.replace("'", "'\"'\"'") + "'"


def cron_line(
    *,
    config_path: str,
    every: str | dt.timedelta,
    start_in: str | None = None,
    program: str = "halodb",
    lock: bool = True,
) -> str:
    """One crontab line, or :class:`UsageError` when cron cannot run at exactly that interval.

    cron has no interval, only clock fields, so ``*/7`` means "minutes 0, 7, ... 56" and then 0
    again four minutes later. Only minute steps that divide 60, hour steps that divide 24 and
    exactly one day are exact; anything else is refused with a pointer to systemd timers.
    Daily runs happen at :data:`DAILY_AT`.

    With ``lock`` (the default) the run goes through ``flock -n`` on ``.halodb.lock`` in the
    working folder, so a run still going when the next minute comes round makes cron skip that
    start instead of running two syncs at once, and through ``timeout`` so a hung run ends after
    :func:`execution_time_limit`. Both come with util-linux/coreutils; pass ``lock=False`` on
    systems without them. Output goes to /dev/null: halodb writes its own logs/ folder.
    ``%`` is escaped because cron turns a bare one into a newline.
    """
    every = _every(every)
    config = _posix_path("config path", config_path)
    folder = _posix_path("start-in folder", start_in) if start_in else config.parent
    program = _text("program", program)
    minutes = int(every.total_seconds()) // 60
    hint = "use systemd timers (halodb schedule systemd) for intervals cron cannot express"
    if minutes % 1440 == 0:
        if minutes != 1440:
            raise UsageError(
                f"cron cannot run every {_human(every)} exactly (day-of-month steps restart each month)",
                hint=hint,
            )
        spec = f"{DAILY_AT.minute} {DAILY_AT.hour} * * *"
    elif minutes % 60 == 0:
        hours = minutes // 60
        if 24 % hours:
            raise UsageError(
                f"cron cannot run every {_human(every)} exactly: {hours} does not divide 24", hint=hint
            )
        spec = "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    else:
        if 60 % minutes:
            raise UsageError(
                f"cron cannot run every {_human(every)} exactly: {minutes} does not divide 60", hint=hint
            )
        spec = "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"

    run = f"{shlex.quote(program)} AUTO {_sh_quote(str(config))}"
    if lock:
        limit = int(execution_time_limit(every).total_seconds()) // 3600
        run = f"flock -n .halodb.lock timeout {limit}h {run}"
    command = f"cd {_sh_quote(str(folder))} && {run} >/dev/null 2>&1"
    return f"{spec} {command.replace('%', chr(92) + '%')}"


# --------------------------------------------------------------------------- systemd


def default_unit_name(config_path: str) -> str:
    """``halodb-5min`` for ``/srv/halo/5min/appsettings.json`` (unit-name-safe characters)."""
    folder = re.sub(r"[^A-Za-z0-9:_.-]+", "-", PurePosixPath(config_path).parent.name).strip("-.")
    return f"halodb-{folder}" if folder else "halodb"


def _systemd_escape_specifiers(value: str) -> str:
    return value.replace("%", "%%")


def _systemd_arg(value: str) -> str:
    """One ExecStart= word: specifiers, $variables and C escapes neutralised, quoted if needed."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9/._:+,=@-]+", value):
        return escaped
    return f'"{escaped}"'


def systemd_units(
    *,
    config_path: str,
    every: str | dt.timedelta,
    start_in: str | None = None,
    program: str,
    name: str | None = None,
    user: str | None = None,
) -> tuple[str, str]:
    """``(service, timer)`` unit file texts for ``<name>.service`` and ``<name>.timer``.

    Sub-day and multi-day intervals use a monotonic timer: ``OnBootSec=`` (first run shortly
    after boot, or at once when the timer is started later) and ``OnUnitActiveSec=`` (every
    ``every`` after the last start). Exactly one day uses ``OnCalendar=`` at :data:`DAILY_AT`
    with ``Persistent=true``, which catches up a run missed while the machine was off
    (Persistent only means something for calendar timers).
    """
    every = _every(every)
    config = _posix_path("config path", config_path)
    folder = _posix_path("start-in folder", start_in) if start_in else config.parent
    program = _text("program", program)
    if not PurePosixPath(program).is_absolute():
        raise UsageError(f"systemd needs an absolute program path, got {program!r}", hint="pass --program /path/to/halodb")
    name = name if name is not None else default_unit_name(str(config))
    for suffix in (".service", ".timer"):
        name = name.removesuffix(suffix)
    if not _UNIT_NAME_RE.match(name) or len(name) > 240:
        raise UsageError(f"unit name {name!r} may only use letters, digits and : _ . - \\")
    if user is not None and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\$?", user):
        raise UsageError(f"user {user!r} is not a valid user name")
    limit = f"{int(execution_time_limit(every).total_seconds()) // 3600}h"

    service = [
        "# Generated by halodb schedule systemd.",
        "[Unit]",
        f"Description=halodb AUTO {_systemd_escape_specifiers(str(config))}",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "# oneshot: the unit stays 'activating' until halodb exits, and a timer cannot start a",
        "# unit that is still running, so two runs of this schedule never overlap; a run that",
        "# takes longer than the interval just delays the next one.",
        "Type=oneshot",
        *([f"User={user}"] if user else []),
        f"WorkingDirectory={_systemd_escape_specifiers(str(folder))}",
        f"ExecStart={_systemd_arg(program)} AUTO {_systemd_arg(str(config))}",
        "# oneshot has no start timeout by default; a hung run would stop the schedule for good.",
        f"TimeoutStartSec={limit}",
        "",
    ]
    timer = [
        "# Generated by halodb schedule systemd.",
        "[Unit]",
        f"Description=Run {name}.service every {_human(every)}",
        "",
        "[Timer]",
    ]
    if every == dt.timedelta(days=1):
        timer += [f"OnCalendar=*-*-* {DAILY_AT.strftime('%H:%M:%S')}", "Persistent=true"]
    else:
        timer += ["OnBootSec=1min", f"OnUnitActiveSec={systemd_timespan(every)}", "AccuracySec=1s"]
    timer += [f"Unit={name}.service", "", "[Install]", "WantedBy=timers.target", ""]
    return "\n".join(service), "\n".join(timer)
