"""A run that skips an unchanged source (``ReadContext.same_content``) must end exactly as a full
read of the same source would. Each scenario runs twice: ``full-read`` forgets the stored
fingerprint before the last run, so that run reads everything (the reference); ``skip`` leaves it,
so the run may skip. Both must end in the state the test names. Real Halo fixture databases."""

from __future__ import annotations

import pytest
from sqlalchemy import func, insert, select, update

from halodb import runner
from halodb.config import load_settings
from halodb.errors import IntegrationFailed
from halodb.halo.schema import importcsv, users
from halodb.state.tables import cursor, link, quarantine
from halodb.sync.engine import Limits
from halodb.state import quarantine as quarantine_state
from halodb.sync.entity import SourceRecord
from tests.helpers import ListSource, add_client_with_site, halo_users, user_records, users_entity, xlsx
from tests.integrations.test_spreadsheet import add_asset_type, csv_bom, entity, register, write_config
from tests.sync.test_same_content import SCOPE, ContentSource, changed, engine

EITHER_WAY = pytest.mark.parametrize("forget", [True, False], ids=["full-read", "skip"])


def forget_fingerprint(halo, forget: bool) -> None:
    if forget:
        with halo.begin() as conn:
            conn.execute(update(cursor).values(content=None))


def sheets(tmp_path, url):
    """Settings of an instance that runs every spreadsheet import."""
    return load_settings(write_config(tmp_path, url))


@EITHER_WAY
def test_an_edit_held_back_by_a_locked_record_is_applied_once_it_is_unlocked(halo, db_url, tmp_path, forget):
    settings = sheets(tmp_path, db_url)
    add_client_with_site(halo)
    rows = [["emailaddress", "firstname", "surname", "site_name"], ["a@contoso.example", "Ann", "One", "Head Office"]]
    path = csv_bom(tmp_path / "users.csv", rows)
    register(halo, "users", path)
    assert entity(runner.run(settings), "Users").created == 1
    with halo.begin() as conn:
        conn.execute(update(users).values(locked=True))
    rows[1][2] = "Two"
    csv_bom(path, rows)
    held = entity(runner.run(settings), "Users")
    assert (held.locked, held.updated) == (1, 0)
    with halo.begin() as conn:
        conn.execute(update(users).values(locked=False))
    forget_fingerprint(halo, forget)
    runner.run(settings)
    assert halo_users(halo)["a@contoso.example"]["surname"] == "Two"


@EITHER_WAY
def test_an_update_only_import_adopts_a_record_created_in_halo_later(halo, forget):
    _, site_id = add_client_with_site(halo)
    source = ContentSource(user_records(2, site_id), "A")
    assert engine(halo).run(users_entity(source, create=False)).skipped == 2
    with halo.begin() as conn:
        conn.execute(insert(users), {"name": "x", "emailaddress": "user0@contoso.example", "surname": "Hand", "site_id": site_id})
    forget_fingerprint(halo, forget)
    engine(halo).run(users_entity(source, create=False))
    with halo.connect() as conn:
        assert conn.execute(select(func.count()).select_from(link)).scalar_one() == 1
    assert halo_users(halo)["user0@contoso.example"]["surname"] == "Last0"


@EITHER_WAY
def test_held_back_deactivations_are_reported_again_and_go_once_confirmed(halo, forget):
    _, site_id = add_client_with_site(halo)
    records = user_records(10, site_id)
    limits = Limits(deactivate_after_missed_runs=1, max_deactivation_percent=10)
    engine(halo, limits=limits).run(users_entity(ContentSource(records, "A")))
    assert engine(halo, limits=limits).run(users_entity(ContentSource(records[:5], "B"))).status == "held-back"
    forget_fingerprint(halo, forget)
    again = engine(halo, limits=limits).run(users_entity(ContentSource(records[:5], "B")))
    assert (again.status, again.held_back) == ("held-back", 5)
    confirmed = engine(halo, limits=limits, confirm_deactivations=True).run(users_entity(ContentSource(records[:5], "B")))
    assert (confirmed.status, confirmed.deactivated) == ("ok", 5)
    assert sum(u["inactive"] for u in halo_users(halo).values()) == 5


