"""Links: which Halo record each source record became, with its row hash and presence history.

A link is the memory that makes re-runs cheap (an unchanged hash means nothing to do) and
deactivation safe (a record is deactivated only after it was missing for N complete runs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.engine import Connection

from halodb import bulk
from halodb.halo.repository import among, chunks
from halodb.state import changes
from halodb.state.scope import Scope
from halodb.state.tables import link


class Link(NamedTuple):  # a tuple: one is built for every record of every batch
    id: int
    source_key: str
    halo_id: int
    row_hash: str
    missed_runs: int
    deactivated: bool
    last_seen_run: int  # the run that last wrote the link or saw its record after a miss


_COLUMNS = tuple(link.c[name] for name in Link._fields)  # a row of these makes a Link

# Positions in a link row: the one-pass read keeps the driver's rows (in ``Link``'s order)
# rather than building 100,000 ``Link``s that a re-sync with nothing changed never needs.
_ID, _KEY, _MISSED, _HASH, _DEACTIVATED = (Link._fields.index(f) for f in ("id", "source_key", "missed_runs", "row_hash", "deactivated"))


def lookup(conn: Connection, scope: Scope, keys: Iterable[str]) -> dict[str, Link]:
    """Links of ``keys`` in ``scope``, by source key."""
    out: dict[str, Link] = {}
    for part in chunks(sorted(set(keys))):
        rows = conn.execute(select(*_COLUMNS).where(scope.where(link), among(conn, link.c.source_key, part)))
        out.update((r.source_key, Link(*r)) for r in rows)
    return out


#: A scope with at most this many links is read in one pass by a run that reads a whole source
#: (about 30 MB of memory at the limit); a bigger one is looked up batch by batch. The same limit
#: caps how many keys such a run remembers one by one (``AskedFilter`` takes the rest).
PRELOAD_LIMIT = 200_000

#: In ``Lookup._known``: this key was asked for in this run, so its link is read from the database.
_ASKED = None


class AskedFilter:
    """Source keys asked for, remembered in a fixed 4 MiB of bits (three per key, a Bloom filter).

    ``may_hold`` never answers False for a key that was added, and rarely True for one that was
    not (about 1 in 1,600 keys after a million, 1 in 20 after five million); such a key is looked
    up in the database for nothing. It stands in for remembering each key once a run has asked
    for ``PRELOAD_LIMIT`` of them: a first load of a million records would otherwise look 800,000
    keys up, 6-7 µs each. Python's string hash is enough: the filter lives for one run, in one
    process."""

    BITS = 1 << 25
    _MASK = BITS - 1

    def __init__(self) -> None:
        self._bits = bytearray(self.BITS >> 3)

    def _positions(self, key: str) -> tuple[int, int, int]:
        h = hash(key)
        return h & self._MASK, (h >> 25) & self._MASK, (h >> 50 ^ h >> 13) & self._MASK

    def add(self, key: str) -> None:
        bits = self._bits
        for at in self._positions(key):
            bits[at >> 3] |= 1 << (at & 7)

    def may_hold(self, key: str) -> bool:
        bits = self._bits
        return all(bits[at >> 3] & (1 << (at & 7)) for at in self._positions(key))


class Found(NamedTuple):
    """A batch's links, sorted out by the row hashes of its records (``Lookup.sort_out``)."""

    #: Source key -> link id: active links that carry their record's hash. Nothing to prepare or
    #: write for these records; their links only need to be counted as seen.
    unchanged: dict[str, int]
    #: The ids among ``unchanged`` of links that earlier runs had missed (their count restarts).
    revived: list[int]
    #: Every other link found, by source key.
    links: dict[str, Link]


