"""``halodb config``: create, show and edit ``appsettings.json``.

Each command parses its arguments, calls one function of :mod:`halodb.config` and prints the
result. Errors are ``ConfigError`` and become ``error: ...`` with exit code 2 in ``halodb.cli``.
"""

from __future__ import annotations

import json

import click

from halodb import config
from halodb.cli.options import config_option


@click.group()
def config_group() -> None:
    """Create, show and edit appsettings.json."""


@config_group.command("init")
@config_option
@click.option("--halo-url", help="Halo web address, e.g. https://halo.example.com.")
@click.option("--server", help="SQL Server host (and instance), e.g. SQL01\\HALO.")
@click.option("--database", "name", help="Halo database name.")
@click.option("--username", help="SQL login.")
@click.option("--password", help="SQL password (prompted for, hidden, when not given).")
@click.option("--url", help="A SQLAlchemy URL instead of the five values (sqlite, postgresql).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init_cmd(config_path, halo_url, server, name, username, password, url, force) -> None:
    """Write a new appsettings.json, prompting for any required value not given."""
    # Fail before prompting: nobody wants to type a password only to be told the file exists.
    config.check_init_target(config_path, force=force)
    if url is None:
        halo_url = halo_url or click.prompt("Halo URL")
        server = server or click.prompt("Database server")
        name = name or click.prompt("Database name")
        username = username or click.prompt("Database username")
        password = password or click.prompt("Database password", hide_input=True)
    settings = config.init_settings(
        config_path,
        halo_url=halo_url,
        server=server,
        name=name,
        username=username,
        password=password,
        url=url,
        force=force,
    )
    click.echo(f"wrote {settings.source_path}")


@config_group.command("show")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of Key = value lines.")
def show_cmd(config_path, as_json) -> None:
    """Print the effective settings (file plus HALODB_* overrides), secrets masked."""
    settings = config.load_settings(config_path)
    if as_json:
        click.echo(json.dumps(config.masked_dict(settings), indent=2, ensure_ascii=False))
    else:
        for line in config.display_lines(settings):
            click.echo(line)


@config_group.command("set")
@config_option
@click.argument("key")
@click.argument("value")
def set_cmd(config_path, key, value) -> None:
    """Set one KEY (dotted, e.g. Sync.BatchSize) to VALUE and save."""
    settings = config.set_value(config_path, key, value)
    click.echo(config.display_value(settings, key))


def _switch(config_path: str, integration: str, entity: str, enabled: bool) -> None:
    config.set_entity(config_path, integration, entity, enabled)
    click.echo(f"{config.entity_key(integration, entity)} {'enabled' if enabled else 'disabled'}")


@config_group.command("enable")
@config_option
@click.argument("integration")
@click.argument("entity")
def enable_cmd(config_path, integration, entity) -> None:
    """Switch on ENTITY of INTEGRATION, e.g. 'enable AzureAD Users'."""
    _switch(config_path, integration, entity, True)


@config_group.command("disable")
@config_option
@click.argument("integration")
@click.argument("entity")
def disable_cmd(config_path, integration, entity) -> None:
    """Switch off ENTITY of INTEGRATION, e.g. 'disable AzureAD Users'."""
    _switch(config_path, integration, entity, False)
