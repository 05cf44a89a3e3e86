"""``halodb schedule windows|cron|systemd``: print or write the entry that runs ``halodb AUTO``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PureWindowsPath

import click

from halodb import schedule
from halodb.errors import UsageError

_EVERY_HELP = "How often to run: 5m, 15min, 1h, 1d (at least 1 minute)."
_CONFIG_HELP = "The appsettings.json this schedule runs (absolute path on the target machine)."
_START_IN_HELP = "Working directory; halodb writes logs/ here. Default: the config file's folder."


def _posix_abs(path: str | None) -> str | None:
    return os.path.abspath(path) if path else path


@click.group("schedule")
def schedule_group() -> None:
    """Generate a Task Scheduler task, crontab line or systemd timer that runs halodb AUTO.

    Run one schedule per frequency folder (for example 5min\\ and daily\\), each with its own
    appsettings.json; every schedule skips a start while its previous run is still going.
    """


@schedule_group.command("windows")
@click.option("--every", required=True, help=_EVERY_HELP)
@click.option("--config", "config_path", required=True, help=_CONFIG_HELP)
@click.option("--name", default=None, help="Task name. Default: 'halodb <config folder name>'.")
@click.option("--start-in", default=None, help=_START_IN_HELP)
@click.option("--program", default="halodb", show_default=True, help="Command the task runs (best: the full path to halodb.exe).")
@click.option("--user", default=None, help="Account to show in the schtasks import command.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the task XML here as UTF-16 (what schtasks expects) instead of printing it.",
)
def windows_cmd(every, config_path, name, start_in, program, user, output) -> None:
    """Task Scheduler XML for `schtasks /Create /XML`."""
    if os.name == "nt" and not PureWindowsPath(config_path).is_absolute():
        config_path = os.path.abspath(config_path)
    name = name or schedule.default_task_name(config_path)
    xml_text = schedule.windows_task_xml(
        config_path=config_path, every=every, name=name, start_in=start_in, program=program
    )
    if output is None:
        click.echo(xml_text, nl=False)
        return
    try:
        schedule.write_task_xml(output, xml_text)
    except OSError as err:
        raise UsageError(f"cannot write {output}: {err.strerror or err}") from err
    click.echo(f"wrote {output}")
    click.echo("import it on the Windows server (schtasks asks for the account's password):")
    click.echo("  " + schedule.schtasks_command(xml_file=str(output), name=name.strip("\\"), user=user))


@schedule_group.command("cron")
@click.option("--every", required=True, help=_EVERY_HELP)
@click.option("--config", "config_path", required=True, help=_CONFIG_HELP)
@click.option("--start-in", default=None, help=_START_IN_HELP)
@click.option("--program", default=None, help="halodb executable. Default: halodb as found on PATH now (cron's PATH is short).")
@click.option("--no-lock", is_flag=True, help="Leave out flock/timeout (systems without util-linux).")
def cron_cmd(every, config_path, start_in, program, no_lock) -> None:
    """One crontab line (add it with `crontab -e`)."""
    program = program or shutil.which("halodb") or "halodb"
    click.echo(
        schedule.cron_line(
            config_path=_posix_abs(config_path),
            every=every,
            start_in=_posix_abs(start_in),
            program=program,
            lock=not no_lock,
        )
    )


@schedule_group.command("systemd")
@click.option("--every", required=True, help=_EVERY_HELP)
@click.option("--config", "config_path", required=True, help=_CONFIG_HELP)
@click.option("--name", default=None, help="Unit name without suffix. Default: 'halodb-<config folder name>'.")
@click.option("--start-in", default=None, help=_START_IN_HELP)
@click.option("--program", default=None, help="Absolute path of halodb. Default: halodb as found on PATH now.")
@click.option("--user", default=None, help="Run the service as this user (User=). Default: root.")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write <name>.service and <name>.timer here (e.g. /etc/systemd/system) instead of printing.",
)
def systemd_cmd(every, config_path, name, start_in, program, user, output_dir) -> None:
    """A oneshot service and its timer."""
    if program is None:
        program = shutil.which("halodb")
        if program is None:
            raise UsageError("halodb is not on PATH", hint="pass --program /absolute/path/to/halodb")
        program = os.path.abspath(program)
    config_path = _posix_abs(config_path)
    name = name or schedule.default_unit_name(config_path)
    name = name.removesuffix(".service").removesuffix(".timer")
    service, timer = schedule.systemd_units(
        config_path=config_path,
        every=every,
        start_in=_posix_abs(start_in),
        program=program,
        name=name,
        user=user,
    )
    if output_dir is None:
        click.echo(f"# {name}.service\n{service}\n# {name}.timer\n{timer}", nl=False)
        return
    written = []
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        for suffix, text in ((".service", service), (".timer", timer)):
            target = output_dir / f"{name}{suffix}"
            target.write_text(text, encoding="utf-8")
            written.append(target)
    except OSError as err:
        raise UsageError(f"cannot write to {output_dir}: {err.strerror or err}") from err
    for target in written:
        click.echo(f"wrote {target}")
    click.echo("enable it with:")
    click.echo(f"  sudo systemctl daemon-reload && sudo systemctl enable --now {name}.timer")
