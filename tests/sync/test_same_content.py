"""A source that fingerprints its whole content (``ReadContext.same_content``) is not read again
while the fingerprint matches the last complete read's, and is read whenever a run could find
something to do: after a run that wrote and failed, with records in quarantine or counting missed
runs, after a change to what shapes the Halo rows. Real Halo fixture databases (``halo``)."""

from __future__ import annotations

from sqlalchemy import func, select

from halodb.halo.schema import audit, users
from halodb.state import cursors
from halodb.state.tables import link
from halodb.sync.engine import Limits, SyncEngine
from halodb.sync.entity import SourceRecord
from tests.helpers import add_client_with_site, halo_users, user_records, users_entity

SCOPE = users_entity(None).scope


class ContentSource:
    """Records with a content fingerprint the test sets: not read when ``same_content`` says so.

    ``read_as`` is the fingerprint of what the read actually returned (the content may change
    between the check and the read); ``fail_after`` makes the read fail after that many records."""

    def __init__(self, records, content, read_as=None, fail_after=None):
        self.records, self.content, self.read_as, self.fail_after = list(records), content, read_as, fail_after
        self.reads = 0

    def __call__(self, ctx):
        if ctx.same_content(self.content):
            return
        self.reads += 1
        for i, record in enumerate(self.records):
            if i == self.fail_after:
                raise OSError("source went away halfway")
            yield record
        ctx.set_content(self.read_as or self.content)


def engine(halo, **kw):
    return SyncEngine(halo, instance="t", agent_id=2, limits=kw.pop("limits", Limits()), **kw)


def changed(records, surname):
    return [SourceRecord(r.key, {**r.fields, "surname": surname}) for r in records]


def count(halo, table):
    with halo.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def stored_content(halo):
    with halo.connect() as conn:
        return cursors.read(conn, SCOPE).content


