"""The ``halodb`` command line: thin click commands over library functions.

Every command parses its arguments, calls one library function and prints what it returns.
Errors raised on purpose (``halodb.errors``) become one line on stderr and their exit code.
"""

from __future__ import annotations

import click

from halodb import __version__
from halodb.errors import HalodbError


class HalodbGroup(click.Group):
    """A click group that turns halodb's own errors into one line and an exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except HalodbError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(err.exit_code)


@click.group(cls=HalodbGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="halodb")
def main() -> None:
    """halodb - the Halo DB Integrator: scheduled integration syncs straight into the Halo database."""


def _register() -> None:
    # Each command module adds itself here; importing them at the bottom keeps `main` importable
    # by the modules that attach to it.
    from halodb.cli import commands  # noqa: F401


_register()
