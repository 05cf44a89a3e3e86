"""Options shared by several ``halodb`` commands."""

from __future__ import annotations

import click

from halodb.config import DEFAULT_CONFIG_NAME

#: ``--config``: the appsettings.json of this instance (every command that reads one).
config_option = click.option(
    "--config",
    "config_path",
    default=DEFAULT_CONFIG_NAME,
    show_default=True,
    type=click.Path(dir_okay=True),
    help="The appsettings.json of this instance (a folder means appsettings.json inside it).",
)
