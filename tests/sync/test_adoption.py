"""Adoption through the per-run index of unlinked Halo records (``halodb.sync.adoption``).

Real SQLite and PostgreSQL through the ``halo`` fixture; the transient error is a constructed
DBAPIError because neither backend deadlocks on demand.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import func, insert, select
from sqlalchemy.exc import DBAPIError

from halodb.halo.schema import users
from halodb.halo.users import UserRepository
from halodb.state.scope import Scope
from halodb.state.tables import link
from halodb.sync.adoption import MatchIndex, match_key
from halodb.sync.engine import Limits, SyncEngine
from halodb.sync.entity import SourceRecord
from tests.helpers import ListSource, add_client_with_site, user_records, users_entity

SCOPE = users_entity(None).scope


def add_user(halo, **values) -> int:
    with halo.begin() as conn:
        return conn.execute(insert(users).returning(users.c.id), values).scalar_one()


def user_count(halo) -> int:
    with halo.connect() as conn:
        return conn.execute(select(func.count()).select_from(users)).scalar_one()


def link_of(halo, key) -> int:
    with halo.connect() as conn:
        return conn.execute(select(link.c.halo_id).where(SCOPE.where(link), link.c.source_key == key)).scalar_one()


def test_match_key_normalises_and_refuses_empty_values():
    assert match_key([" A@B.example ", 3]) == ("a@b.example", 3)
    assert match_key(["", "x"]) is None
    assert match_key([None]) is None


def test_index_skips_records_linked_in_its_scope_but_not_in_others(halo):
    client_id, site_id = add_client_with_site(halo)
    ours = add_user(halo, name="A", emailaddress="a@x.example", site_id=site_id, client_id=client_id)
    theirs = add_user(halo, name="B", emailaddress="b@x.example", site_id=site_id, client_id=client_id)
    free = add_user(halo, name="C", emailaddress=" C@X.example", site_id=site_id, client_id=client_id)
    other_scope = Scope("Other", "1", "Users")
    with halo.begin() as conn:
        for scope, halo_id in ((SCOPE, ours), (other_scope, theirs)):
            conn.execute(insert(link), {**scope.values(), "source_key": f"k{halo_id}", "halo_id": halo_id, "row_hash": "",
                                        "first_seen_run": 1, "last_seen_run": 1, "missed_runs": 0, "deactivated": False})  # fmt: skip
    index = MatchIndex(UserRepository(), SCOPE, [("emailaddress",)])
    with halo.connect() as conn:
        index.refresh(conn)
    assert index.candidates(("emailaddress",), ["A@x.example"]) == []
    assert index.candidates(("emailaddress",), ["b@x.example"]) == [theirs]
    assert index.candidates(("emailaddress",), ["c@x.example  "]) == [free]
    index.take(free)
    assert index.candidates(("emailaddress",), ["c@x.example"]) == []
    index.batch_rolled_back()  # the batch that took it was rolled back: free again
    assert index.candidates(("emailaddress",), ["c@x.example"]) == [free]


def test_halo_user_added_by_someone_else_during_the_run_is_adopted_not_duplicated(halo):
    client_id, site_id = add_client_with_site(halo)
    records = user_records(6, site_id)
    added = {}

    def source(ctx):
        for i, record in enumerate(records):
            if i == 3:  # batch 1 (u0..u2) is written; now Halo's own UI creates user4
                added["id"] = add_user(halo, name="Typed In", emailaddress="USER4@contoso.example", site_id=site_id, client_id=client_id)
            yield record

    report = SyncEngine(halo, instance="t", agent_id=2, limits=Limits(batch_size=3)).run(users_entity(source))
    assert (report.status, report.created, report.updated) == ("ok", 5, 1), report.error
    assert user_count(halo) == 6
    assert link_of(halo, "u4") == added["id"]


def test_rows_created_in_earlier_batches_are_not_offered_for_adoption(halo):
    # Every record of batch 2 has the email of a user batch 1 created: with those users linked
    # in this scope they must not be adopted (the index skips what the run itself wrote).
    _, site_id = add_client_with_site(halo)
    first = user_records(2, site_id)
    again = [SourceRecord(f"dup{i}", r.fields) for i, r in enumerate(first)]
    report = SyncEngine(halo, instance="t", agent_id=2, limits=Limits(batch_size=2)).run(users_entity(ListSource(first + again)))
    assert (report.created, report.updated) == (4, 0), report.error
    assert user_count(halo) == 4


class FlakyUsers(UserRepository):
    """Fails the first update with a transient-looking database error, then works."""

    failures = 1

    def update(self, conn, changes, ctx):
        if changes and self.failures:
            self.failures -= 1
            raise DBAPIError("UPDATE users", {}, Exception("deadlock victim (1205)"))
        return super().update(conn, changes, ctx)


def test_a_retried_batch_adopts_again_and_counts_once(halo, monkeypatch):
    client_id, site_id = add_client_with_site(halo)
    existing = add_user(halo, name="Old", emailaddress="user0@contoso.example", site_id=site_id, client_id=client_id)
    entity = users_entity(ListSource(user_records(2, site_id)))
    entity = type(entity)(**{**entity.__dict__, "repository": FlakyUsers()})
    monkeypatch.setattr("halodb.sync.engine.time.sleep", lambda seconds: None)
    engine = SyncEngine(halo, instance="t", agent_id=2, is_transient=lambda err: True, limits=Limits(batch_attempts=2))
    report = engine.run(entity)
    assert (report.status, report.created, report.updated, report.fetched) == ("ok", 1, 1, 2), report.error
    assert report.changes_total == len([c for c in report.changes])
    assert link_of(halo, "u0") == existing
    assert user_count(halo) == 2


def test_an_adoption_candidate_deleted_during_the_run_is_created_instead(halo):
    client_id, site_id = add_client_with_site(halo)
    doomed = add_user(halo, name="Typed In", emailaddress="user4@contoso.example", site_id=site_id, client_id=client_id)

    def source(ctx):
        for i, record in enumerate(user_records(5, site_id)):
            if i == 2:  # batch 1 (u0, u1) indexed user4's Halo record; now someone deletes it
                with halo.begin() as conn:
                    conn.execute(users.delete().where(users.c.id == doomed))
            yield record

    report = SyncEngine(halo, instance="t", agent_id=2, limits=Limits(batch_size=2)).run(users_entity(source))
    assert (report.status, report.created, report.updated) == ("ok", 5, 0), report.error
    assert user_count(halo) == 5
    with halo.connect() as conn:
        created = conn.execute(select(users.c.id, users.c.emailaddress).where(users.c.id == link_of(halo, "u4"))).one()
    assert created.id != doomed and created.emailaddress == "user4@contoso.example"


def test_an_adoption_candidate_whose_email_changed_during_the_run_is_left_alone(halo):
    client_id, site_id = add_client_with_site(halo)
    moved = add_user(halo, name="Typed In", emailaddress="user4@contoso.example", site_id=site_id, client_id=client_id)

    def source(ctx):
        for i, record in enumerate(user_records(5, site_id)):
            if i == 2:
                with halo.begin() as conn:
                    conn.execute(users.update().where(users.c.id == moved).values(emailaddress="someone.else@contoso.example"))
            yield record

    report = SyncEngine(halo, instance="t", agent_id=2, limits=Limits(batch_size=2)).run(users_entity(source))
    assert (report.status, report.created, report.updated) == ("ok", 5, 0), report.error
    with halo.connect() as conn:
        row = conn.execute(select(users.c.name, users.c.emailaddress).where(users.c.id == moved)).one()
    assert tuple(row) == ("Typed In", "someone.else@contoso.example")


class FailsAfterInsert(UserRepository):
    """Fails the first batch once, after its inserts, with a transient-looking error (the engine
    calls ``update`` after ``insert`` in every batch), so the inserted rows roll back."""

    failures = 1

    def update(self, conn, changes, ctx):
        if self.failures:
            self.failures -= 1
            raise DBAPIError("UPDATE users", {}, Exception("deadlock victim (1205)"))
        return super().update(conn, changes, ctx)


def test_ids_of_a_rolled_back_batch_are_not_taken_for_the_runs_own(halo, monkeypatch):
    # SQLite hands the rowids of a rolled-back insert out again. A user added in Halo between the
    # attempts gets one of them; the retried batch must index it as someone else's record.
    client_id, site_id = add_client_with_site(halo)
    add_user(halo, name="Unrelated", emailaddress="unrelated@contoso.example", site_id=site_id, client_id=client_id)
    added = {}

    def between_attempts(seconds):
        added["id"] = add_user(halo, name="Typed In", emailaddress="user4@contoso.example", site_id=site_id, client_id=client_id)

    monkeypatch.setattr("halodb.sync.engine.time.sleep", between_attempts)
    entity = replace(users_entity(ListSource(user_records(6, site_id))), repository=FailsAfterInsert())
    engine = SyncEngine(halo, instance="t", agent_id=2, is_transient=lambda err: True, limits=Limits(batch_size=2, batch_attempts=2))
    report = engine.run(entity)
    assert (report.status, report.created, report.updated) == ("ok", 5, 1), report.error
    assert link_of(halo, "u4") == added["id"]
    assert user_count(halo) == 7  # the unrelated user, user4 adopted, five created
