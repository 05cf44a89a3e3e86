"""The sync engine against a real Halo fixture database (sqlite and postgresql via ``halo``).

Every test asserts exact report counters and the Halo rows themselves.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import replace

import pytest


from sqlalchemy import delete, func, insert, select, update

from halodb.halo.schema import audit, site, users
from halodb.halo.users import UserRepository
from halodb.state import changes as change_log
from halodb.state import cursors, quarantine
from halodb.state.tables import change, link, run
from halodb.sync.engine import Limits, SyncEngine, row_hash
from halodb.sync.entity import SourceRecord
from halodb.halo.repository import keyed
from tests.helpers import ListSource, add_client_with_site, halo_users, user_records, users_entity

SCOPE = users_entity(None).scope


class Clock:
    """A clock the test moves forward: every call returns the current time."""

    def __init__(self, start=dt.datetime(2024, 1, 1, 8, 0, 0)):
        self.now = start

    def __call__(self):
        return self.now

    def advance(self, minutes=1):
        self.now += dt.timedelta(minutes=minutes)


def engine(halo, **kw):
    limits = kw.pop("limits", Limits())
    return SyncEngine(halo, instance="t", agent_id=2, limits=limits, **kw)


def count(halo, table, *where):
    with halo.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def audit_rows(halo):
    with halo.connect() as conn:
        return [dict(r) for r in conn.execute(select(*keyed(*audit.c)).order_by(audit.c.id)).mappings()]


def links(halo):
    with halo.connect() as conn:
        return {r["source_key"]: dict(r) for r in conn.execute(select(link)).mappings()}


def quarantined(halo):
    with halo.connect() as conn:
        return {e["source_key"]: e for e in quarantine.entries(conn, SCOPE)}


def changes_of(halo, report):
    with halo.connect() as conn:
        return change_log.of_run(conn, report.run_id)


def with_fields(record: SourceRecord, **fields) -> SourceRecord:
    return SourceRecord(record.key, {**record.fields, **fields}, record.error)


def add_user(halo, **values) -> int:
    with halo.begin() as conn:
        return conn.execute(insert(users).returning(users.c.id), values).scalar_one()


# -- first load, re-run, updates ---------------------------------------------------------------


def test_first_load_creates_and_second_run_writes_nothing(halo):
    _, site_id = add_client_with_site(halo)
    clock = Clock()
    source = ListSource(user_records(5, site_id))
    eng = engine(halo, limits=Limits(batch_size=2), clock=clock)

    first = eng.run(users_entity(source))
    assert (first.status, first.fetched, first.created, first.updated, first.unchanged) == ("ok", 5, 5, 0, 0), first.error
    stored = halo_users(halo)
    assert len(stored) == 5
    u0 = stored["user0@contoso.example"]
    assert (u0["name"], u0["firstname"], u0["surname"], u0["site_id"], u0["inactive"]) == ("First0 Last0", "First0", "Last0", site_id, False)
    assert u0["lastupdate"] == clock.now and u0["datecreated"] == clock.now
    assert len(links(halo)) == 5
    assert [c.action for c in changes_of(halo, first)] == ["create"] * 5
    assert [(c.halo_table, c.halo_id, c.source_key) for c in changes_of(halo, first)] == [
        ("USERS", links(halo)[f"u{i}"]["halo_id"], f"u{i}") for i in range(5)
    ]
    # The creates are read from the links the run created (created_run), not from change rows.
    assert count(halo, change) == 0
    assert {lk["created_run"] for lk in links(halo).values()} == {first.run_id}
    audits = count(halo, audit)

    clock.advance()
    second = eng.run(users_entity(source))
    assert (second.status, second.fetched, second.created, second.updated, second.unchanged) == ("ok", 5, 0, 0, 5)
    after = halo_users(halo)
    assert {k: v["lastupdate"] for k, v in after.items()} == {k: v["lastupdate"] for k, v in stored.items()}
    assert after == stored
    assert count(halo, audit) == audits
    assert changes_of(halo, second) == []


def test_changed_field_updates_only_that_record_with_audit_and_changes(halo):
    _, site_id = add_client_with_site(halo)
    clock = Clock()
    records = user_records(3, site_id)
    eng = engine(halo, clock=clock)
    eng.run(users_entity(ListSource(records)))
    before = halo_users(halo)
    audits = count(halo, audit)

    clock.advance()
    records[1] = with_fields(records[1], surname="Changed", phonenumber="555-1234")
    report = eng.run(users_entity(ListSource(records)))
    assert (report.status, report.created, report.updated, report.unchanged) == ("ok", 0, 1, 2)

    after = halo_users(halo)
    u1 = after["user1@contoso.example"]
    assert (u1["surname"], u1["phonenumber"], u1["name"]) == ("Changed", "555-1234", "First1 Changed")
    assert u1["lastupdate"] == clock.now
    for email in ("user0@contoso.example", "user2@contoso.example"):
        assert after[email] == before[email]

    new_audits = audit_rows(halo)[audits:]
    got = sorted((a["value"], a["from_value"], a["to_value"]) for a in new_audits)
    assert got == [("name", "First1 Last1", "First1 Changed"), ("phonenumber", None, "555-1234"), ("surname", "Last1", "Changed")]
    assert {(a["table_name"], a["agent_id"], a["id1"], a["date"]) for a in new_audits} == {("USERS", 2, u1["id"], clock.now)}

    logged = changes_of(halo, report)
    assert sorted((c.action, c.halo_table, c.halo_id, c.source_key, c.field, c.old, c.new) for c in logged) == [
        ("update", "USERS", u1["id"], "u1", "name", "First1 Last1", "First1 Changed"),
        ("update", "USERS", u1["id"], "u1", "phonenumber", None, "555-1234"),
        ("update", "USERS", u1["id"], "u1", "surname", "Last1", "Changed"),
    ]


# -- adoption ----------------------------------------------------------------------------------


def test_existing_halo_user_with_same_email_is_adopted(halo):
    client_id, site_id = add_client_with_site(halo)
    existing = add_user(halo, name="Old Name", emailaddress="user0@contoso.example", site_id=site_id, client_id=client_id)
    record = with_fields(user_records(1, site_id)[0], emailaddress="  USER0@Contoso.Example ")
    report = engine(halo).run(users_entity(ListSource([record])))
    assert (report.status, report.created, report.updated) == ("ok", 0, 1), report.error
    assert count(halo, users) == 1
    assert links(halo)["u0"]["halo_id"] == existing
    with halo.connect() as conn:
        row = conn.execute(select(*keyed(*users.c)).where(users.c.id == existing)).mappings().one()
    assert (row["name"], row["emailaddress"]) == ("First0 Last0", "USER0@Contoso.Example")
    assert "adopt" in [c.action for c in changes_of(halo, report)]
    assert "create" not in [c.action for c in changes_of(halo, report)]
    assert links(halo)["u0"]["created_run"] is None  # adopted, not created


def test_halo_user_with_padded_mixed_case_email_is_adopted(halo):
    client_id, site_id = add_client_with_site(halo)
    existing = add_user(halo, name="Old Name", emailaddress=" User0@CONTOSO.example ", site_id=site_id, client_id=client_id)
    report = engine(halo).run(users_entity(ListSource(user_records(1, site_id))))
    assert (report.created, report.updated) == (0, 1)
    assert count(halo, users) == 1
    assert links(halo)["u0"]["halo_id"] == existing


def test_email_matching_two_halo_users_is_quarantined(halo):
    client_id, site_id = add_client_with_site(halo)
    a = add_user(halo, name="A", emailaddress="user0@contoso.example", site_id=site_id, client_id=client_id)
    b = add_user(halo, name="B", emailaddress="USER0@contoso.example", site_id=site_id, client_id=client_id)
    report = engine(halo).run(users_entity(ListSource(user_records(2, site_id))))
    assert (report.status, report.created, report.updated, report.quarantined) == ("ok", 1, 0, 1)
    assert count(halo, users) == 3
    entry = quarantined(halo)["u0"]
    assert str(a) in entry["reason"] and str(b) in entry["reason"]
    assert f"ids {a}, {b}" in entry["reason"]
    assert "u0" not in links(halo)


# -- locked records ----------------------------------------------------------------------------


def test_locked_record_is_left_alone_until_unlocked(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(2, site_id)
    eng = engine(halo)
    eng.run(users_entity(ListSource(records)))
    uid = halo_users(halo)["user0@contoso.example"]["id"]
    with halo.begin() as conn:
        conn.execute(update(users).where(users.c.id == uid).values(locked=True))
    audits = count(halo, audit)

    records[0] = with_fields(records[0], surname="New")
    report = eng.run(users_entity(ListSource(records)))
    assert (report.locked, report.updated, report.unchanged) == (1, 0, 1)
    assert halo_users(halo)["user0@contoso.example"]["surname"] == "Last0"
    assert count(halo, audit) == audits

    with halo.begin() as conn:
        conn.execute(update(users).where(users.c.id == uid).values(locked=False))
    report = eng.run(users_entity(ListSource(records)))
    assert (report.locked, report.updated, report.unchanged) == (0, 1, 1)
    assert halo_users(halo)["user0@contoso.example"]["surname"] == "New"


# -- quarantine --------------------------------------------------------------------------------


def test_bad_values_are_quarantined_and_released_once_fixed(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(4, site_id)
    good = list(records)
    records[1] = with_fields(records[1], site_id=site_id + 999)
    records[2] = with_fields(records[2], inactive="maybe")
    eng = engine(halo)
    report = eng.run(users_entity(ListSource(records)))
    assert (report.status, report.created, report.quarantined) == ("ok", 2, 2)
    assert set(halo_users(halo)) == {"user0@contoso.example", "user3@contoso.example"}
    entries = quarantined(halo)
    assert set(entries) == {"u1", "u2"}
    assert "no site with id" in entries["u1"]["reason"] and str(site_id + 999) in entries["u1"]["reason"]
    assert entries["u2"]["reason"] == "inactive must be true or false (got 'maybe')"
    assert entries["u2"]["first_run"] == report.run_id

    # Still bad: stays, with the later run recorded.
    again = eng.run(users_entity(ListSource(records)))
    assert (again.created, again.quarantined) == (0, 2)
    assert quarantined(halo)["u1"]["last_run"] == again.run_id

    fixed = eng.run(users_entity(ListSource(good)))
    assert (fixed.created, fixed.quarantined, fixed.unchanged) == (2, 0, 2)
    assert len(halo_users(halo)) == 4
    assert quarantined(halo) == {}


def test_source_error_and_duplicate_keys_are_quarantined(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(3, site_id)
    records[1] = SourceRecord("u1", {}, error="row 3: no key column")
    dup = SourceRecord("u0", {**records[0].fields, "emailaddress": "dup@contoso.example"})
    report = engine(halo).run(users_entity(ListSource([*records, dup])))
    assert (report.fetched, report.created, report.quarantined) == (4, 2, 2)
    assert set(halo_users(halo)) == {"user0@contoso.example", "user2@contoso.example"}
    entries = quarantined(halo)
    assert entries["u1"]["reason"] == "row 3: no key column"
    assert "duplicate source key 'u0'" in entries["u0"]["reason"]


def test_quarantined_keys_a_complete_read_no_longer_has_leave_quarantine_unless_removals_were_held_back(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(10, site_id)
    limits = Limits(deactivate_after_missed_runs=1, max_deactivation_percent=10)
    bad = [SourceRecord("gone", {}, error="row 12: no key"), SourceRecord("stays", {}, error="row 13: no key")]
    engine(halo, limits=limits).run(users_entity(ListSource([*records, *bad])))
    assert set(quarantined(halo)) == {"gone", "stays"}
    held = engine(halo, limits=limits).run(users_entity(ListSource([*records[:5], bad[1]])))  # a source that shrank
    assert held.status == "held-back" and set(quarantined(halo)) == {"gone", "stays"}
    incomplete = engine(halo, limits=limits).run(users_entity(ListSource([*records, bad[1]], incomplete="a size limit")))
    assert incomplete.status == "ok" and set(quarantined(halo)) == {"gone", "stays"}
    complete = engine(halo, limits=limits).run(users_entity(ListSource([*records, bad[1]])))
    assert complete.status == "ok" and set(quarantined(halo)) == {"stays"}


# -- deletion safety ---------------------------------------------------------------------------


def test_shrinking_source_holds_deactivations_back(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(10, site_id)
    eng = engine(halo)
    eng.run(users_entity(ListSource(records)))
    audits = count(halo, audit)

    for _ in range(3):
        report = eng.run(users_entity(ListSource(records[:4])))
        assert (report.status, report.held_back, report.deactivated) == ("held-back", 6, 0)
        assert "held back" in report.error
        assert report.failed
    assert count(halo, users, users.c.inactive == True) == 0  # noqa: E712
    assert count(halo, audit) == audits
    assert all(not l["deactivated"] and l["missed_runs"] == 0 for l in links(halo).values())

    confirmed = engine(halo, confirm_deactivations=True)
    first = confirmed.run(users_entity(ListSource(records[:4])))
    assert (first.status, first.held_back, first.deactivated) == ("ok", 0, 0)
    assert count(halo, users, users.c.inactive == True) == 0  # noqa: E712
    second = confirmed.run(users_entity(ListSource(records[:4])))
    assert (second.status, second.deactivated) == ("ok", 6)
    inactive = {e for e, u in halo_users(halo).items() if u["inactive"]}
    assert inactive == {f"user{i}@contoso.example" for i in range(4, 10)}


def test_deactivation_after_two_complete_runs_and_reactivation(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(3, site_id)
    clock = Clock()
    eng = engine(halo, limits=Limits(max_deactivation_percent=50), clock=clock)
    eng.run(users_entity(ListSource(records)))
    uid = halo_users(halo)["user2@contoso.example"]["id"]
    audits = count(halo, audit)

    clock.advance()
    once = eng.run(users_entity(ListSource(records[:2])))
    assert (once.status, once.deactivated) == ("ok", 0)
    assert halo_users(halo)["user2@contoso.example"]["inactive"] is False
    assert links(halo)["u2"]["missed_runs"] == 1
    assert count(halo, audit) == audits

    clock.advance()
    twice = eng.run(users_entity(ListSource(records[:2])))
    assert (twice.status, twice.deactivated) == ("ok", 1)
    u2 = halo_users(halo)["user2@contoso.example"]
    assert (u2["inactive"], u2["lastupdate"]) == (True, clock.now)
    new_audits = audit_rows(halo)[audits:]
    assert [(a["table_name"], a["id1"], a["value"], a["from_value"], a["to_value"], a["agent_id"]) for a in new_audits] == [
        ("USERS", uid, "inactive", "False", "True", 2)
    ]
    assert links(halo)["u2"]["deactivated"] is True
    assert [(c.action, c.halo_id, c.source_key, c.field) for c in changes_of(halo, twice)] == [("deactivate", uid, "u2", "inactive")]

    # Missing again: already deactivated, nothing more happens.
    third = eng.run(users_entity(ListSource(records[:2])))
    assert (third.deactivated, third.held_back) == (0, 0)

    clock.advance()
    back = eng.run(users_entity(ListSource(records)))
    assert (back.status, back.updated, back.unchanged) == ("ok", 1, 2)
    assert halo_users(halo)["user2@contoso.example"]["inactive"] is False
    assert [(c.action, c.halo_id, c.field, c.old, c.new) for c in changes_of(halo, back)] == [("reactivate", uid, "inactive", "True", "False")]
    l2 = links(halo)["u2"]
    assert (l2["deactivated"], l2["missed_runs"]) == (False, 0)


class CursorSource:
    """Yields records, can fail after some, and sets a cursor only once it read everything."""

    def __init__(self, records, position, fail_after=None):
        self.records, self.position, self.fail_after = records, position, fail_after
        self.seen_cursor = "unset"

    def __call__(self, ctx):
        self.seen_cursor = ctx.cursor
        for i, record in enumerate(self.records):
            if self.fail_after is not None and i == self.fail_after:
                raise OSError("source went away halfway")
            yield record
        ctx.set_cursor(self.position)


def test_source_failing_halfway_keeps_earlier_batches_and_the_old_cursor(halo):
    _, site_id = add_client_with_site(halo)
    first_records = user_records(6, site_id)
    eng = engine(halo, limits=Limits(batch_size=2, deactivate_after_missed_runs=1, max_deactivation_percent=100))
    first = eng.run(users_entity(CursorSource(first_records, "x1")))
    assert (first.status, first.created) == ("ok", 6)

    # Second read: u0..u3 changed, u4/u5 gone, plus new u6..u9; the source dies after 5 records.
    changed = [with_fields(r, surname="Changed") for r in first_records[:4]] + user_records(4, site_id, start=6)
    source = CursorSource(changed, "x2", fail_after=5)
    report = eng.run(users_entity(source))
    assert report.status == "failed"
    assert "source went away halfway" in report.error
    assert (report.fetched, report.updated, report.created, report.deactivated) == (4, 4, 0, 0)
    stored = halo_users(halo)
    assert len(stored) == 6
    assert [stored[f"user{i}@contoso.example"]["surname"] for i in range(4)] == ["Changed"] * 4
    assert not any(u["inactive"] for u in stored.values())
    with halo.connect() as conn:
        assert cursors.get(conn, SCOPE) == "x1"
        row = conn.execute(select(run).where(run.c.id == report.run_id)).mappings().one()
    assert (row["status"], row["updated"]) == ("failed", 4)
    assert "source went away halfway" in row["error"]


def test_incomplete_read_deactivates_nothing(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(4, site_id)
    eng = engine(halo, limits=Limits(deactivate_after_missed_runs=1, max_deactivation_percent=100))
    eng.run(users_entity(ListSource(records)))
    for _ in range(2):
        report = eng.run(users_entity(ListSource(records[:1], incomplete="limit hit")))
        assert (report.status, report.complete, report.deactivated, report.held_back) == ("ok", False, 0, 0)
    assert count(halo, users, users.c.inactive == True) == 0  # noqa: E712
    # A complete read then does deactivate (threshold 1): the gate was the only thing in the way.
    report = eng.run(users_entity(ListSource(records[:1])))
    assert (report.complete, report.deactivated) == (True, 3)


def test_cursor_is_stored_and_handed_to_the_next_read(halo):
    _, site_id = add_client_with_site(halo)
    eng = engine(halo)
    source = CursorSource(user_records(2, site_id), "pos-1")
    eng.run(users_entity(source))
    assert source.seen_cursor is None
    with halo.connect() as conn:
        assert cursors.get(conn, SCOPE) == "pos-1"
    source.position = "pos-2"
    eng.run(users_entity(source))
    assert source.seen_cursor == "pos-1"
    with halo.connect() as conn:
        assert cursors.get(conn, SCOPE) == "pos-2"


# -- dry run, entity options -------------------------------------------------------------------


def test_dry_run_reports_but_changes_nothing(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(3, site_id)
    dry = engine(halo, dry_run=True, limits=Limits(batch_size=2))
    report = dry.run(users_entity(ListSource([*records, with_fields(user_records(1, site_id, start=9)[0], inactive="maybe")])))
    assert (report.status, report.created, report.quarantined) == ("ok", 3, 1)
    assert [c.action for c in report.changes] == ["create"] * 3
    assert count(halo, users) == 0
    assert links(halo) == {} and quarantined(halo) == {}

    engine(halo).run(users_entity(ListSource(records)))
    before, audits = halo_users(halo), count(halo, audit)
    records[0] = with_fields(records[0], surname="Dry")
    report = dry.run(users_entity(ListSource(records[:2])))  # u2 missing too
    assert (report.updated, report.unchanged, report.deactivated) == (1, 1, 0)
    assert [(c.action, c.field, c.new) for c in report.changes if c.field == "surname"] == [("update", "surname", "Dry")]
    assert halo_users(halo) == before
    assert count(halo, audit) == audits
    assert all(l["missed_runs"] == 0 for l in links(halo).values())
    assert changes_of(halo, report) == []


def test_a_dry_run_of_a_big_batch_shows_its_updates_before_its_creates(halo):
    """The report keeps the first 200 changes; 300 new records must not crowd out the update."""
    _, site_id = add_client_with_site(halo)
    records = user_records(301, site_id)
    engine(halo).run(users_entity(ListSource(records[:1])))
    records[0] = with_fields(records[0], surname="Changed")
    report = engine(halo, dry_run=True).run(users_entity(ListSource(records)))
    assert (report.status, report.created, report.updated) == ("ok", 300, 1), report.error
    assert report.changes_total == 302  # name and surname of u0, and 300 creates
    assert sorted((c.action, c.field) for c in report.changes[:2]) == [("update", "name"), ("update", "surname")]
    assert [c.action for c in report.changes[2:]] == ["create"] * 198


def test_update_only_skips_new_records(halo):
    client_id, site_id = add_client_with_site(halo)
    existing = add_user(halo, name="Old", emailaddress="user0@contoso.example", site_id=site_id, client_id=client_id)
    report = engine(halo).run(users_entity(ListSource(user_records(3, site_id)), create=False))
    assert (report.created, report.updated, report.skipped) == (0, 1, 2)
    assert list(halo_users(halo)) == ["user0@contoso.example"]
    assert halo_users(halo)["user0@contoso.example"]["id"] == existing


def test_deactivate_false_never_deactivates(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(3, site_id)
    eng = engine(halo, limits=Limits(deactivate_after_missed_runs=1, max_deactivation_percent=100))
    eng.run(users_entity(ListSource(records), deactivate=False))
    for _ in range(3):
        report = eng.run(users_entity(ListSource(records[:1]), deactivate=False))
        assert (report.deactivated, report.held_back, report.status) == (0, 0, "ok")
    assert count(halo, users, users.c.inactive == True) == 0  # noqa: E712


def test_create_only_fields_keep_the_site_of_existing_users(halo):
    client_a, site_a = add_client_with_site(halo, "A", "Site A")
    _, site_b = add_client_with_site(halo, "B", "Site B")
    records = user_records(2, site_a)
    eng = engine(halo)
    opts = {"create_only": ("site_id", "client_id")}
    eng.run(users_entity(ListSource(records), **opts))
    moved = [with_fields(records[0], site_id=site_b), with_fields(records[1], site_id=site_b, surname="Other")]
    report = eng.run(users_entity(ListSource(moved + user_records(1, site_b, start=5)), **opts))
    assert (report.created, report.updated, report.unchanged) == (1, 1, 1)
    stored = halo_users(halo)
    assert (stored["user0@contoso.example"]["site_id"], stored["user0@contoso.example"]["client_id"]) == (site_a, client_a)
    assert (stored["user1@contoso.example"]["site_id"], stored["user1@contoso.example"]["surname"]) == (site_a, "Other")
    assert stored["user5@contoso.example"]["site_id"] == site_b
    assert {c.field for c in changes_of(halo, report) if c.action == "update"} == {"surname", "name"}


def test_record_deleted_outside_halodb_is_created_again(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(2, site_id)
    eng = engine(halo)
    first = eng.run(users_entity(ListSource(records)))
    old_id = halo_users(halo)["user0@contoso.example"]["id"]
    with halo.begin() as conn:
        conn.execute(delete(users).where(users.c.id == old_id))
    records[0] = with_fields(records[0], surname="Back")
    report = eng.run(users_entity(ListSource(records)))
    assert (report.status, report.created, report.updated, report.unchanged) == ("ok", 1, 0, 1)
    u0 = halo_users(halo)["user0@contoso.example"]
    assert u0["id"] != old_id and u0["surname"] == "Back"
    assert links(halo)["u0"]["halo_id"] == u0["id"]
    assert count(halo, link) == 2
    # Both runs still list what they created: the first run's create of u0 outlived its link.
    assert sorted((c.action, c.halo_id, c.source_key) for c in changes_of(halo, first)) == [
        ("create", old_id, "u0"), ("create", links(halo)["u1"]["halo_id"], "u1"),
    ]  # fmt: skip
    assert [(c.action, c.halo_id, c.source_key) for c in changes_of(halo, report)] == [("create", u0["id"], "u0")]


def test_run_rows_match_the_reports(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(4, site_id)
    eng = engine(halo)
    reports = [
        eng.run(users_entity(ListSource(records))),
        eng.run(users_entity(ListSource([with_fields(records[0], surname="X"), *records[1:3], with_fields(records[3], inactive="maybe")]))),
        eng.run(users_entity(ListSource(records[:1]))),  # u0 back to its original surname; 75% missing: held back
        eng.run(users_entity(ListSource(records, fail_after=2))),
    ]
    assert [r.status for r in reports] == ["ok", "ok", "held-back", "failed"]
    with halo.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(run).order_by(run.c.id)).mappings()]
    assert len(rows) == 4
    assert [r["id"] for r in rows] == [r.run_id for r in reports]
    for row, rep in zip(rows, reports):
        assert (row["integration"], row["connection"], row["entity"], row["instance"]) == ("Test", "1", "Users", "t")
        assert row["status"] == rep.status
        assert row["error"] == rep.error
        assert row["finished"] is not None and row["dry_run"] is False
        for counter in ("fetched", "created", "updated", "unchanged", "deactivated", "held_back", "quarantined"):
            assert row[counter] == getattr(rep, counter), counter
    assert [(r["created"], r["updated"], r["quarantined"], r["held_back"]) for r in rows[:3]] == [(4, 0, 0, 0), (0, 1, 1, 0), (0, 1, 0, 3)]


# -- the source hash ---------------------------------------------------------------------------


class CountingUsers(UserRepository):
    """Counts the records it is asked to prepare."""

    def __init__(self):
        self.prepared = 0

    def prepare(self, conn, records, **options):
        self.prepared += len(records)
        return super().prepare(conn, records, **options)


class CountingAhead(CountingUsers):
    """Counts the records prepared ahead (``prepare_known``) as well."""

    def __init__(self):
        super().__init__()
        self.ahead = 0

    def prepare_known(self, records, known, **options):
        rows = super().prepare_known(records, known, **options)
        self.ahead += len(records) if rows is not None else 0
        return rows


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_on_postgresql_later_batches_are_prepared_ahead_while_the_server_stores_the_last(halo):
    """The gaps of a COPY prepare the next batch from the sites earlier batches looked up; a
    record naming a site none of them did is prepared with its batch, and every record comes
    out as it would have without the gaps."""
    client_id, site_id = add_client_with_site(halo)
    other_client, other_site = add_client_with_site(halo, client="Fabrikam", site_name="Depot")
    records = user_records(150, site_id)
    records += [with_fields(r, site_id=other_site) for r in user_records(10, site_id, start=150)]  # batch 4: a site new to the run
    records += [with_fields(user_records(1, site_id, start=160)[0], site_id=999_999)]
    repo = CountingAhead()
    report = engine(halo, limits=Limits(batch_size=50)).run(replace(users_entity(ListSource(records)), repository=repo))
    assert (report.created, report.quarantined) == (160, 1)
    assert report.quarantine == [("u160", "no site with id 999999")]
    assert repo.ahead >= 50 and repo.prepared + repo.ahead == 161  # at least one batch came ready, none twice
    expected = {f"user{i}@contoso.example": (other_site, other_client) if i >= 150 else (site_id, client_id) for i in range(160)}
    made = halo_users(halo)
    assert {email: (u["site_id"], u["client_id"]) for email, u in made.items()} == expected
    assert made["user7@contoso.example"]["name"] == "First7 Last7"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_resync_that_settles_most_records_by_their_hash_prepares_nothing_ahead(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(200, site_id)
    engine(halo, limits=Limits(batch_size=50)).run(replace(users_entity(ListSource(records)), repository=CountingAhead()))
    changed = [with_fields(r, surname="Changed") if i % 25 == 0 else r for i, r in enumerate(records)]
    repo = CountingAhead()  # the same repository class: the records' hashes are salted with it
    report = engine(halo, limits=Limits(batch_size=50)).run(replace(users_entity(ListSource(changed)), repository=repo))
    assert (report.updated, report.unchanged) == (8, 192)  # each batch wrote its change rows by COPY
    assert repo.prepared == 8 and repo.ahead == 0  # only the changed ones, with their batch


def test_unchanged_records_are_settled_by_their_hash_without_being_prepared(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(4, site_id)
    repo = CountingUsers()
    entity = replace(users_entity(ListSource(records)), repository=repo)
    engine(halo).run(entity)
    assert repo.prepared == 4
    records[1] = with_fields(records[1], surname="Changed")
    report = engine(halo).run(replace(entity, read=ListSource(records)))
    assert (report.updated, report.unchanged) == (1, 3)
    assert repo.prepared == 5  # only the changed record was prepared again


def test_a_changed_entity_option_makes_every_record_compared_again(halo):
    # Same source values, but a new default site: the hash covers the options, so each record
    # is prepared and compared; records that name their own site keep it and are not written.
    client_id, site_id = add_client_with_site(halo)
    _, other_site = add_client_with_site(halo, client="Fabrikam", site_name="Branch")
    records = [SourceRecord("u0", {"firstname": "A", "surname": "B", "emailaddress": "a@x.example"}), user_records(1, site_id, start=1)[0]]
    repo = CountingUsers()
    engine(halo).run(replace(users_entity(ListSource(records), prepare_options={"default_site": site_id}), repository=repo))
    report = engine(halo).run(replace(users_entity(ListSource(records), prepare_options={"default_site": other_site}), repository=repo))
    assert repo.prepared == 4
    assert (report.updated, report.unchanged) == (1, 1), report.error
    assert halo_users(halo)["a@x.example"]["site_id"] == other_site


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # the COPY path is PostgreSQL's
def test_a_database_error_inside_copy_fails_the_entity_cleanly(halo):
    _, site_id = add_client_with_site(halo)
    too_long = SourceRecord("k" * 300, user_records(1, site_id)[0].fields)  # halodb_link.source_key holds 255
    report = engine(halo).run(users_entity(ListSource([too_long])))
    assert report.status == "failed"
    assert "too long" in report.error and "\n" not in report.error
    assert count(halo, users) == 0  # the batch's Halo rows rolled back with it
    with halo.connect() as conn:
        assert conn.execute(select(run.c.status).where(run.c.id == report.run_id)).scalar_one() == "failed"


def test_a_site_moved_to_another_client_in_halo_moves_its_users_on_the_next_run(halo):
    # The source did not change, but what its records resolve to did: the hash covers the Halo
    # data preparation reads (run_salt), so the records are prepared and compared again.
    _, site_id = add_client_with_site(halo)
    other_client, _ = add_client_with_site(halo, client="Fabrikam", site_name="Branch")
    records = user_records(2, site_id)
    engine(halo).run(users_entity(ListSource(records)))
    with halo.begin() as conn:
        conn.execute(update(site).where(site.c.id == site_id).values(client_id=other_client))
    report = engine(halo).run(users_entity(ListSource(records)))
    assert (report.updated, report.unchanged) == (2, 0)
    assert {u["client_id"] for u in halo_users(halo).values()} == {other_client}
    again = engine(halo).run(users_entity(ListSource(records)))
    assert (again.updated, again.unchanged) == (0, 2)


def test_a_site_renamed_in_halo_quarantines_the_records_that_name_it(halo):
    client_id, site_id = add_client_with_site(halo)
    records = [SourceRecord(f"n{i}", {"name": f"User {i}", "emailaddress": f"n{i}@contoso.example", "site_name": "Head Office", "client_id": client_id}) for i in range(2)]
    first = engine(halo).run(users_entity(ListSource(records)))
    assert first.created == 2, first.error
    with halo.begin() as conn:
        conn.execute(update(site).where(site.c.id == site_id).values(name="HQ"))
    report = engine(halo).run(users_entity(ListSource(records)))
    assert (report.quarantined, report.updated) == (2, 0)
    assert "no site named 'Head Office'" in quarantined(halo)["n0"]["reason"]


def test_every_committed_batch_renews_the_lease_and_reports_progress(halo):
    _, site_id = add_client_with_site(halo)
    beats, progress = [], []
    engine = SyncEngine(halo, instance="t", agent_id=2, limits=Limits(batch_size=3), progress=lambda r: progress.append(r.fetched))
    report = engine.run(users_entity(ListSource(user_records(7, site_id))), heartbeat=lambda: beats.append(1))
    assert report.created == 7
    assert progress == [3, 6, 7]
    assert len(beats) == 3


def test_a_long_first_load_refreshes_statistics_before_its_lookups_reach_the_database(halo, monkeypatch):
    # Past the number of keys a run remembers one by one, a key its filter may hold is looked up
    # in the database; PostgreSQL must have statistics of the links written so far by then, or it
    # plans each lookup as a scan of the whole scope (seconds per batch at a million links).
    from halodb.state import links
    import halodb.sync.engine as engine_module

    _, site_id = add_client_with_site(halo)
    monkeypatch.setattr(links, "PRELOAD_LIMIT", 5)
    monkeypatch.setattr(engine_module, "ANALYZE_AFTER", 2)
    events = []
    lookup, analyze = links.lookup, links.analyze
    monkeypatch.setattr(links, "lookup", lambda conn, scope, keys: events.append("lookup") or lookup(conn, scope, keys))
    monkeypatch.setattr(links, "analyze", lambda conn: events.append("analyze") or analyze(conn))
    records = user_records(15, site_id)
    report = SyncEngine(halo, instance="t", agent_id=2, limits=Limits(batch_size=3)).run(users_entity(ListSource(records + [records[7]])))
    assert (report.created, report.unchanged) == (15, 1)
    # Batches 1-2 are remembered key by key (6 keys known >= 5); from then on lookups may reach
    # the database, so the statistics are refreshed as the links written double (6, 12). Only
    # u7, repeated in batch 6, is looked up; and once more for the next run.
    assert events == ["analyze", "analyze", "lookup", "analyze"]


def test_the_source_is_read_ahead_while_the_database_stores_a_batch(halo, monkeypatch):
    # PostgreSQL: in the engine's thread, inside each COPY once its rows are sent (a reader
    # thread and psycopg's short waits fight over the GIL); elsewhere in a thread of its own.
    from halodb import bulk

    _, site_id = add_client_with_site(halo)
    events = []
    copy_values = bulk.copy_values

    def logged_copy(conn, table, keys, values):
        events.append(("copy", table.name))
        copy_values(conn, table, keys, values)
        events.append(("copied", table.name))

    monkeypatch.setattr(bulk, "copy_values", logged_copy)

    def source(ctx):
        for i, record in enumerate(user_records(8, site_id)):
            events.append(("read", i, threading.current_thread().name))
            yield record

    report = engine(halo, limits=Limits(batch_size=4)).run(users_entity(source))
    assert report.status == "ok" and report.created == 8
    threads = {e[2] for e in events if e[0] == "read"}
    if halo.dialect.name == "postgresql":
        assert threads == {threading.current_thread().name}
        start, end = events.index(("copy", "users")), events.index(("copied", "users"))
        in_gap = [e[1] for e in events[start:end] if e[0] == "read"]
        assert in_gap and in_gap == list(range(4, 4 + len(in_gap)))  # the next batch, from its start
    else:
        assert threads == {"halodb-source"}


def test_row_hashes_stay_what_earlier_releases_stored():
    # Links keep these hashes across upgrades: if the same record and salt hashed differently,
    # every record of every scope would look changed once after an upgrade and be prepared and
    # compared again. (Taken from the release before the salt became bytes.)
    record = {"surname": "Müller", "site_id": 3, "title": None, "firstname": "Zoë"}
    assert row_hash(record, b'{"version": 1}') == "62933750f3285b8cef5b18cdd40dc02477464e54"
    assert row_hash({"n": 2**70}, b"x") == "3d55a17b422a6478dcf016b93d7321b77faad60f"  # past orjson's ints