@EITHER_WAY
def test_a_new_matching_field_keys_the_rows_again(halo, db_url, tmp_path, forget):
    """Assets matched on a custom field, then on inventory_number: the Halo fields they adopt by
    stay the same, but every key changes, and a full read links both assets under the new keys."""
    settings = sheets(tmp_path, db_url)
    add_asset_type(halo, "Laptop", ["Serial Number"])
    add_client_with_site(halo)
    row_id = register(halo, "assets", xlsx(tmp_path / "assets.xlsx", [
        ("inventory_number", "assettype_name", "client_name", "site_name", "Serial Number"),
        ("LT-1", "Laptop", "Contoso", "Head Office", "SN-1"),
        ("LT-2", "Laptop", "Contoso", "Head Office", "SN-2"),
    ]), matching="Serial Number")  # fmt: skip
    assert entity(runner.run(settings), "Assets").created == 2
    with halo.begin() as conn:
        conn.execute(update(importcsv).where(importcsv.c.id == row_id).values(matching_field="inventory_number"))
    forget_fingerprint(halo, forget)
    runner.run(settings)
    with halo.connect() as conn:
        assert sorted(conn.execute(select(link.c.source_key)).scalars()) == ["lt-1", "lt-2", "sn-1", "sn-2"]


@EITHER_WAY
def test_a_path_to_a_file_halodb_does_not_read_fails(halo, db_url, tmp_path, forget):
    settings = sheets(tmp_path, db_url)
    add_client_with_site(halo)
    path = csv_bom(tmp_path / "users.csv", [["emailaddress", "surname", "site_name"], ["a@contoso.example", "One", "Head Office"]])
    row_id = register(halo, "users", path)
    runner.run(settings)
    renamed = tmp_path / "users.txt"
    renamed.write_bytes(path.read_bytes())
    with halo.begin() as conn:
        conn.execute(update(importcsv).where(importcsv.c.id == row_id).values(filepath=str(renamed)))
    forget_fingerprint(halo, forget)
    result = entity(runner.run(settings), "Users")
    assert result.status == "failed" and "users.txt: not a spreadsheet halodb reads" in result.error


@EITHER_WAY
def test_writes_of_a_run_that_lost_its_lease_are_read_over(halo, forget):
    """A's lease expired during its first batch; B took over and read Y in full; A committed its
    second batch (X) before it noticed. The next read of Y must put Y back."""
    _, site_id = add_client_with_site(halo)
    records = user_records(4, site_id)
    engine(halo, limits=Limits(batch_size=2)).run(users_entity(ContentSource(records, "Y")))
    beats = []

    def heartbeat():
        beats.append(1)
        if len(beats) == 1:
            took_over = engine(halo, limits=Limits(batch_size=2)).run(users_entity(ContentSource(records, "Y")))
            assert took_over.updated == 2
        elif len(beats) == 2:
            raise IntegrationFailed("lost the lock")

    lost = engine(halo, limits=Limits(batch_size=2)).run(users_entity(ContentSource(changed(records, "X"), "X")), heartbeat=heartbeat)
    assert lost.status == "failed"
    forget_fingerprint(halo, forget)
    engine(halo).run(users_entity(ContentSource(records, "Y")))
    assert {u["surname"] for u in halo_users(halo).values()} == {f"Last{i}" for i in range(4)}


@EITHER_WAY
@pytest.mark.parametrize("fingerprinted", [True, False], ids=["C-fingerprinted", "C-unfingerprinted"])
def test_writes_made_while_another_run_read_are_read_over(halo, forget, fingerprinted):
    """B reads Y in full; between two of B's batches another run writes X to two records (a run
    that lost its lease, played here by a whole run C, which may have failed to take a
    fingerprint). B's fingerprint would hide C's writes, so B stores none, and the next read of Y
    puts Y back."""
    _, site_id = add_client_with_site(halo)
    records = user_records(4, site_id)
    engine(halo, limits=Limits(batch_size=2)).run(users_entity(ContentSource(changed(records, "W"), "W")))
    beats = []

    def heartbeat():
        beats.append(1)
        if len(beats) == 1:
            meanwhile = [*changed(records[:2], "X"), *changed(records[2:], "W")]
            assert engine(halo).run(users_entity(SometimesFingerprinted(meanwhile, "X", fingerprinted))).updated == 2

    b = engine(halo, limits=Limits(batch_size=2)).run(users_entity(ContentSource(records, "Y")), heartbeat=heartbeat)
    assert (b.status, b.complete, b.updated) == ("ok", True, 4)
    forget_fingerprint(halo, forget)
    engine(halo).run(users_entity(ContentSource(records, "Y")))
    assert {u["surname"] for u in halo_users(halo).values()} == {f"Last{i}" for i in range(4)}


