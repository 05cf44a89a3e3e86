"""The built-in API's repositories against a Halo fixture database (sqlite and postgresql)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import Boolean, DateTime, Integer, SmallInteger, Unicode, create_engine, event, func, insert, select, update

from halodb.errors import RecordError, UsageError
from halodb.halo import settings
from halodb.halo.agents import agents
from halodb.halo.assets import assets
from halodb.halo.repository import FieldChange, WriteContext, coerce_value, keyed, same_value
from halodb.halo.schema import area, audit, device, field, info, site, typeinfo, uname, users, xtype
from halodb.halo.sites import Known, resolve_known, resolve_site
from halodb.halo.users import users_repo
from tests.helpers import add_client_with_site

NOW = dt.datetime(2024, 5, 1, 12, 0, 0)
CTX = WriteContext(2, NOW)


# -- coerce_value / same_value (no database) ---------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [(True, True), (False, False), ("yes", True), (" TRUE ", True), ("1", True), ("-1", True), ("y", True), ("on", True),
     ("no", False), ("0", False), ("off", False), ("", False), (1, True), (0, False), (None, None)],
)  # fmt: skip
def test_coerce_bool(value, expected):
    assert coerce_value(Boolean(), value, "inactive") is expected


def test_coerce_bool_rejects_anything_else():
    with pytest.raises(RecordError) as err:
        coerce_value(Boolean(), "maybe", "inactive")
    assert str(err.value) == "inactive must be true or false (got 'maybe')"


@pytest.mark.parametrize("type_", [Integer(), SmallInteger()])
def test_coerce_int(type_):
    assert coerce_value(type_, "12", "site_id") == 12
    assert coerce_value(type_, " 12 ", "site_id") == 12
    assert coerce_value(type_, "12.0", "site_id") == 12
    assert coerce_value(type_, 7.0, "site_id") == 7
    assert coerce_value(type_, 7, "site_id") == 7
    assert coerce_value(type_, "", "site_id") is None
    assert coerce_value(type_, "  ", "site_id") is None
    for bad, shown in (("abc", "'abc'"), ("1.5", "'1.5'"), (2.5, "2.5")):
        with pytest.raises(RecordError) as err:
            coerce_value(type_, bad, "site_id")
        assert str(err.value) == f"site_id must be a whole number (got {shown})"


def test_coerce_datetime():
    when = dt.datetime(2024, 2, 3, 4, 5, 6)
    assert coerce_value(DateTime(), when, "d") is when
    assert coerce_value(DateTime(), "2024-02-03T04:05:06", "d") == when
    assert coerce_value(DateTime(), " 2024-02-03 04:05:06 ", "d") == when
    assert coerce_value(DateTime(), "2024-02-03", "d") == dt.datetime(2024, 2, 3)
    assert coerce_value(DateTime(), "", "d") is None
    with pytest.raises(RecordError) as err:
        coerce_value(DateTime(), "next tuesday", "d")
    assert str(err.value) == "d must be a date and time (got 'next tuesday')"


def test_coerce_text_and_length():
    assert coerce_value(Unicode(5), "  abc ", "code") == "abc"
    assert coerce_value(Unicode(5), "abcde", "code") == "abcde"
    assert coerce_value(Unicode(20), 5551234.0, "phone") == "5551234"
    assert coerce_value(Unicode(20), 12, "phone") == "12"
    assert coerce_value(Unicode(5), "", "code") is None
    assert coerce_value(Unicode(), "x" * 10000, "note") == "x" * 10000
    with pytest.raises(RecordError) as err:
        coerce_value(Unicode(5), "abcdef", "code")
    assert str(err.value) == "code is longer than 5 characters"


def test_same_value():
    assert same_value(None, "")
    assert same_value("", None)
    assert same_value(None, None)
    assert same_value(1, True)
    assert same_value(True, 1)
    assert same_value(0, False)
    assert same_value(None, False)
    assert same_value("a", "a")
    assert same_value(3, 3)
    assert not same_value("a", "A")
    assert not same_value("a", "b")
    assert not same_value(None, "x")
    assert not same_value(True, False)
    assert not same_value(3, 4)


def _coerce_field_by_field(repo, record: dict) -> dict:
    """What ``coerce`` promises: each field through its column's converter, then the rules for
    the whole row (the oracle for its inline fast paths, which only the per-field part has)."""
    row = {}
    for name, value in record.items():
        if name not in repo.writable:
            raise RecordError(f"unknown {repo.audit_name.lower()} field {name!r}")
        row[name] = coerce_value(repo.table.c[name].type, value, name)
    return repo._complete(row)


_ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**12), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=300), st.sampled_from(["", "  ", " 12 ", "12.0", "yes", "off", "x" * 300, "2024-02-03 04:05"]),
    st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1)),
)  # fmt: skip


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*users_repo.writable, "nickname"]), _ANY_VALUE, max_size=8))
def test_coerce_is_each_field_through_its_converter(record):
    try:
        expected = _coerce_field_by_field(users_repo, record)
    except RecordError as err:
        with pytest.raises(RecordError) as got:
            users_repo.coerce(record)
        assert str(got.value) == str(err)
    else:
        typed = lambda row: {name: (type(value), value) for name, value in row.items()}  # noqa: E731 (True == 1)
        assert typed(users_repo.coerce(record)) == typed(expected)


# -- find --------------------------------------------------------------------------------------


def _user(conn, **values) -> int:
    return conn.execute(insert(users).returning(users.c.id), values).scalar_one()


def test_find_is_case_and_space_insensitive(halo):
    client_id, site_id = add_client_with_site(halo)
    with halo.begin() as conn:
        a = _user(conn, name="A", emailaddress="Alice@Contoso.example", site_id=site_id, client_id=client_id)
        b = _user(conn, name="B", emailaddress="bob@contoso.example", site_id=site_id, client_id=client_id)
        b2 = _user(conn, name="B2", emailaddress="BOB@contoso.example", site_id=site_id, client_id=client_id)
        found = users_repo.find(conn, ("emailaddress",), [("  alice@CONTOSO.example ",), ("Bob@Contoso.Example",), ("nobody@x",), (None,), ("",)])
    assert {k: sorted(v) for k, v in found.items()} == {("alice@contoso.example",): [a], ("bob@contoso.example",): sorted([b, b2])}


def test_find_with_compound_keys(halo):
    client_id, site_id = add_client_with_site(halo)
    with halo.begin() as conn:
        ann_smith = _user(conn, name="x", firstname="Ann", surname="Smith", site_id=site_id, client_id=client_id)
        _user(conn, name="y", firstname="Ann", surname="Jones", site_id=site_id, client_id=client_id)
        _user(conn, name="z", firstname="Bob", surname="Smith", site_id=site_id, client_id=client_id)
        found = users_repo.find(conn, ("firstname", "surname"), [(" ANN", "smith "), ("Ann", None), ("Carl", "Smith")])
        by_site = users_repo.find(conn, ("site_id", "firstname"), [(site_id, "bob"), (site_id + 1, "ann")])
    assert found == {("ann", "smith"): [ann_smith]}
    assert list(by_site) == [(site_id, "bob")] and len(by_site[(site_id, "bob")]) == 1


# -- sites -------------------------------------------------------------------------------------


@pytest.fixture
def two_clients(halo):
    """Contoso (Head Office, Branch) and Fabrikam (Head Office)."""
    contoso, contoso_ho = add_client_with_site(halo, "Contoso", "Head Office")
    fabrikam, fabrikam_ho = add_client_with_site(halo, "Fabrikam", "Head Office")
    with halo.begin() as conn:
        branch = conn.execute(insert(site).returning(site.c.id), {"name": "Branch", "client_id": contoso}).scalar_one()
    return {"contoso": contoso, "fabrikam": fabrikam, "contoso_ho": contoso_ho, "fabrikam_ho": fabrikam_ho, "branch": branch}


def test_resolve_site(halo, two_clients):
    ids = two_clients
    records = [
        {"site_id": ids["branch"]},  # by id
        {"site_id": str(ids["fabrikam_ho"])},  # by id as text
        {"site_name": " branch "},  # by name, unique
        {"site_name": "Head Office"},  # ambiguous
        {"site_name": "head office", "client_name": "FABRIKAM"},  # client narrows it
        {"site_name": "Head Office", "client_id": ids["contoso"]},  # client id narrows it
        {},  # no site at all
        {"site_id": 99999},  # unknown id
        {"site_id": "abc"},
        {"site_name": "Nowhere"},  # unknown name
        {"site_name": "Branch", "client_name": "Fabrikam"},  # exists, but not at that client
        {"site_name": "Branch", "client_name": "Nobody Ltd"},  # unknown client
    ]
    with halo.connect() as conn:
        out = resolve_site(conn, records)
        with_default = resolve_site(conn, [{}, {"site_id": ids["fabrikam_ho"]}], default_site=ids["branch"])

    def ok(i):
        assert not isinstance(out[i], RecordError), out[i]
        return out[i]["site_id"], out[i]["client_id"]

    assert ok(0) == (ids["branch"], ids["contoso"])
    assert ok(1) == (ids["fabrikam_ho"], ids["fabrikam"])
    assert ok(2) == (ids["branch"], ids["contoso"])
    assert str(out[3]) == "site name 'Head Office' is ambiguous: give client_name or site_id"
    assert ok(4) == (ids["fabrikam_ho"], ids["fabrikam"])
    assert "client_name" not in out[4] and "site_name" not in out[4]
    assert ok(5) == (ids["contoso_ho"], ids["contoso"])
    assert str(out[6]) == "no site: give site_id or site_name, or configure a default site"
    assert str(out[7]) == "no site with id 99999"
    assert str(out[8]) == "no site with id 'abc'"
    assert str(out[9]) == "no site named 'Nowhere'"
    assert str(out[10]) == "no site named 'Branch' of client Fabrikam"
    assert str(out[11]) == "no client named 'Nobody Ltd'"
    assert [(r["site_id"], r["client_id"]) for r in with_default] == [(ids["branch"], ids["contoso"]), (ids["fabrikam_ho"], ids["fabrikam"])]


def test_a_run_looks_each_site_and_client_up_once_and_can_then_resolve_without_the_database(halo, two_clients):
    ids = two_clients
    records = [
        {"site_id": ids["branch"]}, {"site_id": str(ids["fabrikam_ho"])}, {"site_name": " branch "}, {"site_name": "Head Office"},
        {"site_name": "head office", "client_name": "FABRIKAM"}, {}, {"site_id": 99999}, {"site_name": "Nowhere"},
        {"site_name": "Branch", "client_name": "Nobody Ltd"},
    ]  # fmt: skip
    statements = []
    event.listen(halo, "before_cursor_execute", lambda *args: statements.append(args[2]))
    known = Known()
    assert resolve_known(records, None, known) is None  # nothing looked up yet
    with halo.connect() as conn:
        looked_up = resolve_site(conn, records, known=known)
        queries = len(statements)
        again = resolve_site(conn, records[:2] + records[6:], known=known)  # known sites, known to be missing
        assert len(statements) == queries  # nothing read twice, missing ones included
        warehouse = conn.execute(insert(site).returning(site.c.id), {"name": "Warehouse", "client_id": ids["contoso"]}).scalar_one()
        assert resolve_known([{"site_id": warehouse}], None, known) is None  # not looked up yet
        [row] = resolve_site(conn, [{"site_id": warehouse}], known=known)
        assert len(statements) == queries + 2 and row["client_id"] == ids["contoso"]  # the insert, and the site new to the run
        conn.rollback()
    from_memory = resolve_known(records, None, known)

    def shown(results):
        return [str(r) if isinstance(r, RecordError) else r for r in results]

    assert shown(from_memory) == shown(looked_up) and shown(again) == shown(looked_up[:2] + looked_up[6:])
    assert shown(looked_up)[6:] == ["no site with id 99999", "no site named 'Nowhere'", "no client named 'Nobody Ltd'"]
    assert resolve_known([{"site_id": warehouse}], None, known)[0]["client_id"] == ids["contoso"]
    assert resolve_known([{"site_name": "Warehouse"}], None, known) is None
    assert resolve_known([{"site_name": "Branch", "client_name": "Contoso"}], None, known) is None


def test_a_default_site_that_does_not_exist_is_a_record_error(halo):
    with halo.connect() as conn:
        out = resolve_site(conn, [{}], default_site=424242)
    assert [str(e) for e in out] == ["no site with id 424242 (the default site)"]


# -- users -------------------------------------------------------------------------------------


def test_users_prepare_builds_the_name(halo):
    client_id, site_id = add_client_with_site(halo)
    records = [
        {"firstname": " Ann ", "surname": "Smith", "site_id": site_id},
        {"firstname": "Bob", "site_id": site_id},
        {"name": "Given Name", "firstname": "C", "surname": "D", "site_id": site_id},
        {"site_id": site_id},
        {"firstname": "Eve", "site_id": site_id, "shoesize": 9},
    ]
    with halo.connect() as conn:
        out = users_repo.prepare(conn, records)
    assert out[0] == {"firstname": "Ann", "surname": "Smith", "name": "Ann Smith", "site_id": site_id, "client_id": client_id, "inactive": False}
    assert out[1]["name"] == "Bob"
    assert out[2]["name"] == "Given Name"
    assert str(out[3]) == "name is empty"
    assert str(out[4]) == "unknown users field 'shoesize'"


def test_set_inactive_never_deletes(halo):
    client_id, site_id = add_client_with_site(halo)
    with halo.begin() as conn:
        ids = [_user(conn, name=f"U{i}", site_id=site_id, client_id=client_id) for i in range(3)]
        assert users_repo.set_inactive(conn, ids[:2], True, CTX) == 2
    with halo.connect() as conn:
        rows = {r.id: (r.inactive, r.lastupdate) for r in conn.execute(select(users.c.id, users.c.inactive, users.c.lastupdate))}
        audits = conn.execute(select(*keyed(audit.c.table_name, audit.c.id1, audit.c.value, audit.c.from_value, audit.c.to_value, audit.c.agent_id))).all()
        assert users_repo.count(conn) == 1
        assert users_repo.count(conn, active_only=False) == 3
    assert rows == {ids[0]: (True, NOW), ids[1]: (True, NOW), ids[2]: (False, None)}
    assert sorted(audits) == sorted(("USERS", i, "inactive", "False", "True", 2) for i in ids[:2])


def test_insert_fills_what_a_row_lacks_with_the_default_and_always_stamps(halo):
    """Rows of one batch may carry different fields: a missing one gets the column's default
    (never an explicit NULL), a stamp field a row carries is overwritten by the batch's stamp,
    and the ids come back in row order."""
    client_id, site_id = add_client_with_site(halo)
    rows = [
        {"name": "Full", "site_id": site_id, "client_id": client_id, "title": "CEO", "isserviceaccount": True},
        {"name": "No title", "site_id": site_id, "client_id": client_id, "isserviceaccount": False},
        {"name": "No flag", "site_id": site_id, "client_id": client_id, "title": "CFO"},
    ]
    with halo.begin() as conn:
        ids = users_repo.insert(conn, rows, CTX)
        # The second row lacks title and carries a lastupdate of its own, which the stamp replaces.
        stamped = users_repo.insert(conn, [
            {"name": "Titled", "site_id": site_id, "client_id": client_id, "title": "CTO"},
            {"name": "Stamped", "site_id": site_id, "client_id": client_id, "lastupdate": dt.datetime(2001, 1, 1)},
        ], CTX)  # fmt: skip
    with halo.connect() as conn:
        got = {r.id: r[1:] for r in conn.execute(select(users.c.id, users.c.name, users.c.title, users.c.isserviceaccount, users.c.lastupdate, users.c.datecreated))}
    assert [got[i] for i in ids] == [("Full", "CEO", True, NOW, NOW), ("No title", None, False, NOW, NOW), ("No flag", "CFO", False, NOW, NOW)]
    assert [got[i] for i in stamped] == [("Titled", "CTO", False, NOW, NOW), ("Stamped", None, False, NOW, NOW)]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_new_ids_on_postgresql_come_from_the_sequence_of_the_table_in_reach(halo):
    """The sequence is resolved in the statement, never remembered: one connection moved to
    another schema takes ids from that schema's table, not from the first one's."""
    from sqlalchemy import text

    from halodb.halo.fixture import create_halo_fixture
    from tests.conftest import fresh_pg_schema

    with fresh_pg_schema("seq_b") as (schema_b, url_b):
        other = create_engine(url_b)
        create_halo_fixture(other)
        other.dispose()
        with halo.begin() as conn:
            conn.exec_driver_sql(f"SELECT setval('{schema_b}.users_uid_seq', 500)")
            first = users_repo._take_ids(conn, 2)
            conn.execute(text(f"SET LOCAL search_path TO {schema_b}"))
            moved = users_repo._take_ids(conn, 2)
    assert (first, moved) == ([1, 2], [501, 502])


# -- assets ------------------------------------------------------------------------------------


@pytest.fixture
def asset_type(halo):
    """A type "Laptop" with fields Serial Number (slot 1) and Owner (slot 2); returns its id."""
    with halo.begin() as conn:
        type_id = conn.execute(insert(xtype).returning(xtype.c.id), {"name": "Laptop"}).scalar_one()
        serial = conn.execute(insert(field).returning(field.c.id), {"kind": "T", "name": "Serial Number"}).scalar_one()
        owner = conn.execute(insert(field).returning(field.c.id), {"kind": "T", "name": "Owner"}).scalar_one()
        conn.execute(insert(typeinfo), [
            {"assettype_id": type_id, "seq": 1, "field_id": serial, "kind": "T"},
            {"assettype_id": type_id, "seq": 2, "field_id": owner, "kind": "T"},
        ])  # fmt: skip
    return type_id


def info_rows(conn):
    return sorted(tuple(r) for r in conn.execute(select(info.c.kind, info.c.site_id, info.c.devnum, info.c.seq, info.c.value)))


def test_asset_insert_numbers_per_site_and_writes_values(halo, asset_type):
    _, site_a = add_client_with_site(halo, "A", "Site A")
    _, site_b = add_client_with_site(halo, "B", "Site B")
    with halo.begin() as conn:
        conn.execute(insert(device), {"site_id": site_a, "devnum": 7, "inventory_number": "OLD", "assettype_id": asset_type})
        prepared = assets.prepare(conn, [
            {"inventory_number": "A1", "site_id": site_a, "assettype_name": "laptop", "field:Serial Number": "SN1", "field:owner": "Ann"},
            {"inventory_number": "A2", "site_id": site_a, "assettype_id": asset_type, "Serial Number": 123.0},
            {"inventory_number": "B1", "site_id": site_b, "assettype_id": asset_type, "field:Owner": ""},
            {"inventory_number": "X", "site_id": site_b, "assettype_id": asset_type, "field:Colour": "red"},
            {"inventory_number": "Y", "site_id": site_b, "assettype_name": "Toaster"},
        ])  # fmt: skip
        assert str(prepared[3]) == f"asset type {asset_type} has no field 'Colour'"
        assert str(prepared[4]) == "no asset type named 'Toaster'"
        assert prepared[0] == {"inventory_number": "A1", "site_id": site_a, "assettype_id": asset_type, "inactive": False,
                               "field:Serial Number": "SN1", "field:Owner": "Ann"}  # fmt: skip
        ids = assets.insert(conn, prepared[:3], CTX)
    with halo.connect() as conn:
        devices = {r.inventory_number: (r.site_id, r.devnum, r.lastupdate) for r in conn.execute(select(*keyed(*device.c)))}
        stored = assets.current(conn, ids)
        rows = info_rows(conn)
    assert devices == {"OLD": (site_a, 7, None), "A1": (site_a, 8, NOW), "A2": (site_a, 9, NOW), "B1": (site_b, 1, NOW)}
    assert rows == [("d", site_a, 8, 1, "SN1"), ("d", site_a, 8, 2, "Ann"), ("d", site_a, 9, 1, "123")]
    assert stored[ids[0]]["field:Serial Number"] == "SN1" and stored[ids[0]]["field:Owner"] == "Ann"
    assert stored[ids[1]]["field:Serial Number"] == "123" and "field:Owner" not in stored[ids[1]]
    assert (stored[ids[2]]["site_id"], stored[ids[2]]["devnum"], stored[ids[2]]["inventory_number"]) == (site_b, 1, "B1")


def test_assets_read_their_sites_once_per_run_and_asset_types_every_batch(halo, asset_type):
    _, site_a = add_client_with_site(halo, "A", "Site A")
    statements = []
    event.listen(halo, "before_cursor_execute", lambda *args: statements.append(args[2]))
    known = assets.new_known()
    batch = [{"inventory_number": "A1", "site_id": site_a, "assettype_name": "Laptop"}]
    with halo.connect() as conn:
        first = assets.prepare(conn, batch, known=known)
        reads = [s for s in statements if "FROM site" in s]
        second = assets.prepare(conn, batch, known=known)
    assert first == second and first[0]["site_id"] == site_a
    assert len(reads) == 1 and [s for s in statements if "FROM site" in s] == reads  # the site: once
    assert sum("FROM xtype" in s for s in statements) == 2  # the asset type: every batch


def test_asset_first_devnums_in_an_empty_site_start_at_one(halo, asset_type):
    _, site_a = add_client_with_site(halo)
    rows = [{"inventory_number": f"N{i}", "site_id": site_a, "assettype_id": asset_type, "inactive": False} for i in range(3)]
    with halo.begin() as conn:
        assets.insert(conn, rows, CTX)
        assert sorted(conn.execute(select(device.c.devnum)).scalars()) == [1, 2, 3]


def test_asset_field_update_rewrites_only_that_info_row(halo, asset_type):
    _, site_a = add_client_with_site(halo)
    with halo.begin() as conn:
        rows = [{"inventory_number": f"A{i}", "site_id": site_a, "assettype_id": asset_type, "inactive": False,
                 "field:Serial Number": f"SN{i}", "field:Owner": f"O{i}"} for i in range(2)]  # fmt: skip
        ids = assets.insert(conn, rows, WriteContext(2, dt.datetime(2024, 1, 1)))
    with halo.begin() as conn:
        stored = assets.current(conn, ids)
        diff = assets.diff(stored[ids[0]], {**rows[0], "field:Serial Number": "NEW"})
        assert diff == [FieldChange("field:Serial Number", "SN0", "NEW")]
        assert assets.update(conn, [(ids[0], diff)], CTX) == 1
    with halo.connect() as conn:
        assert info_rows(conn) == [("d", site_a, 1, 1, "NEW"), ("d", site_a, 1, 2, "O0"), ("d", site_a, 2, 1, "SN1"), ("d", site_a, 2, 2, "O1")]
        audits = conn.execute(select(audit.c.table_name, audit.c.id1, audit.c.value, audit.c.from_value, audit.c.to_value, audit.c.agent_id, audit.c.date)).all()
        stamps = dict(conn.execute(select(device.c.id, device.c.lastupdate)).all())
    assert [tuple(a) for a in audits] == [("DEVICE", ids[0], "field:Serial Number", "SN0", "NEW", 2, NOW)]
    assert stamps == {ids[0]: NOW, ids[1]: dt.datetime(2024, 1, 1)}


def test_asset_move_renumbers_and_carries_values(halo, asset_type):
    _, site_a = add_client_with_site(halo, "A", "Site A")
    _, site_b = add_client_with_site(halo, "B", "Site B")
    with halo.begin() as conn:
        ids = assets.insert(conn, [
            {"inventory_number": "A1", "site_id": site_a, "assettype_id": asset_type, "inactive": False, "field:Serial Number": "SA1"},
            {"inventory_number": "A2", "site_id": site_a, "assettype_id": asset_type, "inactive": False, "field:Serial Number": "SA2"},
            {"inventory_number": "B1", "site_id": site_b, "assettype_id": asset_type, "inactive": False, "field:Serial Number": "SB1"},
        ], WriteContext(2, dt.datetime(2024, 1, 1)))  # fmt: skip
    with halo.begin() as conn:
        assets.update(conn, [(ids[0], [FieldChange("site_id", site_a, site_b), FieldChange("field:Owner", None, "Ann")])], CTX)
    with halo.connect() as conn:
        devs = {r.id: (r.site_id, r.devnum, r.lastupdate) for r in conn.execute(select(device.c.id, device.c.site_id, device.c.devnum, device.c.lastupdate))}
        rows = info_rows(conn)
        stored = assets.current(conn, [ids[0]])[ids[0]]
        audits = conn.execute(select(audit.c.id1, audit.c.value, audit.c.from_value, audit.c.to_value)).all()
    assert devs == {ids[0]: (site_b, 2, NOW), ids[1]: (site_a, 2, dt.datetime(2024, 1, 1)), ids[2]: (site_b, 1, dt.datetime(2024, 1, 1))}
    assert rows == sorted([("d", site_a, 2, 1, "SA2"), ("d", site_b, 1, 1, "SB1"), ("d", site_b, 2, 1, "SA1"), ("d", site_b, 2, 2, "Ann")])
    assert (stored["field:Serial Number"], stored["field:Owner"]) == ("SA1", "Ann")
    assert sorted(tuple(a) for a in audits) == sorted([(ids[0], "site_id", str(site_a), str(site_b)), (ids[0], "field:Owner", None, "Ann")])


def test_asset_set_inactive_never_deletes(halo, asset_type):
    _, site_a = add_client_with_site(halo)
    with halo.begin() as conn:
        ids = assets.insert(conn, [{"inventory_number": "A1", "site_id": site_a, "assettype_id": asset_type, "inactive": False,
                                    "field:Serial Number": "S"}], CTX)  # fmt: skip
        assets.set_inactive(conn, ids, True, CTX)
    with halo.connect() as conn:
        assert conn.execute(select(device.c.inactive)).scalars().all() == [True]
        assert len(info_rows(conn)) == 1
        assert assets.count(conn) == 0 and assets.count(conn, active_only=False) == 1


# -- agents and settings -----------------------------------------------------------------------


def test_agents_count_excludes_unassigned(halo):
    with halo.begin() as conn:
        assert agents.count(conn) == 1  # the integrator agent; not Unassigned
        conn.execute(insert(uname), [{"name": "Tech", "isdisabled": False}, {"name": "Gone", "isdisabled": True}])
        assert agents.count(conn) == 2
        assert agents.count(conn, active_only=False) == 3
        conn.execute(update(uname).where(uname.c.id == 1).values(isdisabled=True))
        assert agents.count(conn, active_only=False) == 3
        integrator = agents.get(conn, 2)
    assert (integrator.id, integrator.name, integrator.is_api_agent, integrator.disabled) == (2, "Halo Integrator", True, False)


def test_settings_round_trip(halo):
    when = dt.datetime(2024, 3, 4, 5, 6, 7)
    with halo.begin() as conn:
        assert settings.integration_state(conn, "SqlImport") == settings.IntegrationState(False, None, None)
        settings.set_enabled(conn, "SqlImport", True)
        settings.record_error(conn, "SqlImport", "boom " + "x" * 5000)
    with halo.begin() as conn:
        state = settings.integration_state(conn, "SqlImport")
        assert (state.enabled, state.last_sync) == (True, None)
        assert state.last_error.startswith("boom ") and len(state.last_error) == 4000
        settings.record_success(conn, "SqlImport", when)
    with halo.begin() as conn:
        assert settings.integration_state(conn, "SqlImport") == settings.IntegrationState(True, when, None)
        settings.record_error(conn, "SqlImport", "later failure")
        # Last Sync keeps the last success; other integrations are untouched.
        assert settings.integration_state(conn, "SqlImport") == settings.IntegrationState(True, when, "later failure")
        assert settings.integration_state(conn, "LDAP") == settings.IntegrationState(False, None, None)
        with pytest.raises(UsageError):
            settings.integration_state(conn, "Nope")
        assert conn.execute(select(func.count()).select_from(area)).scalar_one() == 0


def test_find_trims_stored_values(halo):
    client_id, site_id = add_client_with_site(halo)
    with halo.begin() as conn:
        padded = _user(conn, name="P", emailaddress="  Pat@Contoso.example ", site_id=site_id, client_id=client_id)
        found = users_repo.find(conn, ("emailaddress",), [("pat@contoso.example",)])
    assert found == {("pat@contoso.example",): [padded]}


def test_insert_stores_the_stamp_exactly_to_the_microsecond(halo):
    # On PostgreSQL the stamp reaches COPY as text, rendered once per batch (bulk.copy_text).
    _, site_id = add_client_with_site(halo)
    now = dt.datetime(2024, 2, 29, 23, 59, 58, 500000)  # half a second: exact in SQL Server's DATETIME too
    with halo.begin() as conn:
        ids = users_repo.insert(conn, [{"name": "Leap", "site_id": site_id}, {"name": "Day", "site_id": site_id}], WriteContext(2, now))
    with halo.connect() as conn:
        got = conn.execute(select(users.c.datecreated, users.c.lastupdate).where(users.c.id.in_(ids))).all()
    assert [tuple(r) for r in got] == [(now, now)] * 2


def test_insert_overwrites_a_stamp_every_row_carries(halo):
    # Rows that all carry the same fields take the direct path on PostgreSQL; a stamp field among
    # them is still the batch's, not the row's.
    _, site_id = add_client_with_site(halo)
    old = dt.datetime(2001, 1, 1)
    with halo.begin() as conn:
        ids = users_repo.insert(conn, [{"name": n, "site_id": site_id, "lastupdate": old, "datecreated": old} for n in ("A", "B")], CTX)
    with halo.connect() as conn:
        got = conn.execute(select(users.c.name, users.c.lastupdate, users.c.datecreated).where(users.c.id.in_(ids)).order_by(users.c.id)).all()
    assert [tuple(r) for r in got] == [("A", NOW, NOW), ("B", NOW, NOW)]


def test_site_ids_are_whole_numbers_or_decimal_digits(halo):
    client_id, site_id = add_client_with_site(halo)
    if halo.dialect.name != "mssql":  # (an explicit identity value needs IDENTITY_INSERT there)
        with halo.begin() as conn:  # a site whose id is negative: still no id a record may give
            conn.execute(insert(site).values(id=-site_id, name="Negative", client_id=client_id))
    given = [site_id, str(site_id), f" {site_id} ", -site_id, str(-site_id), "²", 1.5, True]
    with halo.connect() as conn:
        got = resolve_site(conn, [{"name": "U", "site_id": s} for s in given])
    assert [r["site_id"] for r in got[:3]] == [site_id] * 3 and all(r["client_id"] == client_id for r in got[:3])
    assert [str(e) for e in got[3:]] == [f"no site with id {s!r}" for s in given[3:]]
