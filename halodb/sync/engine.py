"""The sync engine: source records in, Halo records out, set-based and safe.

For each entity: read the source → in batches: hash each source record, look up its link (a
matching hash settles it: nothing to prepare or write), prepare the rest (resolve and check),
adopt existing Halo records by match keys, insert new, update changed, write links / audit /
change rows, commit. After a read the source confirmed complete, records missing from it are
deactivated - but only after N consecutive complete runs, and never more than the configured
limits allow.

Never a row at a time: every statement works on a whole batch (COPY, executemany, IN lists).
What a run carries between batches (adoption index, links seen, quarantined keys, counters) is
in ``RunState`` and is undone together with a batch that rolls back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from halodb import __version__, bulk
from halodb.errors import HalodbError, RecordError, TransientError
from halodb.halo.repository import FieldChange, WriteContext
from halodb.state import changes as change_log
from halodb.state import cursors, links, quarantine, runs
from halodb.state.changes import Change, summary
from halodb.state.tables import quarantine as quarantine_table
from halodb.sync import collector
from halodb.sync.adoption import MatchIndex, still_matches
from halodb.sync.entity import Entity, ReadContext, SourceRecord
from halodb.sync.prefetch import Prefetch, ReadInGaps
from halodb.sync.report import SHOWN, EntityReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """The engine's knobs, from appsettings.json ``Sync``."""

    batch_size: int = 2000
    max_deactivations: int = 500
    max_deactivation_percent: float = 10.0
    deactivate_after_missed_runs: int = 2
    batch_attempts: int = 4  # a batch hit by a transient database error is retried this often


def utcnow() -> dt.datetime:
    # Halo stores UTC without a zone; so do we.
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)