@EITHER_WAY
def test_an_upgrade_that_reads_the_same_file_differently_applies_itself(halo, db_url, tmp_path, forget, monkeypatch):
    import importlib

    sheet = importlib.import_module("halodb.integrations.spreadsheet")
    settings = sheets(tmp_path, db_url)
    add_client_with_site(halo)
    register(halo, "users", csv_bom(tmp_path / "users.csv", [["emailaddress", "surname", "site_name"], ["a@contoso.example", "One", "Head Office"]]))
    runner.run(settings)
    original = sheet.read_rows

    def new_reader(path, digest=None):  # the next release parses a cell differently
        for row in original(path, digest):
            yield [v.upper() if v == "One" else v for v in row]

    monkeypatch.setattr(sheet, "read_rows", new_reader)
    monkeypatch.setattr("halodb.sync.engine.__version__", "99.0.0")
    forget_fingerprint(halo, forget)
    runner.run(settings)
    assert halo_users(halo)["a@contoso.example"]["surname"] == "ONE"


def test_a_fixed_row_leaves_quarantine_and_the_file_is_skipped_again(halo, db_url, tmp_path):
    """A row quarantined for an empty email is keyed by its row number; once the email is filled
    in, that key is gone from the file, and a complete read releases it."""
    settings = sheets(tmp_path, db_url)
    add_client_with_site(halo)
    rows = [["emailaddress", "surname", "site_name"], ["a@contoso.example", "One", "Head Office"], ["", "Two", "Head Office"]]
    path = csv_bom(tmp_path / "users.csv", rows)
    register(halo, "users", path)
    assert entity(runner.run(settings), "Users").quarantined == 1
    rows[2][0] = "b@contoso.example"
    csv_bom(path, rows)
    fixed = entity(runner.run(settings), "Users")
    assert (fixed.created, fixed.quarantined) == (1, 0)
    with halo.connect() as conn:
        assert conn.execute(select(func.count()).select_from(quarantine)).scalar_one() == 0
    assert entity(runner.run(settings), "Users").fetched == 0


def quarantined(halo) -> set[str]:
    with halo.connect() as conn:
        return {e["source_key"] for e in quarantine_state.entries(conn, SCOPE)}


@EITHER_WAY
def test_a_key_repeated_in_one_batch_stays_in_quarantine(halo, forget):
    _, site_id = add_client_with_site(halo)
    records = user_records(3, site_id)
    source = ContentSource([*records, records[0]], "A")
    assert engine(halo).run(users_entity(source)).quarantined == 1 and quarantined(halo) == {"u0"}
    engine(halo).run(users_entity(source))  # u0 comes through, and is repeated again
    forget_fingerprint(halo, forget)
    engine(halo).run(users_entity(source))
    assert quarantined(halo) == {"u0"}


def lost_lease_after_its_last_batch(halo, y, x, limits):
    """Run A reads X; after its last batch its lease runs out and B runs Y (its batches wrote
    nothing, so B may even skip); then A's last transaction (deactivations, quarantine) commits."""
    beats = []

    def heartbeat():
        beats.append(1)
        if len(beats) == 2:
            assert engine(halo, limits=limits).run(users_entity(ContentSource(y, "Y"))).status == "ok"

    a = engine(halo, limits=limits).run(users_entity(ContentSource(x, "X")), heartbeat=heartbeat)
    assert len(beats) == 2
    return a


@EITHER_WAY
def test_deactivations_of_a_run_that_lost_its_lease_are_read_over(halo, forget):
    _, site_id = add_client_with_site(halo)
    records = user_records(4, site_id)
    limits = Limits(batch_size=2, deactivate_after_missed_runs=1, max_deactivation_percent=100)
    engine(halo, limits=limits).run(users_entity(ContentSource(records, "Y")))
    assert lost_lease_after_its_last_batch(halo, records, records[:3], limits).deactivated == 1
    forget_fingerprint(halo, forget)
    engine(halo, limits=limits).run(users_entity(ContentSource(records, "Y")))
    assert not any(u["inactive"] for u in halo_users(halo).values())


@EITHER_WAY
def test_quarantine_released_by_a_run_that_lost_its_lease_is_read_over(halo, forget):
    _, site_id = add_client_with_site(halo)
    records = user_records(4, site_id)
    bad = SourceRecord("row 9", {}, error="row 9: no key")
    limits = Limits(batch_size=2)
    engine(halo, limits=limits).run(users_entity(ContentSource([*records, bad], "Y")))
    lost_lease_after_its_last_batch(halo, [*records, bad], records, limits)
    forget_fingerprint(halo, forget)
    engine(halo, limits=limits).run(users_entity(ContentSource([*records, bad], "Y")))
    assert quarantined(halo) == {"row 9"}


class RemovingSource(ListSource):
    """A complete read that also reports removals, as a source with change tracking may."""

    def __init__(self, records, removed):
        super().__init__(records)
        self.removed = removed

    def __call__(self, ctx):
        yield from super().__call__(ctx)
        ctx.mark_removed(self.removed)