class Lookup:
    """The links of one scope for one run, looked up batch by batch or read in one pass.

    A re-sync of a whole source asks for every link of the scope, one batch at a time: 2,000 index
    probes per batch, most of a re-sync's cost once nothing has changed. So when the first lookup
    comes with a full batch (a full read, not a delta of a few changes) and the scope is small
    enough, all its links are read in one pass instead.

    After that pass the run knows every link of the scope, and nothing else writes the scope while
    the run holds its lock; links are only written for keys the run asked for. So each key asked
    for is remembered (its cached link dropped), and:

    - a key read in the pass and not yet asked for is answered from the pass;
    - a key asked for before is read from the database, never from a stale copy: the run may have
      written its link since (a duplicate key, or the retry of a rolled-back batch);
    - any other key has no link, with no query at all (every key of a first load).

    Once ``preload_limit`` keys are known (a first load of a million records), the keys asked for
    after them are remembered in an ``AskedFilter`` instead: memory stays bounded, and a key the
    filter may hold is read from the database.
    """

    def __init__(self, scope: Scope, full_batch: int, preload_limit: int | None = None):
        self.scope = scope
        self.full_batch = full_batch
        self.preload_limit = PRELOAD_LIMIT if preload_limit is None else preload_limit
        #: After the pass: source key -> its link row from the pass, or _ASKED once asked for.
        self._known: dict[str, Sequence | None] | None = None
        #: The keys asked for once ``_known`` held ``preload_limit`` of them.
        self._asked_later: AskedFilter | None = None
        self._decided = False

    @property
    def reads_database(self) -> bool:
        """Whether this run's lookups may still query the link table (whose statistics then matter)."""
        return self._known is None or self._asked_later is not None

    def __call__(self, conn: Connection, keys: Sequence[str]) -> dict[str, Link]:
        """The links of ``keys``, by source key."""
        return self.sort_out(conn, {}, keys).links

    def sort_out(self, conn: Connection, digests: Mapping[str, str], others: Sequence[str] = ()) -> Found:
        """The links of a batch: of the records ``digests`` maps to their row hashes, and of the
        keys in ``others`` (records in error or repeated in the batch). A key's link is in
        ``unchanged`` if ``digests`` gives it the link's hash, even when the key is among
        ``others`` too (a repeat of a record that is unchanged); else in ``links``."""
        keys = [*digests, *others]
        if not self._decided and len(keys) >= self.full_batch:
            self._preload(conn)
            self._decided = True  # only now: a pass that failed (and rolled back) is tried again
        known = self._known
        if known is None:
            rows: dict[str, Sequence] = lookup(conn, self.scope, keys)
        else:
            rows = {}
            from_db = []
            later = self._asked_later
            for key in keys:
                hit = known.get(key, False)
                if hit is False:  # not in the pass, not among the first keys asked for
                    if later is None:
                        known[key] = _ASKED
                    elif later.may_hold(key):
                        from_db.append(key)  # asked for before, or (rarely) a false alarm
                    else:
                        later.add(key)
                elif hit is _ASKED:
                    from_db.append(key)
                else:
                    rows[key] = hit
                    known[key] = _ASKED
            if from_db:
                rows.update(lookup(conn, self.scope, from_db))
            if later is None and len(known) >= self.preload_limit:
                self._asked_later = AskedFilter()  # memory stays bounded from here on
        found = Found({}, [], {})
        for key, row in rows.items():
            if digests.get(key) == row[_HASH] and not row[_DEACTIVATED]:  # row_hash is NOT NULL
                found.unchanged[key] = row[_ID]
                if row[_MISSED]:
                    found.revived.append(row[_ID])
            else:
                found.links[key] = row if type(row) is Link else Link._make(row)
        return found

    def unseen(self) -> list[Link] | None:
        """After a read, the active links read in one pass that no record asked for: exactly what
        :func:`missing` would find, without reading the scope again. None if there was no pass."""
        if self._known is None:
            return None
        rows = (row for row in self._known.values() if row is not _ASKED and not row[_DEACTIVATED])
        return sorted(map(Link._make, rows), key=lambda found: found.id)

    def _preload(self, conn: Connection) -> None:
        count = conn.execute(select(func.count()).select_from(link).where(self.scope.where(link))).scalar_one()
        if count > self.preload_limit:
            return
        rows = []
        if count:
            result = conn.execute(select(*_COLUMNS).where(self.scope.where(link)))
            # The driver's own rows, fetched at once: SQLAlchemy's row-by-row iteration took
            # twice as long for 100,000 links, half of a re-sync with nothing changed.
            rows = result.cursor.fetchall()
            result.close()
        # Set together and only after the read succeeded: a half-done pass would make unseen()
        # report no missing links, and nothing would be deactivated.
        self._known = {row[_KEY]: row for row in rows}


def linked_halo_ids(conn: Connection, scope: Scope) -> set[int]:
    """The Halo ids some source record of ``scope`` is linked to."""
    return set(conn.execute(select(link.c.halo_id).where(scope.where(link))).scalars())


def add(conn: Connection, scope: Scope, rows: Sequence[tuple[str, int, str]], run_id: int, *, created: bool = False) -> None:
    """New links from (source key, Halo id, row hash); ``created``: the run created their Halo
    records (rather than adopting them), which is how the change set knows of the creates."""
    if rows:
        fixed = {
            **scope.values(), "first_seen_run": run_id, "last_seen_run": run_id, "missed_runs": 0, "deactivated": False,
            "created_run": run_id if created else None,
        }  # fmt: skip
        head = tuple(fixed.values())
        bulk.insert_values(conn, link, [*fixed, "source_key", "halo_id", "row_hash"], [(*head, *row) for row in rows])


