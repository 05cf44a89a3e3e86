"""What an integration declares: its entities, how to read them, and how they match Halo.

Integrations declare; the engine (``halodb.sync.engine``) runs the loop. An integration never
writes SQL and never touches a Halo table directly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy.engine import Connection

from halodb.halo.repository import Repository
from halodb.state.scope import Scope


class SourceRecord(NamedTuple):
    """One record from a source: a stable key and its values under Halo API field names.

    A named tuple rather than a frozen dataclass: every record of every read makes one, and a
    frozen dataclass's ``__init__`` took almost twice as long (0.046 s against 0.025 s per
    100,000, with a run's collector threshold)."""

    key: str
    fields: dict[str, Any]
    #: Set by a source that knows the record is unusable (no key, unreadable row): quarantined.
    error: str | None = None


class ReadContext:
    """Handed to a source's ``read``: the stored position, and what the read reports back."""

    def __init__(
        self, cursor: str | None, heartbeat: Callable[[], None] = lambda: None, last_content: Callable[[str], bool] | None = None
    ):
        self.cursor = cursor
        self.new_cursor: str | None = None
        self.incomplete_reason: str | None = None
        self.removed: list[str] = []
        #: For a read that takes long before its first record (a spooled read): call it now and
        #: then so the run keeps its lease (``halodb.sync.spool``).
        self.heartbeat = heartbeat
        #: The fingerprint of everything this read returned (``set_content``), and whether the
        #: source found its content unchanged instead (``same_content``).
        self.content: str | None = None
        self.content_unchanged = False
        #: Whether the source called ``same_content`` (before its first record): its runs then
        #: count each batch they write against the stored fingerprint.
        self.content_checked = False
        # From the engine: whether a fingerprint is the one the last complete read stored, with
        # nothing since that makes a read necessary; None when there is no such fingerprint.
        self._last_content = last_content

    def same_content(self, fingerprint: str) -> bool:
        """For a source that can fingerprint everything it would return without reading it (a
        file's digest), called before it yields anything. True when the last complete read
        returned exactly that and left nothing for a later read to do: no run wrote to the scope
        since, no record is in quarantine or counting missed runs, and neither halodb's version,
        the Halo data and options that shape the rows, nor how records match, are created or are
        deactivated has changed. The read then returns nothing, as a full read would write and
        deactivate nothing. The fingerprint must cover the source's own settings that decide
        what it returns (a spreadsheet's matching field)."""
        self.content_checked = True
        self.content_unchanged = self._last_content is not None and self._last_content(fingerprint)
        return self.content_unchanged

    def set_content(self, fingerprint: str) -> None:
        """The fingerprint of everything this read returned, taken of what was actually read (the
        source may change meanwhile); stored with the read's last batch if the read completes."""
        self.content = fingerprint

    def mark_incomplete(self, reason: str) -> None:
        """This read did not see every record (a size limit, a partial delta): deactivate nothing."""
        self.incomplete_reason = reason

    def mark_removed(self, keys: list[str]) -> None:
        """Source keys the source itself reports gone (a delta's removals). The engine deactivates
        their Halo records at once, within the deactivation limits, instead of waiting for them to
        be missing from N complete reads."""
        self.removed.extend(keys)

    def set_cursor(self, position: str) -> None:
        """Where the next run should resume; stored in the transaction of the last batch."""
        self.new_cursor = position


#: Called with (connection, time of success or None, error or None) to record a connection's
#: own Last Sync / Last Error in Halo, for integrations that keep one per connection.
ResultRecorder = Callable[[Connection, "dt.datetime | None", "str | None"], None]


@dataclass
class Entity:
    """One stream of records into one Halo entity."""

    integration: str  # as in appsettings.json: "SqlImport"
    connection: str  # which configured connection: an id or a file name
    name: str  # as in appsettings.json: "Users"
    label: str  # how a person names it: "SQL import 'HR users'"
    repository: Repository
    read: Callable[[ReadContext], Iterable[SourceRecord]]
    #: Halo fields tried in order to adopt an existing Halo record instead of creating a duplicate.
    match_fields: Sequence[tuple[str, ...]] = ()
    create: bool = True  # False for update-only imports
    deactivate: bool = True  # False when the connection says never remove
    prepare_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"default_site": 12}
    #: Fields written when a record is created but never changed afterwards (e.g. "dontupdatesite").
    create_only: tuple[str, ...] = ()
    record_result: ResultRecorder | None = None

    @property
    def scope(self) -> Scope:
        return Scope(self.integration, self.connection, self.name)


@dataclass(frozen=True)
class Excluded:
    """An entity the integration has but Halo excludes from the integrator; never run."""

    integration: str
    name: str
    label: str
    reason: str
