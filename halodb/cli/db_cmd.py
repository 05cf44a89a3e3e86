"""``halodb db upgrade`` / ``halodb db current`` / ``halodb db sql``: halodb's own tables."""

from __future__ import annotations

import click

from halodb import migrate
from halodb.cli import main
from halodb.cli.options import config_option
from halodb.config import load_settings
from halodb.database import connect_check, engine_from_settings


@main.group("db")
def db_group() -> None:
    """halodb's own tables (halodb_*) in the Halo database; Halo's tables are never touched."""


@db_group.command("upgrade")
@config_option
def upgrade(config_path) -> None:
    """Apply pending halodb migrations (a scheduled run does this by itself)."""
    engine = engine_from_settings(load_settings(config_path))
    try:
        connect_check(engine)
        before, after = migrate.upgrade(engine)
    finally:
        engine.dispose()
    click.echo(f"halodb tables at {after}" + (" (already up to date)" if before == after else f" (was {before or 'nothing'})"))


@db_group.command("current")
@config_option
def current(config_path) -> None:
    """Show the revision of halodb's tables and the newest this version knows."""
    engine = engine_from_settings(load_settings(config_path))
    try:
        connect_check(engine)
        revision = migrate.current(engine)
    finally:
        engine.dispose()
    head = migrate.head()
    state = "up to date" if revision == head else f"{head} pending"
    click.echo(f"{revision or 'none'} ({state})")


@db_group.command("sql")
@click.option("--url", default="mssql+pyodbc://", show_default=True, help="A URL of the target dialect; nothing connects.")
def sql(url) -> None:
    """Print the DDL of every halodb migration for review by a DBA, without connecting."""
    click.echo(migrate.offline_sql(url), nl=False)
