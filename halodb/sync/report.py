"""The run report: what each entity run did, for the CLI to print and tests to assert on."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

from halodb.state.changes import Change

#: How many changes and quarantined records a report keeps in memory for display.
SHOWN = 200

COUNTERS = ("fetched", "created", "updated", "unchanged", "deactivated", "held_back", "quarantined", "locked", "skipped")


@dataclass
class EntityReport:
    integration: str
    connection: str
    entity: str
    label: str
    status: str = "ok"  # ok, failed, held-back, skipped
    fetched: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deactivated: int = 0
    held_back: int = 0
    quarantined: int = 0
    locked: int = 0  # left alone because Halo marks them locked
    skipped: int = 0  # new records an update-only import did not create
    complete: bool = False
    #: Why the run read less than its whole source, when that is not an error (``same_content``).
    note: str | None = None
    error: str | None = None
    seconds: float = 0.0
    run_id: int | None = None
    changes: list[Change] = field(default_factory=list)
    changes_total: int = 0
    quarantine: list[tuple[str, str]] = field(default_factory=list)

    def add_changes(self, changes: list[Change], total: int | None = None) -> None:
        """Count ``total`` changes (``len(changes)`` unless given), keeping the first few to show."""
        room = SHOWN - len(self.changes)
        if room > 0:
            self.changes.extend(changes[:room])
        self.changes_total += len(changes) if total is None else total

    def add_quarantine(self, items: list[tuple[str, str]]) -> None:
        room = SHOWN - len(self.quarantine)
        if room > 0:
            self.quarantine.extend(items[:room])
        self.quarantined += len(items)

    def checkpoint(self) -> tuple:
        """What a batch may change, so a rolled-back batch can be taken out again (``restore``)."""
        return self.counters(), len(self.changes), self.changes_total, len(self.quarantine)

    def restore(self, checkpoint: tuple) -> None:
        counters, shown_changes, changes_total, shown_quarantine = checkpoint
        for name, value in counters.items():
            setattr(self, name, value)
        del self.changes[shown_changes:]
        del self.quarantine[shown_quarantine:]
        self.changes_total = changes_total

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "held-back")

    def counters(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in COUNTERS}


@dataclass
class RunReport:
    instance: str
    started: dt.datetime
    dry_run: bool = False
    finished: dt.datetime | None = None
    entities: list[EntityReport] = field(default_factory=list)
    #: Integrations or entities not run, with the reason (disabled in Halo, excluded, locked...).
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: Entities still locked by another instance when ``--wait`` ran out.
    lock_timeouts: int = 0

    @property
    def exit_code(self) -> int:
        """0 when everything ran, 1 when an integration failed, held deactivations back, or
        ``--wait`` ran out on a lock."""
        return 1 if self.lock_timeouts or any(e.failed for e in self.entities) else 0

    def total(self, counter: str) -> int:
        return sum(getattr(e, counter) for e in self.entities)

    def to_dict(self) -> dict:
        """A JSON-ready form (``--json``)."""
        out = asdict(self)
        out["exit_code"] = self.exit_code
        for e in out["entities"]:
            e["changes"] = [asdict(c) if not isinstance(c, dict) else c for c in e["changes"]]
        return out