def refresh(conn: Connection, rows: Sequence[tuple[int, str]], run_id: int) -> None:
    """Seen in this run with a new row hash (and active again): (link id, row hash)."""
    if rows:
        stmt = (
            update(link)
            .where(link.c.id == bindparam("_id"))
            .values(row_hash=bindparam("_hash"), last_seen_run=run_id, missed_runs=0, deactivated=False)
        )
        conn.execute(stmt, [{"_id": i, "_hash": h} for i, h in rows])


class Seen:
    """Links a run saw unchanged, as a bitmap over link ids (one bit each: link ids are serial).

    Writing ``last_seen_run`` on every unchanged link cost a re-sync one row update per record
    (100,000 updates for 100,000 unchanged users). Instead the run remembers them here, and
    after a complete read :func:`missing` subtracts them from the links it did not write."""

    def __init__(self) -> None:
        self._bits = bytearray()

    def add(self, link_ids: Iterable[int]) -> None:
        bits = self._bits
        for i in link_ids:
            byte = i >> 3
            if byte >= len(bits):
                bits.extend(bytes(max(byte + 1 - len(bits), len(bits))))
            bits[byte] |= 1 << (i & 7)

    def __contains__(self, link_id: int) -> bool:
        byte = link_id >> 3
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << (link_id & 7)))


def touch(conn: Connection, link_ids: Sequence[int], run_id: int) -> None:
    """Seen in this run after having been missed: start counting missed runs from zero again."""
    for part in chunks(sorted(link_ids)):
        conn.execute(update(link).where(among(conn, link.c.id, part)).values(last_seen_run=run_id, missed_runs=0))


def missing(conn: Connection, scope: Scope, run_id: int, seen: Seen) -> list[Link]:
    """Active links of ``scope`` that this run's (complete) read neither wrote nor saw, by id."""
    stmt = select(*_COLUMNS).where(scope.where(link), link.c.deactivated == False, link.c.last_seen_run < run_id)  # noqa: E712
    return [Link(*r) for r in conn.execute(stmt.order_by(link.c.id)) if r[0] not in seen]


def any_missed(conn: Connection, scope: Scope) -> bool:
    """Whether an active link of ``scope`` is counting complete runs its record was missing from."""
    stmt = select(link.c.id).where(scope.where(link), link.c.deactivated == False, link.c.missed_runs > 0).limit(1)  # noqa: E712
    return conn.execute(stmt).first() is not None


def count_active(conn: Connection, scope: Scope) -> int:
    """Links of ``scope`` whose Halo record halodb has not deactivated."""
    stmt = select(func.count()).select_from(link).where(scope.where(link), link.c.deactivated == False)  # noqa: E712
    return conn.execute(stmt).scalar_one()


def bump_missed(conn: Connection, link_ids: Sequence[int]) -> None:
    """Count one more complete run in which each of these records was absent."""
    for part in chunks(sorted(link_ids)):
        conn.execute(update(link).where(among(conn, link.c.id, part)).values(missed_runs=link.c.missed_runs + 1))


def mark_deactivated(conn: Connection, link_ids: Sequence[int]) -> None:
    """Remember that halodb deactivated these records (so it may reactivate them)."""
    for part in chunks(sorted(link_ids)):
        conn.execute(update(link).where(link.c.id.in_(part)).values(deactivated=True))


def forget(conn: Connection, link_ids: Sequence[int]) -> None:
    """Drop links whose Halo record no longer exists (deleted outside halodb). A create a link
    records moves to the change rows of its run first, so that run's history keeps it."""
    for part in chunks(sorted(link_ids)):
        changes.keep_creates(conn, part)
        conn.execute(delete(link).where(link.c.id.in_(part)))


def analyze(conn: Connection) -> None:
    """Refresh PostgreSQL's statistics of the link table after a big load.

    Until autovacuum gets round to it, PostgreSQL plans the per-batch lookup on a table it has no
    statistics for: it takes the unique index with only the scope columns as the index condition
    and filters on the source key, a scan of the whole scope per lookup. Measured at 300,000 links:
    0.2 s a lookup, and 21 s once PostgreSQL cached that as a generic plan; 0.05 s after ANALYZE.
    SQL Server updates statistics itself before it compiles; SQLite needs none for a unique index.
    Migration 0005 keeps 10 buckets per column, which is all those plans need (a scope's size, a
    source key's uniqueness): 0.01 s for 100,000 links instead of 0.13 s at the default 100.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"ANALYZE {conn.dialect.identifier_preparer.format_table(link)}")

