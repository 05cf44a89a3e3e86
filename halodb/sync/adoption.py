"""Which existing Halo record an unlinked source record should take over (adoption).

Matching compares values trimmed and in any case, the way SQL Server's default collation does.
Asking the database per batch (``WHERE lower(ltrim(rtrim(col))) IN (...)``) cannot use an index,
so every batch of a first load scanned the whole Halo table once per match field: quadratic in
the size of the load. Instead the index below reads, once per entity run, the match values of
the Halo records that no source record of this scope is linked to yet, and then per batch only
the records added since (an id range, served by the primary key). Records halodb creates or
adopts in the run are linked as they are written, so they never enter the index: on a first
load into an empty Halo it stays empty, and in steady state it holds just the unlinked few.

Memory is one small tuple per unlinked Halo record and match field. A record changed or deleted
inside Halo while the run goes on can leave a stale entry: the engine re-reads every record it
adopts and checks that the values it matched on still match (``still_matches``), so a stale entry
costs an adoption (the record is created instead), never a wrong write.

Two known costs, accepted:
- The first refresh reads the match values of every Halo record, also for a short delta that
  brings one new record (about 0.3 s at 100,000 users). Asking per batch instead (``Repository.find``)
  would be cheaper there, but it must then exclude the records this scope links, by Halo id.
- Ids are taken as growing: a record Halo inserted with an id below the index's high-water mark
  that commits after a refresh is not seen in this run. Its source record is then created, not
  adopted, and Halo keeps both records (the old per-batch query had the same gap, one batch wide).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy.engine import Connection

from halodb.halo.repository import Repository, match_key
from halodb.state import links
from halodb.state.scope import Scope


def still_matches(fields: Sequence[str], wanted: dict, stored: dict) -> bool:
    """Whether the stored Halo record still has the values a record was adopted by."""
    if any(f not in stored for f in fields):
        return True  # not among the values the repository reads back: nothing to check against
    return match_key([stored[f] for f in fields]) == match_key([wanted.get(f) for f in fields])


class MatchIndex:
    """Unlinked Halo records of one repository, by normalised match values, for one entity run."""

    def __init__(self, repository: Repository, scope: Scope, match_fields: Sequence[tuple[str, ...]]):
        self.repository = repository
        self.scope = scope
        self.match_fields = [tuple(f) for f in match_fields]
        self._by_fields: dict[tuple[str, ...], dict[tuple, list[int]]] = {f: defaultdict(list) for f in self.match_fields}
        self._indexed_up_to: int | None = None  # every record with an id up to this one is indexed
        self._taken: set[int] = set()
        self._taken_in_batch: set[int] = set()
        self._written: set[int] = set()  # ids this run created above ``_indexed_up_to``
        self._written_in_batch: set[int] = set()

    def refresh(self, conn: Connection) -> None:
        """Index the Halo records added since the last refresh (all unlinked ones the first time)."""
        top = self.repository.top_id(conn)
        if top is None:
            # An empty table: nothing to index, and every record added later is new to the run,
            # so a first load into an empty Halo never reads the scope's links here.
            self._indexed_up_to = self._indexed_up_to or 0
            return
        if top == self._indexed_up_to:
            return
        fields = list(dict.fromkeys(f for names in self.match_fields for f in names))
        if self._indexed_up_to is None:
            # The first time: every record, minus those this scope links to. The linked ids come
            # as a set rather than a NOT EXISTS join, whose plan depends on fresh statistics
            # (right after a big load PostgreSQL picked a nested loop over the whole link table).
            skip = links.linked_halo_ids(conn, self.scope)
        else:
            # Later: only the id range added since. Nothing else links into this scope during
            # the run (the entity lock), so what is linked there now is what this run wrote.
            skip = self._written
            if sum(1 for i in skip if self._indexed_up_to < i <= top) == top - self._indexed_up_to:
                # Every id in the range is one this run created (ids come from one sequence, so
                # without other writers they are contiguous): nothing new to read.
                self._indexed_up_to, self._written = top, set()
                return
        position = {f: i for i, f in enumerate(fields, start=1)}
        for row in self.repository.match_rows(conn, fields, self._indexed_up_to, top):
            if row[0] in skip:
                continue
            for names in self.match_fields:
                key = match_key([row[position[f]] for f in names])
                if key is not None:
                    self._by_fields[names][key].append(row[0])
        self._indexed_up_to = top
        self._written = set()  # all at or below ``top`` now: never read again

    @property
    def empty(self) -> bool:
        """No unlinked Halo record is left to adopt (a first load into an empty Halo)."""
        return not any(self._by_fields.values())

    def candidates(self, fields: tuple[str, ...], values: Sequence) -> list[int]:
        """Ids of unlinked Halo records whose ``fields`` equal ``values`` (trimmed, any case)."""
        key = match_key(values)
        if key is None:
            return []
        return [i for i in self._by_fields[tuple(fields)].get(key, ()) if i not in self._taken]

    def created(self, halo_ids: Sequence[int]) -> None:
        """This run created ``halo_ids``; they are linked, so the next refresh must skip them."""
        self._written.update(halo_ids)
        self._written_in_batch.update(halo_ids)

    def take(self, halo_id: int) -> None:
        """``halo_id`` is being linked in this batch; no other source record may adopt it."""
        self._taken.add(halo_id)
        self._taken_in_batch.add(halo_id)

    def batch_committed(self) -> None:
        self._taken_in_batch = set()
        self._written_in_batch = set()

    def batch_rolled_back(self) -> None:
        """The batch's rows and links were rolled back: what it took is free again for the retry,
        and the ids it created are not its own any more (SQLite hands a rolled-back rowid out
        again, maybe to a record someone adds in Halo meanwhile)."""
        self._taken -= self._taken_in_batch
        self._written -= self._written_in_batch
        self._taken_in_batch = set()
        self._written_in_batch = set()