def test_quarantine_stays_when_a_complete_reads_removals_are_held_back(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(10, site_id)
    engine(halo).run(users_entity(ListSource([*records, SourceRecord("gone", {}, error="no key")])))
    held = engine(halo).run(users_entity(RemovingSource(records, [r.key for r in records[:5]])))
    assert held.status == "held-back" and quarantined(halo) == {"gone"}


@EITHER_WAY
def test_a_key_repeated_across_batches_in_another_order_ends_as_the_last_copy(halo, forget):
    """The copy read last wins, so the same content in another order ends otherwise: a run that
    saw a key come again with other content stores no fingerprint."""
    _, site_id = add_client_with_site(halo)
    records = user_records(3, site_id)
    other = SourceRecord("u0", {**records[0].fields, "surname": "Other"})
    limits = Limits(batch_size=2)
    engine(halo, limits=limits).run(users_entity(ContentSource([*records, other], "A")))
    assert halo_users(halo)["user0@contoso.example"]["surname"] == "Other"
    forget_fingerprint(halo, forget)
    engine(halo, limits=limits).run(users_entity(ContentSource([other, *records[1:], records[0]], "A")))
    assert halo_users(halo)["user0@contoso.example"]["surname"] == "Last0"


def test_a_key_repeated_across_batches_with_the_same_content_is_still_skipped(halo):
    _, site_id = add_client_with_site(halo)
    records = user_records(3, site_id)
    source = ContentSource([*records, records[0]], "A")
    limits = Limits(batch_size=2)
    assert engine(halo, limits=limits).run(users_entity(source)).status == "ok"
    assert engine(halo, limits=limits).run(users_entity(source)).fetched == 0


class SometimesFingerprinted(ContentSource):
    """A source whose fingerprint cannot always be taken (a SQL import's fingerprint query that
    timed out): such a read goes on in full without calling ``same_content``."""

    def __init__(self, records, content, fingerprinted):
        super().__init__(records, content)
        self.fingerprinted = fingerprinted

    def __call__(self, ctx):
        if self.fingerprinted:
            yield from super().__call__(ctx)
        else:
            self.reads += 1
            yield from self.records


@EITHER_WAY
@pytest.mark.parametrize("change", ["update", "deactivation"])
def test_writes_of_a_read_without_a_fingerprint_are_read_over(halo, forget, change):
    """A fingerprint stored earlier must not stand behind what a read that took none wrote: the
    source back as it was, the next run must read it and undo that write."""
    _, site_id = add_client_with_site(halo)
    records = user_records(4, site_id)
    limits = Limits(deactivate_after_missed_runs=1, max_deactivation_percent=100)
    engine(halo, limits=limits).run(users_entity(SometimesFingerprinted(records, "A", True)))
    between = changed(records[:1], "Between") + records[1:] if change == "update" else records[:3]
    engine(halo, limits=limits).run(users_entity(SometimesFingerprinted(between, "?", False)))
    forget_fingerprint(halo, forget)
    last = SometimesFingerprinted(records, "A", True)
    engine(halo, limits=limits).run(users_entity(last))
    assert last.reads == 1
    people = halo_users(halo)
    assert people["user0@contoso.example"]["surname"] == "Last0"
    assert not any(p["inactive"] for p in people.values())


@EITHER_WAY
@pytest.mark.parametrize("first", ["repeated in its batch", "unusable"])
def test_a_key_quarantined_by_one_copy_is_not_released_by_a_later_one(halo, forget, first):
    """A key whose copy is quarantined early in a read and comes through later in the same read
    stays in quarantine, whatever was in quarantine when the run started and in whichever order
    the copies come."""
    _, site_id = add_client_with_site(halo)
    x = user_records(3, site_id)
    if first == "repeated in its batch":
        other = SourceRecord("u0", {**x[0].fields, "surname": "Y"})
        orders = [[x[0], other, x[0], x[1]]] * 2 + [[x[0], other, x[0], x[1]]]
    else:
        unusable = SourceRecord("u0", {**x[0].fields, "site_id": None, "site_name": "Nowhere"})
        orders = [[unusable, x[1], x[0], x[2]]] * 2 + [[x[0], x[1], unusable, x[2]]]
    limits = Limits(batch_size=2)
    for order in orders[:2]:
        engine(halo, limits=limits).run(users_entity(ContentSource(order, "A")))
        assert quarantined(halo) == {"u0"}
    forget_fingerprint(halo, forget)
    engine(halo, limits=limits).run(users_entity(ContentSource(orders[2], "A")))
    assert quarantined(halo) == {"u0"}
