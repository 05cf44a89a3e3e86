"""How a run looks its links up (``halodb.state.links.Lookup``): per batch, or in one pass."""

from __future__ import annotations

from sqlalchemy import event, func, select

from halodb.halo.schema import users
from halodb.state import links
from halodb.state.tables import link
from halodb.sync.engine import Limits, SyncEngine
from halodb.sync.entity import SourceRecord
from tests.helpers import ListSource, add_client_with_site, user_records, users_entity

SCOPE = users_entity(None).scope


class LinkQueries:
    """Counts the SELECTs a block of code sends to the link table."""

    def __init__(self, engine):
        self.engine, self.count = engine, 0

    def _seen(self, conn, cursor, statement, *args):
        text = statement.lower()
        if text.lstrip().startswith("select") and "from halodb_link" in text:
            self.count += 1

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._seen)


def user_count(halo) -> int:
    with halo.connect() as conn:
        return conn.execute(select(func.count()).select_from(users)).scalar_one()


def test_a_full_resync_reads_the_links_in_one_pass(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(12, site_id)
    engine = SyncEngine(halo, instance="t", agent_id=2, limits=Limits(batch_size=3))
    engine.run(users_entity(ListSource(records)))
    with LinkQueries(halo) as queries:
        report = engine.run(users_entity(ListSource(records)))
    assert report.unchanged == 12
    # a count and one pass, which also answers which links went missing; per batch it would be
    # a count, 4 lookups and a scan for missing links
    assert queries.count == 2


def test_a_scope_over_the_limit_is_looked_up_batch_by_batch(halo, monkeypatch):
    _, site_id = add_client_with_site(halo)
    records = user_records(12, site_id)
    engine = SyncEngine(halo, instance="t", agent_id=2, limits=Limits(batch_size=3))
    engine.run(users_entity(ListSource(records)))
    monkeypatch.setattr(links, "PRELOAD_LIMIT", 11)
    with LinkQueries(halo) as queries:
        report = engine.run(users_entity(ListSource(records)))
    assert report.unchanged == 12
    assert queries.count == 1 + 4 + 1  # count, one lookup per batch, missing-link scan


def test_missing_links_come_from_the_pass_and_are_deactivated_as_before(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(12, site_id)
    engine = SyncEngine(halo, instance="t", agent_id=2, limits=Limits(batch_size=3, deactivate_after_missed_runs=1, max_deactivation_percent=50))
    engine.run(users_entity(ListSource(records)))
    report = engine.run(users_entity(ListSource(records[:6] + records[7:])))  # u6 gone
    assert (report.unchanged, report.deactivated) == (11, 1)
    with halo.connect() as conn:
        gone = conn.execute(select(link.c.deactivated, link.c.missed_runs).where(link.c.source_key == "u6")).one()
    assert tuple(gone) == (True, 1)


def test_a_short_delta_does_not_read_the_whole_scope(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(12, site_id)
    engine = SyncEngine(halo, instance="t", agent_id=2, limits=Limits(batch_size=3))
    engine.run(users_entity(ListSource(records)))
    lookup = links.Lookup(SCOPE, full_batch=3)
    with halo.connect() as conn:
        found = lookup(conn, ["u1", "u2"])
    assert set(found) == {"u1", "u2"}
    assert lookup._known is None and lookup._decided is False


def test_a_key_seen_again_later_in_the_run_is_read_from_the_database(halo):
    # u1 comes twice, in batch 1 and batch 3: the second time its link (written by batch 1) must
    # be found, not the preloaded state from before the run, or Halo would get a second user.
    _, site_id = add_client_with_site(halo)
    records = user_records(6, site_id)
    engine = SyncEngine(halo, instance="t", agent_id=2, limits=Limits(batch_size=3))
    engine.run(users_entity(ListSource(records[:3])))
    changed = SourceRecord("u1", {**records[1].fields, "surname": "Changed"})
    again = [records[0], changed, records[2], records[3], records[4], records[5], SourceRecord("u1", {**records[1].fields, "surname": "Twice"})]
    report = engine.run(users_entity(ListSource(again)))
    assert report.status == "ok", report.error
    assert (report.created, report.updated) == (3, 2)
    assert user_count(halo) == 6
    with halo.connect() as conn:
        assert conn.execute(select(func.count()).select_from(link).where(link.c.source_key == "u1")).scalar_one() == 1


def test_a_first_load_looks_no_key_up_in_the_database(halo):
    # An empty scope read in one pass: no key can have a link except one the run asked for
    # already, so 12 new users cost one count of the scope and no lookup.
    _, site_id = add_client_with_site(halo)
    engine = SyncEngine(halo, instance="t", agent_id=2, limits=Limits(batch_size=3))
    with LinkQueries(halo) as queries:
        report = engine.run(users_entity(ListSource(user_records(12, site_id))))
    assert report.created == 12
    assert queries.count == 1


def test_a_key_repeated_in_a_first_load_finds_the_link_it_wrote(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(6, site_id)
    again = records + [SourceRecord("u1", {**records[1].fields, "surname": "Again"})]
    report = SyncEngine(halo, instance="t", agent_id=2, limits=Limits(batch_size=3)).run(users_entity(ListSource(again)))
    assert report.status == "ok", report.error
    assert (report.created, report.updated) == (6, 1)
    assert user_count(halo) == 6
    with halo.connect() as conn:
        assert conn.execute(select(users.c.surname).join(link, link.c.halo_id == users.c.id).where(link.c.source_key == "u1")).scalar_one() == "Again"


def test_past_the_limit_new_keys_cost_no_lookup_and_a_repeated_key_is_still_found(halo, monkeypatch):
    # Remembering every key of a million-record first load would cost memory without bound: past
    # PRELOAD_LIMIT known keys, the keys asked for go to a fixed-size filter. A key the filter may
    # hold is looked up (a repeat must find the link the run wrote); any other costs no query.
    _, site_id = add_client_with_site(halo)
    monkeypatch.setattr(links, "PRELOAD_LIMIT", 4)
    records = user_records(9, site_id)
    again = records + [SourceRecord("u7", {**records[7].fields, "surname": "Again"})]
    with LinkQueries(halo) as queries:
        report = SyncEngine(halo, instance="t", agent_id=2, limits=Limits(batch_size=3)).run(users_entity(ListSource(again)))
    assert (report.status, report.created, report.updated) == ("ok", 9, 1)
    assert user_count(halo) == 9
    assert queries.count == 1 + 1  # the count, then the repeated u7 from the database


def test_the_asked_filter_holds_every_key_added_and_few_others():
    asked = links.AskedFilter()
    added = [f"key-{i}" for i in range(50_000)]
    for key in added:
        asked.add(key)
    assert all(asked.may_hold(key) for key in added)  # never a false "not asked"
    false_alarms = sum(asked.may_hold(f"other-{i}") for i in range(50_000))
    assert false_alarms < 50  # about 1 in 10 million expected at 50,000 keys; a broken hash is far above


def test_a_link_pass_that_fails_once_is_read_again_and_missing_links_still_count(halo):
    # A transient error on the one-pass read rolls the batch back and retries it. A pass left
    # half-done would answer "no link is missing", and the user gone from the source would never
    # be deactivated.
    from sqlalchemy.exc import OperationalError

    _, site_id = add_client_with_site(halo)
    records = user_records(12, site_id)
    limits = Limits(batch_size=3, deactivate_after_missed_runs=1, max_deactivation_percent=50)
    SyncEngine(halo, instance="t", agent_id=2, limits=limits).run(users_entity(ListSource(records)))
    passes = []

    def fail_the_pass_once(conn, cursor, statement, parameters, context, executemany):
        text = statement.lower()
        is_pass = "from halodb_link" in text and "source_key" not in text.split("where", 1)[-1] and "count(" not in text
        if is_pass:
            passes.append(statement)
            if len(passes) == 1:
                raise OperationalError(statement, parameters, Exception("injected: connection reset"))

    event.listen(halo, "before_cursor_execute", fail_the_pass_once)
    try:
        engine = SyncEngine(halo, instance="t", agent_id=2, limits=limits, is_transient=lambda err: True)
        report = engine.run(users_entity(ListSource(records[:6] + records[7:])))  # u6 gone
    finally:
        event.remove(halo, "before_cursor_execute", fail_the_pass_once)
    assert len(passes) == 2, passes  # failed once, read again in the retried batch
    assert report.status == "ok", report.error
    assert (report.unchanged, report.deactivated) == (11, 1)


def test_sort_out_settles_only_active_links_that_carry_the_records_hash(halo):
    # Four linked users, each sorted out differently; the one-pass read and the per-batch lookup
    # must agree.
    _, site_id = add_client_with_site(halo)
    records = user_records(4, site_id)
    engine = SyncEngine(halo, instance="t", agent_id=2, limits=Limits(batch_size=4))
    engine.run(users_entity(ListSource(records)))
    with halo.begin() as conn:
        ids = dict(conn.execute(select(link.c.source_key, link.c.id)).all())
        hashes = dict(conn.execute(select(link.c.source_key, link.c.row_hash)).all())
        conn.execute(link.update().where(link.c.source_key == "u1").values(missed_runs=1))  # missed once
        conn.execute(link.update().where(link.c.source_key == "u2").values(deactivated=True))
    digests = {"u0": hashes["u0"], "u1": hashes["u1"], "u2": hashes["u2"], "u3": "changed", "u9": "new"}
    for full_batch in (5, 50):  # 5 keys: read in one pass; a full batch of 50: looked up
        with halo.connect() as conn:
            lookup = links.Lookup(SCOPE, full_batch=full_batch)
            found = lookup.sort_out(conn, digests, ["u0"])  # u0 also came as a record in error
            assert (lookup._known is not None) == (full_batch == 5)
        assert found.unchanged == {"u0": ids["u0"], "u1": ids["u1"]}
        assert found.revived == [ids["u1"]]
        assert sorted(found.links) == ["u2", "u3"]  # deactivated, changed; u9 has no link
        assert all(type(each) is links.Link for each in found.links.values())
        assert found.links["u2"].deactivated and found.links["u3"].row_hash == hashes["u3"]