def test_an_unchanged_source_is_not_read_and_a_changed_one_is(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(3, site_id)
    eng = engine(halo)
    first = eng.run(users_entity(source := ContentSource(records, "A")))
    assert (first.status, first.created, first.note) == ("ok", 3, None)
    mark, before, audits = stored_content(halo), halo_users(halo), count(halo, audit)
    assert mark is not None

    for _ in range(2):  # the fingerprint outlives a run that read nothing
        again = eng.run(users_entity(source))
        assert (again.status, again.fetched, again.created, again.updated, again.complete) == ("ok", 0, 0, 0, False)
        assert again.note == "source unchanged since its last complete read: nothing to read"
        assert source.reads == 1 and stored_content(halo) == mark
    assert halo_users(halo) == before and count(halo, audit) == audits

    records[1] = SourceRecord(records[1].key, {**records[1].fields, "surname": "Moved"})
    after = eng.run(users_entity(ContentSource(records, "B")))
    assert (after.fetched, after.updated, after.unchanged, after.note) == (3, 1, 2, None)
    assert halo_users(halo)["user1@contoso.example"]["surname"] == "Moved"
    assert stored_content(halo) not in (None, mark)


def test_a_run_that_wrote_and_failed_leaves_no_fingerprint(halo):
    """Content A is imported; B fails after one batch of changes; A again must be read and
    written back, not taken as unchanged."""
    _, site_id = add_client_with_site(halo)
    records = user_records(6, site_id)
    eng = engine(halo, limits=Limits(batch_size=2))
    eng.run(users_entity(ContentSource(records, "A")))
    failed = eng.run(users_entity(ContentSource(changed(records, "B"), "B", fail_after=3)))
    assert (failed.status, failed.updated) == ("failed", 2)
    assert stored_content(halo) is None

    back = eng.run(users_entity(ContentSource(records, "A")))
    assert (back.status, back.fetched, back.updated, back.unchanged) == ("ok", 6, 2, 4)
    assert {u["surname"] for u in halo_users(halo).values()} == {f"Last{i}" for i in range(6)}


def test_records_in_quarantine_make_every_run_read(halo):
    _, site_id = add_client_with_site(halo)
    records = [*user_records(2, site_id), SourceRecord("bad", {}, error="row 4: emailaddress is empty")]
    eng = engine(halo)
    eng.run(users_entity(source := ContentSource(records, "A")))
    again = eng.run(users_entity(source))
    assert (source.reads, again.fetched, again.unchanged, again.quarantined) == (2, 3, 2, 1)


def test_a_record_counting_missed_runs_makes_the_next_run_read_until_it_is_deactivated(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(3, site_id)
    eng = engine(halo, limits=Limits(deactivate_after_missed_runs=2, max_deactivation_percent=100))
    eng.run(users_entity(ContentSource(records, "A")))
    shorter = ContentSource(records[:2], "A-short")
    once = eng.run(users_entity(shorter))
    assert (once.fetched, once.deactivated) == (2, 0)
    twice = eng.run(users_entity(shorter))  # same content, but u2 is one missed run from going
    assert (shorter.reads, twice.fetched, twice.deactivated) == (2, 2, 1)
    assert halo_users(halo)["user2@contoso.example"]["inactive"] is True
    settled = eng.run(users_entity(shorter))  # nothing left counting: not read
    assert (shorter.reads, settled.fetched, settled.deactivated) == (2, 0, 0)


def test_a_changed_option_makes_the_next_run_read(halo):
    _, site_id = add_client_with_site(halo)
    _, other_site = add_client_with_site(halo, client="Fabrikam", site_name="Branch")
    records = [SourceRecord("u0", {"firstname": "A", "surname": "B", "emailaddress": "a@x.example"})]
    eng = engine(halo)
    source = ContentSource(records, "A")
    eng.run(users_entity(source, prepare_options={"default_site": site_id}))
    eng.run(users_entity(source, prepare_options={"default_site": site_id}))
    assert source.reads == 1
    moved = eng.run(users_entity(source, prepare_options={"default_site": other_site}))
    assert (source.reads, moved.updated) == (2, 1)
    assert halo_users(halo)["a@x.example"]["site_id"] == other_site


def test_a_changed_matching_or_create_option_makes_the_next_run_read(halo):
    """What a read would write depends on how records match and whether new ones are created:
    after a change to either, an unchanged source is read again."""
    _, site_id = add_client_with_site(halo)
    eng = engine(halo)
    source = ContentSource(user_records(2, site_id), "A")
    assert eng.run(users_entity(source)).created == 2
    eng.run(users_entity(source))
    assert source.reads == 1
    update_only = eng.run(users_entity(source, create=False))
    assert (source.reads, update_only.unchanged) == (2, 2)
    eng.run(users_entity(source, create=False))
    assert source.reads == 2
    eng.run(users_entity(source, match_fields=[("emailaddress",), ("login",)]))
    assert source.reads == 3
    eng.run(users_entity(source, match_fields=[("emailaddress",), ("login",)]))
    assert source.reads == 3


def test_a_dry_run_leaves_the_fingerprint_as_it_was(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(2, site_id)
    engine(halo).run(users_entity(ContentSource(records, "A")))
    mark = stored_content(halo)
    dry = engine(halo, dry_run=True)
    assert dry.run(users_entity(ContentSource(records, "A"))).fetched == 0
    assert dry.run(users_entity(ContentSource(changed(records, "B"), "B"))).updated == 2
    assert stored_content(halo) == mark
    assert engine(halo).run(users_entity(ContentSource(records, "A"))).fetched == 0


def test_the_fingerprint_kept_is_of_what_was_read(halo):
    """Checked as A, but the content had become B by the time it was read: B is what the next run
    finds unchanged, and A is read."""
    _, site_id = add_client_with_site(halo)
    eng = engine(halo)
    eng.run(users_entity(ContentSource(user_records(2, site_id), "A", read_as="B")))
    assert eng.run(users_entity(b := ContentSource(user_records(2, site_id), "B"))).fetched == 0 and b.reads == 0
    assert eng.run(users_entity(a := ContentSource(user_records(2, site_id), "A"))).fetched == 2 and a.reads == 1


def test_an_incomplete_read_keeps_no_fingerprint(halo):
    _, site_id = add_client_with_site(halo)

    def partial(ctx):
        yield from user_records(2, site_id)
        ctx.set_content("A")
        ctx.mark_incomplete("a size limit")

    engine(halo).run(users_entity(partial))
    assert stored_content(halo) is None
    assert count(halo, link) == 2 and count(halo, users) == 2


def test_only_batches_that_write_count_against_the_fingerprint(halo):
    """A batch that writes nothing leaves the cursor row alone: its commit stays read-only (a
    spreadsheet re-read in full committed 50 durable transactions per 100,000 rows otherwise)."""
    _, site_id = add_client_with_site(halo)
    records = user_records(4, site_id)
    eng = engine(halo, limits=Limits(batch_size=2))
    eng.run(users_entity(ContentSource(records, "A")))
    with halo.connect() as conn:
        first = cursors.read(conn, SCOPE)
    assert first.content is not None and first.writes == 3  # two batches created users; the run's end counts one
    again = eng.run(users_entity(ContentSource(records, "A, saved again")))  # new bytes, same records
    with halo.connect() as conn:
        second = cursors.read(conn, SCOPE)
    assert (again.fetched, again.unchanged) == (4, 4)
    assert second.writes == 4 and second.content not in (None, first.content)  # its two batches wrote nothing
