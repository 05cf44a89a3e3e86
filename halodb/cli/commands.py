"""Where every command module is attached to the ``halodb`` group.

Modules that define their commands with ``@main.command`` attach themselves on import.
"""

from halodb.cli import main
from halodb.cli import db_cmd, demo_cmd, run_cmd  # noqa: F401  (attach on import)
from halodb.cli.config_cmd import config_group
from halodb.cli.schedule_cmd import schedule_group

main.add_command(config_group, "config")
main.add_command(schedule_group, "schedule")
