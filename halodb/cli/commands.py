"""Where every command module is attached to the ``halodb`` group (one line each)."""

from halodb.cli import main
from halodb.cli.config_cmd import config_group; main.add_command(config_group, "config")
