"""``halodb demo [DIR]``: build the embedded demo and run the scheduled job on it."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from halodb import demo, logs, runner
from halodb.cli import main
from halodb.cli.output import run_report
from halodb.config import load_settings


@main.command("demo")
@click.argument("folder", default="demo", required=False, type=click.Path(file_okay=False))
@click.option("--database-url", help="Put the demo Halo database here instead of DIR/halo.db (any SQLAlchemy URL).")
def demo_command(folder: str, database_url: str | None) -> None:
    """Create a demo Halo (SQLite), a spreadsheet and an HR database in FOLDER, then sync them."""
    config_path = demo.create(Path(folder), database_url)
    click.echo(f"created a demo Halo in {Path(folder).resolve()} and {config_path}")
    settings = load_settings(config_path)
    log_file = logs.setup(settings, Path.cwd())
    report = runner.run(settings)
    click.echo(run_report(report))
    click.echo(f"log: {log_file}")
    shown = Path(folder).as_posix()
    click.echo(
        "\nnext:\n"
        f"  halodb AUTO {shown}/appsettings.json                 # again: 0 created, 0 updated\n"
        f"  halodb validate --config {shown}/appsettings.json\n"
        f"  halodb integrations --config {shown}/appsettings.json\n"
        f"  halodb run --config {shown}/appsettings.json --dry-run"
    )
    sys.exit(report.exit_code)