def row_hash(fields: dict, salt: bytes = b"") -> str:
    """A stable fingerprint of a source record: equal hashes mean nothing to write.

    ``salt`` stands for everything else that shapes the Halo row (see ``run_salt``), so when any
    of it changes every record looks changed once, and is prepared and compared again."""
    try:
        text = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS, default=str)
    except TypeError:  # what orjson refuses (an int beyond 64 bits, a non-string key)
        text = json.dumps(fields, sort_keys=True, default=str, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha1(salt + text).hexdigest()


def content_mark(fingerprint: str, salt: bytes, entity: Entity) -> str:
    """What a scope's cursor row keeps of a source's content fingerprint. It is taken with the
    run's salt and with how the entity matches, creates and deactivates records, so that a change
    to anything else that decides what a read would write makes the next read a whole one."""
    # halodb's version too: an upgrade may read the same source differently.
    options = json.dumps([__version__, entity.match_fields, entity.create, entity.deactivate]).encode()
    return hashlib.sha1(salt + options + fingerprint.encode()).hexdigest()


Progress = Callable[[EntityReport], None]

#: A run refreshes the link table's statistics once it created or updated this many records (each
#: writes its link), and again each time the number doubles (``links.analyze``).
ANALYZE_AFTER = 1000


#: Part of every record's hash: raise it when a change to preparation or mapping code must reach
#: records whose source did not change.
HASH_VERSION = 1


def run_salt(conn: Connection, entity: Entity) -> bytes:
    """What shapes a Halo row besides the source record: the entity's options and the Halo data
    its preparation resolves against (sites, clients, asset types), read once per run."""
    parts = {
        "version": HASH_VERSION,
        "repository": type(entity.repository).__name__,
        "prepare": entity.prepare_options,
        "create_only": sorted(entity.create_only),
        "references": entity.repository.reference_fingerprint(conn),
    }
    # As bytes, encoded once per run rather than once per record hash.
    return json.dumps(parts, sort_keys=True, default=str).encode()


class RunState:
    """What one entity run carries from batch to batch, undone with a batch that rolls back."""

    def __init__(self, entity: Entity, report: EntityReport, waiting: set[str], full_batch: int, salt: bytes):
        self.report = report
        self.salt = salt  # part of every record hash (run_salt)
        self.index = MatchIndex(entity.repository, entity.scope, entity.match_fields)
        self.waiting = waiting  # source keys sitting in quarantine
        self.seen = links.Seen()  # links seen unchanged (their rows are not written)
        self.lookup = links.Lookup(entity.scope, full_batch)
        # What prepare looked up in Halo so far (sites, clients): reads only, so kept when a batch
        # rolls back. And whether the last batch mostly needed preparing: the next one is then
        # prepared ahead, in the COPY gaps; in a re-sync, most of that work would be thrown away.
        self.known = entity.repository.new_known()
        self.preparing = True
        self.seen_in_batch: list[int] = []
        # Keys in quarantine when the run started, and those of them the source still has.
        self.quarantined_at_start = frozenset(waiting)
        self.still_there: set[str] = set()
        # Batches this run wrote to a scope whose source fingerprints its content (cursors.note_write).
        self.content_writes = 0
        self.noted_write = False
        # Whether a key came again in a later batch with other content (_batch).
        self.repeated = False
        # Keys this run put in quarantine: a later copy in this run does not release them, or a
        # key's quarantine would depend on which of its copies the source returns last.
        self.put_now: set[str] = set()
        self._checkpoint: tuple = ()

    def batch_started(self) -> None:
        self._checkpoint = (self.report.checkpoint(), set(self.waiting), set(self.put_now))
        self.seen_in_batch = []
        self.noted_write = False

    def batch_committed(self) -> None:
        self.index.batch_committed()
        self.seen.add(self.seen_in_batch)
        self.content_writes += self.noted_write

    def batch_rolled_back(self) -> None:
        report_checkpoint, waiting, put_now = self._checkpoint
        self.report.restore(report_checkpoint)
        self.index.batch_rolled_back()
        self.waiting.clear()
        self.waiting.update(waiting)
        self.put_now = put_now


class SyncEngine:
    """Runs entities into one Halo database."""

    def __init__(
        self,
        engine: Engine,
        *,
        instance: str,
        agent_id: int | None,
        limits: Limits = Limits(),
        dry_run: bool = False,
        confirm_deactivations: bool = False,
        progress: Progress | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        is_transient: Callable[[BaseException], bool] = lambda exc: False,
    ):
        self.engine = engine
        self.instance = instance
        self.agent_id = agent_id
        self.limits = limits
        self.dry_run = dry_run
        self.confirm_deactivations = confirm_deactivations
        self.progress = progress or (lambda report: None)
        self.clock = clock
        self.is_transient = is_transient

    # -- one entity ----------------------------------------------------------------------------

    def run(self, entity: Entity, heartbeat: Callable[[], None] | None = None) -> EntityReport:
        """Sync one entity; never raises for a failure of the entity itself (see the report).

        ``heartbeat`` is called after every committed batch (the runner renews its lease there)."""
        report = EntityReport(entity.integration, entity.connection, entity.name, entity.label)
        started = time.monotonic()
        # The run row commits on its own, so `halodb status` sees a run while it is going.
        with self.engine.begin() as conn:
            report.run_id = runs.start(conn, self.instance, entity.scope, self.clock(), dry_run=self.dry_run, halo_table=entity.repository.audit_name)
        try:
            with collector.fewer_collections(), self.engine.connect() as conn:
                try:
                    self._sync(conn, entity, report, heartbeat or (lambda: None))
                finally:
                    if self.dry_run:
                        conn.rollback()
        except (HalodbError, DBAPIError, OSError, ValueError) as err:
            report.status = "failed"
            report.error = one_line(err)
            log.error("%s failed: %s", entity.label, report.error)
        report.seconds = round(time.monotonic() - started, 3)
        with self.engine.begin() as conn:
            runs.finish(conn, report.run_id, self.clock(), report.status, report.counters(), report.error)
        return report

    def _sync(self, conn: Connection, entity: Entity, report: EntityReport, heartbeat: Callable[[], None]) -> None:
        scope = entity.scope
        # A dry run's open write transaction would block the lease renewal on SQLite.
        beat = heartbeat if not self.dry_run else (lambda: None)
        waiting = set(conn.execute(select(quarantine_table.c.source_key).where(scope.where(quarantine_table))).scalars())
        state = RunState(entity, report, waiting, self.limits.batch_size, run_salt(conn, entity))
        stored = cursors.read(conn, scope)
        # A scope whose runs counted writes against a fingerprint (every stored one came after
        # such a count): this run counts its own even if its read cannot take a fingerprint.
        counted = stored.writes > 0
        ctx = ReadContext(stored.position, beat, self._last_content(conn, entity, state, stored.content))
        analyzed = 0  # links written when the link table's statistics were last refreshed

        def hashes(batch: list[SourceRecord]) -> list[str | None]:
            return [None if r.error else row_hash(r.fields, state.salt) for r in batch]

        def prepare_ahead(part: list[SourceRecord]) -> list[dict | RecordError | None] | None:
            # From the references earlier batches looked up; None (also from a repository that
            # cannot prepare without the database) sends the part to _batch.
            if not state.preparing:
                return None
            usable = [r for r in part if not r.error]
            rows = entity.repository.prepare_known([r.fields for r in usable], state.known, **entity.prepare_options)
            if rows is None:
                return None
            prepared = iter(rows)
            return [None if r.error else next(prepared) for r in part]

        # The source is read and hashed ahead while the database works on the last batch: on
        # PostgreSQL in this thread, while the server stores each COPY (and once the next batch
        # is read, its records are prepared there too); elsewhere in a thread.
        if conn.dialect.name == "postgresql":
            reader = ReadInGaps(entity.read(ctx), self.limits.batch_size, hashes, prepare_ahead)
        else:
            reader = Prefetch(entity.read(ctx), self.limits.batch_size, hashes)
        with reader as source, bulk.meanwhile(source.read_ahead):
            for batch, digests in source:
                ready = source.ready

                def write_batch() -> None:
                    wrote = self._batch(conn, entity, state, batch, digests, ready)
                    # The stored fingerprint no longer describes the scope, also when this read
                    # could not take one (a source's fingerprint query that failed), and a run
                    # that is reading meanwhile must not store one that hides this write.
                    if wrote and (ctx.content_checked or counted):
                        cursors.note_write(conn, scope, self.clock())
                        state.noted_write = True

                self._with_retry(conn, write_batch, state)
                collector.batch_done()
                written = report.created + report.updated
                if written - analyzed >= max(ANALYZE_AFTER, analyzed) and not self.dry_run and state.lookup.reads_database:
                    # Each time the links written double: a handful of ANALYZEs per load, and the
                    # lookups of a long first load never plan against a table believed empty.
                    # (While the run's lookups are answered from memory, only the last one matters.)
                    links.analyze(conn)
                    self._commit(conn)
                    analyzed = written
                beat()
                self.progress(report)
        if report.created + report.updated - analyzed >= ANALYZE_AFTER and not self.dry_run:
            links.analyze(conn)  # for the next run's lookups
        # A source that found its content unchanged returns nothing: a read with nothing missing.
        unchanged = ctx.content_unchanged and report.fetched == 0
        report.complete = ctx.incomplete_reason is None and not unchanged
        if report.complete and entity.deactivate:
            self._deactivate(conn, entity, report, state)
        elif unchanged:
            report.note = "source unchanged since its last complete read: nothing to read"
            log.info("%s: %s", entity.label, report.note)
        elif not report.complete:
            log.info("%s: read incomplete (%s); nothing missing is deactivated", entity.label, ctx.incomplete_reason)
        held = ctx.removed and entity.deactivate and not self._deactivate_removed(conn, entity, report, ctx.removed)
        if report.complete and report.status == "ok" and state.quarantined_at_start:
            # Quarantined keys a complete read no longer found (a row fixed under another key, or
            # gone): no run will hand them over again, and they would keep later runs reading.
            # Not after a read whose removals were held back: the source may be wrong.
            gone = state.quarantined_at_start - state.still_there
            quarantine.release(conn, scope, gone)
            state.waiting.difference_update(gone)
        if ctx.new_cursor is not None and not held:
            # Held-back removals keep the old position: the same delta brings them again next run.
            cursors.put(conn, scope, ctx.new_cursor, self.clock())
        if (ctx.content_checked or counted) and not unchanged:
            # This transaction may write too (deactivations, missed runs, quarantine released):
            # it counts itself, and the stored fingerprint no longer stands for the scope.
            cursors.note_write(conn, scope, self.clock())
            if ctx.content_checked:
                self._store_content(conn, entity, report, state, ctx.content, stored.writes)
        self._commit(conn)

    def _store_content(
        self, conn: Connection, entity: Entity, report: EntityReport, state: RunState, content: str | None, writes_before: int
    ) -> None:
        """In a run's last transaction (which counted itself), for a source that fingerprints its
        content and was read: store the fingerprint of what was read if the read was complete,
        left nothing for the next read, and no other run wrote to the scope meanwhile."""
        writes = writes_before + state.content_writes + 1
        # A fingerprint stands for "a read of this content has nothing left to do". Not so after
        # a run that left work for the next full read: a record locked in Halo, one an update-only
        # import could not find, deactivations held back, a failure.
        # Nor after one in which a key came twice with different content: the copy read last
        # won, and in another order (the same content) the other copy would win.
        pending = report.status != "ok" or report.locked or report.skipped or report.held_back or state.repeated
        if content is None or not report.complete or pending:
            return
        if not cursors.put_content(conn, entity.scope, content_mark(content, state.salt, entity), writes, self.clock()):
            log.warning("%s: another run wrote meanwhile; the next run reads the source in full", entity.label)

    def _last_content(self, conn: Connection, entity: Entity, state: RunState, stored: str | None) -> Callable[[str], bool] | None:
        """For ``ReadContext.same_content``: whether a fingerprint matches ``stored``, the one the
        scope's last complete read left (every batch written since forgot it), or None when no read
        may be skipped."""
        if stored is None:
            return None
        # A quarantined record is retried by every run, and a missing one counts complete runs:
        # both need the source read again.
        if state.waiting or (entity.deactivate and links.any_missed(conn, entity.scope)):
            return None
        return lambda fingerprint: content_mark(fingerprint, state.salt, entity) == stored

    def _commit(self, conn: Connection) -> None:
        if not self.dry_run:
            conn.commit()

    def _with_retry(self, conn: Connection, work: Callable[[], None], state: RunState) -> None:
        """Run one batch; on a transient database error roll it back and run it again.

        What the batch did to the run's state (report, adoption index, quarantined keys, links
        seen) is undone with the rollback, so a retried batch counts once and finds what it
        found before."""
        for attempt in range(1, self.limits.batch_attempts + 1):
            state.batch_started()
            try:
                work()
                self._commit(conn)
                state.batch_committed()
                return
            except DBAPIError as err:
                conn.rollback()
                state.batch_rolled_back()
                transient = self.is_transient(err)
                if self.dry_run or not transient or attempt == self.limits.batch_attempts:
                    if transient:
                        raise TransientError(f"database kept failing after {attempt} attempts: {one_line(err)}") from err
                    raise
                delay = min(30.0, 0.5 * 2**attempt) * (0.5 + random.random())
                log.warning("transient database error (attempt %d), retrying in %.1fs: %s", attempt, delay, one_line(err))
                time.sleep(delay)

    # -- one batch -----------------------------------------------------------------------------

    def _batch(
        self, conn: Connection, entity: Entity, state: RunState, batch: list[SourceRecord], hashes: list[str | None], ready: list | None = None
    ) -> bool:
        """Write one batch; ``hashes`` holds each record's ``row_hash`` (None for a record in
        error), ``ready`` what ``prepare_known`` already made of some records (or None). True if
        it wrote anything (a batch of unchanged records only reads)."""
        repo, scope, report, index, waiting = entity.repository, entity.scope, state.report, state.index, state.waiting
        wctx = WriteContext(self.agent_id, self.clock())
        bad: list[tuple[SourceRecord, str]] = []
        unique: dict[str, SourceRecord] = {}
        # The hash is taken of the source record, so a record whose link carries the same hash
        # is settled before it is even prepared: a re-sync with nothing changed costs a read,
        # a hash and one link lookup per record. (While most records of a batch need preparing,
        # the next batch is prepared ahead, in the COPY gaps: ``ready``, ``RunState.preparing``.)
        digests: dict[str, str] = {}
        prepared_ahead: dict[str, dict | RecordError] = {}
        for i, (record, digest) in enumerate(zip(batch, hashes)):
            if record.error:
                bad.append((record, record.error))
            elif record.key in unique:
                bad.append((record, f"duplicate source key {record.key!r} in the same batch"))
            else:
                unique[record.key] = record
                digests[record.key] = digest
                if ready is not None and ready[i] is not None:
                    prepared_ahead[record.key] = ready[i]
        records = list(unique.values())
        found = state.lookup.sort_out(conn, digests, [r.key for r, _ in bad])
        known, unchanged = found.links, found.unchanged  # known: every link found but the unchanged ones
        if not state.repeated:
            # A key an earlier batch of this run wrote or saw, now with other content: the later
            # copy wins, so what a read leaves in Halo depends on the source's order, which a
            # fingerprint of its content does not cover (_store_content).
            state.repeated = any(link.last_seen_run == report.run_id or link.id in state.seen for key, link in known.items() if key in unique)
        touched: list[links.Link] = []
        settled: list[SourceRecord] = []
        to_prepare: list[SourceRecord] = []
        for record in records:
            (settled if record.key in unchanged else to_prepare).append(record)
        report.unchanged += len(settled)
        state.preparing = 2 * len(to_prepare) >= len(records)

        unprepared = [r for r in to_prepare if r.key not in prepared_ahead]
        fresh = iter(repo.prepare(conn, [r.fields for r in unprepared], known=state.known, **entity.prepare_options) if unprepared else ())
        prepared = [prepared_ahead[r.key] if r.key in prepared_ahead else next(fresh) for r in to_prepare]
        good: list[tuple[SourceRecord, dict, str]] = []
        for record, row in zip(to_prepare, prepared):
            if isinstance(row, RecordError):
                bad.append((record, str(row)))
            else:
                good.append((record, row, digests[record.key]))

        adopted, ambiguous = self._adopt(conn, index, [g for g in good if g[0].key not in known])
        bad.extend(ambiguous)
        ambiguous_keys = {r.key for r, _ in ambiguous}

        check: list[tuple[SourceRecord, dict, str, links.Link | None, int]] = []
        new: list[tuple[SourceRecord, dict, str]] = []
        for record, row, digest in good:
            link = known.get(record.key)
            if link is not None:
                check.append((record, row, digest, link, link.halo_id))
            elif record.key in adopted:
                check.append((record, row, digest, None, adopted[record.key][0]))
            elif record.key not in ambiguous_keys:
                new.append((record, row, digest))

        stored = repo.current(conn, [c[4] for c in check])
        updates: list[tuple[int, list[FieldChange]]] = []
        new_links: list[tuple[str, int, str]] = []
        refreshed: list[tuple[int, str]] = []
        forgotten: list[int] = []
        log_rows: list[Change] = []
        table = repo.audit_name
        for record, row, digest, link, halo_id in check:
            current = stored.get(halo_id)
            if link is None and (current is None or not still_matches(adopted[record.key][1], row, current)):
                # Adopted from the run's index, but deleted or changed in Halo since: create it.
                log.info("%s: %s would have taken over Halo record %s, changed or deleted in Halo since; creating it", entity.label, record.key, halo_id)
                new.append((record, row, digest))
                continue
            if current is None:  # the Halo record was deleted outside halodb: create it again
                forgotten.append(link.id)
                new.append((record, row, digest))
                continue
            if repo.is_locked(current):
                report.locked += 1
                if link is not None:
                    touched.append(link)  # seen, but keep the old hash so it is tried again
                else:
                    new_links.append((record.key, halo_id, ""))
                continue
            desired = {k: v for k, v in row.items() if k not in entity.create_only}
            diff = repo.diff(current, desired)
            if diff:
                updates.append((halo_id, diff))
                report.updated += 1
                action = "reactivate" if link is not None and link.deactivated else "update"
                log_rows.extend(Change(action, table, halo_id, record.key, c.field, c.old, c.new) for c in diff)
            else:
                report.unchanged += 1
            if link is None:
                new_links.append((record.key, halo_id, digest))
                log_rows.append(Change("adopt", table, halo_id, record.key))
            else:
                refreshed.append((link.id, digest))

        if forgotten:
            links.forget(conn, forgotten)
        created: list[tuple[tuple[SourceRecord, dict, str], int]] = []  # (new record, its Halo id)
        if new and entity.create:
            ids = repo.insert(conn, [row for _, row, _ in new], wctx)
            index.created(ids)
            # A create is recorded on its link (created_run), not in a change row that repeats
            # the new Halo row (migration 0004); the report keeps the first few to show.
            links.add(conn, scope, [(record.key, halo_id, digest) for (record, _, digest), halo_id in zip(new, ids)], report.run_id, created=True)
            created = list(zip(new, ids))
            report.created += len(ids)
        elif new:
            report.skipped += len(new)
        repo.update(conn, updates, wctx)

        touched.extend(known[r.key] for r, _ in bad if r.key in known)  # present, just not usable
        links.add(conn, scope, new_links, report.run_id)
        links.refresh(conn, refreshed, report.run_id)
        touched_ids = found.revived + [t.id for t in touched if t.missed_runs]
        links.touch(conn, touched_ids, report.run_id)
        state.seen_in_batch.extend(unchanged.values())
        state.seen_in_batch.extend(t.id for t in touched)
        if bad:
            quarantine.put(conn, scope, report.run_id, [(r.key, reason, r.fields) for r, reason in bad])
            state.put_now.update(r.key for r, _ in bad)
            report.add_quarantine([(r.key, reason) for r, reason in bad])
            for r, reason in bad:
                log.warning("%s: quarantined %s: %s", entity.label, r.key, reason)
        if state.quarantined_at_start:
            state.still_there.update(r.key for r in batch if r.key in state.quarantined_at_start)
        released: set[str] = set()
        if waiting:  # records of this batch that sat in quarantine and came through this time
            released = waiting.intersection([r.key for r, _, _ in good if r.key not in ambiguous_keys] + [r.key for r in settled])
            # A key one of this read's copies put there stays (repeated in this batch or before).
            released.difference_update(state.put_now)
            if released:
                quarantine.release(conn, scope, released)
                waiting.difference_update(released)
        change_log.write(conn, report.run_id, log_rows)
        # Updates and adoptions first: a dry run of a big batch must still show them.
        report.add_changes(log_rows)
        if created:
            shown = created[: max(0, SHOWN - len(report.changes))]
            report.add_changes([Change("create", table, halo_id, record.key, None, None, summary(row)) for (record, row, _), halo_id in shown], len(created))
        report.fetched += len(batch)
        return bool(forgotten or created or updates or new_links or refreshed or touched_ids or bad or released or log_rows)

    def _adopt(self, conn: Connection, index: MatchIndex, unlinked: list[tuple[SourceRecord, dict, str]]):
        """Existing Halo records that unlinked source records should take over, by match keys in
        order. A match that is ambiguous (several Halo records) is quarantined, never guessed."""
        adopted, ambiguous = {}, []
        if not unlinked or not index.match_fields:
            return adopted, ambiguous
        index.refresh(conn)
        if index.empty:
            return adopted, ambiguous
        pending = unlinked
        for fields in index.match_fields:
            if not pending:
                break
            still = []
            for record, row, digest in pending:
                ids = index.candidates(fields, [row.get(f) for f in fields])
                if len(ids) == 1:
                    adopted[record.key] = (ids[0], fields)
                    index.take(ids[0])
                elif len(ids) > 1:
                    names = "+".join(fields)
                    ambiguous.append((record, f"matches {len(ids)} Halo records by {names} (ids {', '.join(map(str, sorted(ids)))})"))
                else:
                    still.append((record, row, digest))
            pending = still
        return adopted, ambiguous

    # -- deactivation --------------------------------------------------------------------------

    def _deactivate(self, conn: Connection, entity: Entity, report: EntityReport, state: RunState) -> None:
        """Records missing from a complete read: deactivated once missing from N complete runs."""
        absent = state.lookup.unseen()
        if absent is None:
            absent = links.missing(conn, entity.scope, report.run_id, state.seen)
        if not absent or not self._within_limits(conn, entity, report, len(absent), "are missing from the source"):
            return
        links.bump_missed(conn, [a.id for a in absent])
        self._close(conn, entity, report, [a for a in absent if a.missed_runs + 1 >= self.limits.deactivate_after_missed_runs])

    def _deactivate_removed(self, conn: Connection, entity: Entity, report: EntityReport, keys: list[str]) -> bool:
        """Records the source reports removed (``ReadContext.mark_removed``): deactivated now, within
        the same limits, if this scope linked them. False when the limits held them back."""
        gone = [found for found in links.lookup(conn, entity.scope, keys).values() if not found.deactivated]
        if not gone:
            return True
        if not self._within_limits(conn, entity, report, len(gone), "are reported removed by the source"):
            return False
        self._close(conn, entity, report, gone)
        return True

    def _within_limits(self, conn: Connection, entity: Entity, report: EntityReport, count: int, what: str) -> bool:
        """Whether ``count`` deactivations are within the limits (or confirmed); if not, the report
        says they were held back and how to let them through."""
        limits = self.limits
        active = links.count_active(conn, entity.scope)
        percent = 100.0 * count / active if active else 100.0
        if self.confirm_deactivations or (count <= limits.max_deactivations and percent <= limits.max_deactivation_percent):
            return True
        # A source that suddenly shrinks is far more often broken than right: hold every
        # deactivation back and make a person look, instead of emptying Halo.
        report.held_back += count
        report.status = "held-back"
        report.error = (
            f"{count} of {active} {entity.name.lower()} ({percent:.0f}%) {what}; "
            f"deactivation held back (limits: {limits.max_deactivations} records or "
            f"{limits.max_deactivation_percent:g}%). Check the source, then run "
            f"'halodb run --integration {entity.integration} --confirm-deactivations'"
        )
        log.warning("%s: %s", entity.label, report.error)
        return False

    def _close(self, conn: Connection, entity: Entity, report: EntityReport, due: list[links.Link]) -> None:
        """Deactivate the Halo records of ``due`` links (locked ones are left alone), audited and
        in the change set, and remember that halodb deactivated them."""
        repo = entity.repository
        stored = repo.current(conn, [d.halo_id for d in due])
        wctx = WriteContext(self.agent_id, self.clock())
        to_close, done = [], []
        for d in due:
            current = stored.get(d.halo_id)
            if current is not None and repo.is_locked(current):
                report.locked += 1
                continue
            done.append(d.id)
            if current is not None and not current.get(repo.inactive_field):
                to_close.append(d)
        repo.set_inactive(conn, [d.halo_id for d in to_close], True, wctx)
        links.mark_deactivated(conn, done)
        log_rows = [Change("deactivate", repo.audit_name, d.halo_id, d.source_key, repo.inactive_field, False, True) for d in to_close]
        change_log.write(conn, report.run_id, log_rows)
        report.add_changes(log_rows)
        report.deactivated += len(to_close)


def one_line(err: BaseException) -> str:
    """An error as one line: the first line of its message, without driver noise."""
    if isinstance(err, DBAPIError) and err.orig is not None:
        text = str(err.orig)
    else:
        text = str(err)
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return first[:1000]
