"""``halodb AUTO``, ``halodb run``, ``halodb validate``, ``halodb integrations``."""

from __future__ import annotations

import datetime as dt
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from halodb import logs, runner
from halodb.cli import main
from halodb.cli.options import config_option
from halodb.cli.output import as_json, integrations_table, run_report, status_report, validation_report
from halodb.config import DEFAULT_CONFIG_NAME, load_settings
from halodb.database import engine_from_settings
from halodb.status import status
from halodb.sync.engine import utcnow
from halodb.validate import Validation, integration_rows, validate


@contextmanager
def _progress(enabled: bool):
    """A rich progress line per entity on a terminal; nothing at all otherwise."""
    if not enabled:
        yield None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.fields[counts]}"), transient=True) as bar:
        tasks: dict[str, int] = {}

        def update(report):
            if report.label not in tasks:
                tasks[report.label] = bar.add_task(report.label, counts="")
            bar.update(tasks[report.label], counts=f"{report.fetched} read, {report.created} created, {report.updated} updated")

        yield update


def _run(config_path: str, options: runner.RunOptions, as_json_output: bool, show_changes: int) -> None:
    settings = load_settings(config_path)
    log_file = logs.setup(settings, Path.cwd())
    with _progress(sys.stderr.isatty() and not as_json_output) as progress:
        report = runner.run(settings, options, progress=progress)
    if as_json_output:
        click.echo(as_json(report.to_dict()))
    else:
        click.echo(run_report(report, show_changes=show_changes))
        click.echo(f"log: {log_file}")
    sys.exit(report.exit_code)


wait_option = click.option(
    "--wait", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
    help="Wait this long for entities another instance is running (then exit 1); default: skip them.",
)  # fmt: skip


@main.command("AUTO")
@click.argument("config_path", default=DEFAULT_CONFIG_NAME, required=False, type=click.Path(dir_okay=True))
@wait_option
def auto(config_path: str, wait: float | None) -> None:
    """Run every integration due for this instance (for Task Scheduler, cron and systemd).

    CONFIG_PATH defaults to ./appsettings.json; logs go to logs/ under the working directory.
    """
    _run(config_path, runner.RunOptions(wait=wait), False, 0)


main.add_command(auto, "auto")


@main.command("run")
@config_option
@click.option("--integration", help="Only this integration (e.g. SqlImport).")
@click.option("--entity", help="Only this entity (e.g. Users).")
@click.option("--dry-run", is_flag=True, help="Compute and show every change, then roll it all back.")
@click.option("--confirm-deactivations", is_flag=True, help="Deactivate even beyond MaxDeactivations / MaxDeactivationPercent.")
@wait_option
@click.option("--json", "as_json_output", is_flag=True, help="Print the report as JSON.")
def run_command(config_path, integration, entity, dry_run, confirm_deactivations, wait, as_json_output) -> None:
    """Run integrations by hand and show what changed."""
    options = runner.RunOptions(
        integration=integration, entity=entity, dry_run=dry_run, confirm_deactivations=confirm_deactivations, wait=wait
    )
    _run(config_path, options, as_json_output, 50 if dry_run else 0)


@main.command("validate")
@config_option
@click.option("--json", "as_json_output", is_flag=True, help="Print the result as JSON.")
def validate_command(config_path, as_json_output) -> None:
    """Check the configuration, the connection, Halo's schema and the built-in API."""
    result = validate(load_settings(config_path))
    click.echo(as_json(result.to_dict()) if as_json_output else validation_report(result))
    sys.exit(result.exit_code)


@main.command("integrations")
@config_option
@click.option("--json", "as_json_output", is_flag=True, help="Print the table as JSON.")
def integrations_command(config_path, as_json_output) -> None:
    """Each integration: enabled in Halo, enabled here, Last Sync, Last Error."""
    settings = load_settings(config_path)
    engine = engine_from_settings(settings)
    try:
        # Read-only: only Halo's control row is read, so halodb's own tables are not migrated.
        runner.check_database(engine, runner.enabled_integrations(settings))
        result = Validation(integrations=integration_rows(engine, settings))
    finally:
        engine.dispose()
    click.echo(as_json(result.to_dict()["integrations"]) if as_json_output else integrations_table(result))


@main.command("status")
@config_option
@click.option("--stale-hours", type=click.FloatRange(min=0), default=24.0, show_default=True, help="Flag entities with no success for longer.")
@click.option("--json", "as_json_output", is_flag=True, help="Print the status as JSON.")
def status_command(config_path, stale_hours, as_json_output) -> None:
    """Instances, last runs, current lock holders, dead runs and stale entities."""
    settings = load_settings(config_path)
    engine = engine_from_settings(settings)
    try:
        runner.prepare_database(engine, runner.enabled_integrations(settings))
        result = status(engine, utcnow(), dt.timedelta(hours=stale_hours))
    finally:
        engine.dispose()
    click.echo(as_json(result.to_dict()) if as_json_output else status_report(result))
