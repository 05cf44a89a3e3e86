"""One error hierarchy, split by what the caller should do about it.

* ``ConfigError`` / ``UsageError`` - fix the configuration or the command line (exit code 2).
* ``DatabaseUnreachable`` / ``SchemaMismatch`` - fix the database or the connection (exit code 3).
* ``TransientError`` - try again; the engine retries these itself with backoff.
* ``RecordError`` - one source record is bad; it goes to quarantine and the run goes on.
* ``IntegrationFailed`` - an integration could not finish (exit code 1).

Every message is one line that says what is wrong and, where we know it, what to do.
"""

from __future__ import annotations


class HalodbError(Exception):
    """Base of every error halodb raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(HalodbError):
    """The configuration file or an environment override is missing or invalid."""

    exit_code = 2


class UsageError(HalodbError):
    """The command line asks for something that does not exist."""

    exit_code = 2


class DatabaseUnreachable(HalodbError):
    """The database could not be reached or logged into."""

    exit_code = 3


class SchemaMismatch(HalodbError):
    """The live database lacks Halo tables or columns halodb needs."""

    exit_code = 3


class TransientError(HalodbError):
    """A failure that is expected to go away: deadlock, timeout, throttling, dropped link."""


class RecordError(HalodbError):
    """One source record cannot be mapped or written; it is quarantined, the run goes on."""


class IntegrationFailed(HalodbError):
    """An integration could not complete; its Last Error in Halo says why."""
