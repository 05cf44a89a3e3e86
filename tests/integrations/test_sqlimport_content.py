"""A SQL import whose query returns what it returned at its last complete run is not read again:
the source database fingerprints the result itself (``halodb.integrations.sqlimport.content``).
The sources are real PostgreSQL schemas; the Halo fixture database is every backend."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from types import SimpleNamespace

import pytest
from sqlalchemy import create_engine, text, update
from sqlalchemy.exc import DBAPIError

from halodb.halo.schema import sqlimport
from halodb.integrations.sqlimport import content
from tests.conftest import fresh_pg_schema
from tests.helpers import halo_users
from tests.integrations.test_sqlimport import QUERY, Source, add_import, only, run, sites, write_config  # noqa: F401 - sites is a fixture

SKIPPED = "source unchanged since its last complete read: nothing to read"


@pytest.fixture
def source():
    with fresh_pg_schema("hr") as (_, url):
        src = Source(url)
        yield src
        src.engine.dispose()


def fingerprint_of(source, sql):
    with source.engine.connect() as conn:
        mark = content.fingerprint(conn, sql)
        return mark and mark.value


def imported(halo, db_url, tmp_path, source, sites, **values):
    """A first import of ``source`` that leaves nothing to do (every user created, none in
    quarantine), and the config that runs it again."""
    add_import(halo, source.url, defaultsite=sites["Head Office"], **values)
    config = write_config(tmp_path, db_url)
    first = only(run(config))
    assert (first.status, first.fetched, first.created, first.quarantined) == ("ok", 4, 4, 0), first.error
    return config


# -- runs ---------------------------------------------------------------------------------------


def test_an_unchanged_result_is_not_read_again(halo, db_url, tmp_path, source, sites):
    config = imported(halo, db_url, tmp_path, source, sites)
    before = halo_users(halo)

    again = only(run(config))

    assert (again.status, again.fetched, again.created, again.updated, again.unchanged) == ("ok", 0, 0, 0, 0)
    assert again.note == SKIPPED
    assert halo_users(halo) == before


@pytest.mark.parametrize(
    "before, change, written",
    [
        (None, "UPDATE employees SET last_name = 'Silva-Moreau' WHERE employee_no = 'E1'", {"ana@contoso.example": ("surname", "Silva-Moreau")}),
        (None, "INSERT INTO employees VALUES ('E5', 'eve@contoso.example', 'Eve', 'Ito', 'Warehouse')", {"eve@contoso.example": ("surname", "Ito")}),
        # NULL and the empty string are different contents: the record's text tells them apart.
        ("UPDATE employees SET first_name = NULL WHERE employee_no = 'E2'", "UPDATE employees SET first_name = '' WHERE employee_no = 'E2'", {}),
    ],
    ids=["value", "row added", "empty string"],
)
def test_a_changed_result_is_read_in_full(halo, db_url, tmp_path, source, sites, before, change, written):
    config = imported(halo, db_url, tmp_path, source, sites)
    if before:  # a starting state of its own, imported and then skipped
        source.execute(before)
        assert [only(run(config)).fetched for _ in range(2)] == [4, 0]
    source.execute(change)

    again = only(run(config))

    assert again.status == "ok" and again.fetched == source.count(), again.error
    assert again.note is None
    people = halo_users(halo)
    for email, (field, value) in written.items():
        assert email in people and (people[email][field] or None) == value
    assert only(run(config)).fetched == 0  # and the new result is the one now remembered


def test_a_row_removed_is_read_and_deactivated_after_two_runs(halo, db_url, tmp_path, source, sites):
    config = imported(halo, db_url, tmp_path, source, sites)
    source.execute("DELETE FROM employees WHERE employee_no = 'E2'")

    first, second, third = (only(run(config)) for _ in range(3))

    # The second run's result is the first's, but a record counting missed runs is work to do.
    assert [(r.fetched, r.deactivated) for r in (first, second, third)] == [(3, 0), (3, 1), (0, 0)]
    assert halo_users(halo)["ben@contoso.example"]["inactive"]


def test_a_renamed_column_is_read_again(halo, db_url, tmp_path, source, sites):
    """Same values under other names write other fields: column names are part of the result."""
    source.execute("CREATE VIEW staff AS SELECT email AS emailaddress, first_name AS firstname FROM employees")
    config = imported(halo, db_url, tmp_path, source, sites, sql="SELECT * FROM staff")
    source.execute("DROP VIEW staff")
    source.execute("CREATE VIEW staff AS SELECT email AS emailaddress, first_name AS surname FROM employees")

    again = only(run(config))

    assert (again.fetched, again.updated) == (4, 4)
    assert halo_users(halo)["ana@contoso.example"]["surname"] == "Ana"


def test_fingerprint_and_read_share_one_snapshot(halo, db_url, tmp_path, source, sites, monkeypatch):
    """A row changed after the fingerprint and changed back after the read: the read must have
    seen the rows the fingerprint covers, or the next run would skip with Halo holding the row
    as it briefly was."""
    add_import(halo, source.url, defaultsite=sites["Head Office"])
    config = write_config(tmp_path, db_url)
    taken = content.fingerprint

    def fingerprint_then_change(conn, sql):
        mark = taken(conn, sql)
        source.execute("UPDATE employees SET last_name = 'Briefly' WHERE employee_no = 'E1'")  # another session
        return mark

    monkeypatch.setattr(content, "fingerprint", fingerprint_then_change)
    assert only(run(config)).fetched == 4
    monkeypatch.setattr(content, "fingerprint", taken)
    source.execute("UPDATE employees SET last_name = 'Silva' WHERE employee_no = 'E1'")

    again = only(run(config))

    assert again.fetched == 0  # the stored fingerprint is of the rows read
    assert halo_users(halo)["ana@contoso.example"]["surname"] == "Silva"


@pytest.fixture
def no_snapshot(monkeypatch):
    """PostgreSQL fingerprinting as SQL Server does without ALLOW_SNAPSHOT_ISOLATION: the read
    does not share the fingerprint's snapshot, so the fingerprint is taken again after it."""
    monkeypatch.setitem(content.FORMS, "postgresql", replace(content.FORMS["postgresql"], isolations=(("READ COMMITTED", False),)))


def test_without_a_snapshot_an_unchanged_result_is_not_read_again(halo, db_url, tmp_path, source, sites, no_snapshot):
    config = imported(halo, db_url, tmp_path, source, sites)
    assert only(run(config)).fetched == 0


def test_without_a_snapshot_a_fingerprint_that_moved_during_the_read_is_not_kept(halo, db_url, tmp_path, source, sites, no_snapshot, monkeypatch):
    """The snapshot test's change and change back, without a snapshot: the read sees the change,
    so the fingerprint taken before it must not be kept, or the next run would skip with Halo
    holding the row as it briefly was."""
    add_import(halo, source.url, defaultsite=sites["Head Office"])
    config = write_config(tmp_path, db_url)
    taken = content.fingerprint

    def fingerprint_then_change(conn, sql):
        mark = taken(conn, sql)
        source.execute("UPDATE employees SET last_name = 'Briefly' WHERE employee_no = 'E1'")
        return mark

    monkeypatch.setattr(content, "fingerprint", fingerprint_then_change)
    assert only(run(config)).fetched == 4
    monkeypatch.setattr(content, "fingerprint", taken)
    assert halo_users(halo)["ana@contoso.example"]["surname"] == "Briefly"  # no snapshot: the read saw it
    source.execute("UPDATE employees SET last_name = 'Silva' WHERE employee_no = 'E1'")

    assert [only(run(config)).fetched for _ in range(2)] == [4, 0]
    assert halo_users(halo)["ana@contoso.example"]["surname"] == "Silva"


def test_a_result_that_cannot_be_fingerprinted_is_read_in_full_every_time(halo, db_url, tmp_path, source, sites):
    # A key column named like the alias the fingerprint nests the query under would hide the row.
    sql = f"SELECT employee_no AS {content.ALIAS}, " + QUERY.removeprefix("SELECT ")
    config = imported(halo, db_url, tmp_path, source, sites, sql=sql, keyfield=content.ALIAS)

    again = only(run(config))

    assert (again.status, again.fetched, again.unchanged) == ("ok", 4, 4)


# -- the fingerprint itself ---------------------------------------------------------------------


def test_fingerprint_ignores_row_order_and_a_trailing_comment(source):
    ascending = fingerprint_of(source, QUERY + " ORDER BY employee_no")
    assert ascending is not None
    assert fingerprint_of(source, QUERY + " ORDER BY employee_no DESC") == ascending
    assert fingerprint_of(source, QUERY + " -- every employee") == ascending


def test_fingerprint_covers_types_and_duplicate_rows(source):
    as_text = fingerprint_of(source, "SELECT '7' AS phonenumber")
    assert as_text is not None
    assert fingerprint_of(source, "SELECT 7 AS phonenumber") != as_text
    once = fingerprint_of(source, "SELECT office FROM employees WHERE employee_no IN ('E1', 'E3')")
    twice = fingerprint_of(source, "SELECT office FROM employees WHERE employee_no IN ('E1', 'E2', 'E3')")
    assert once != twice  # E1 and E2 share an office


def test_a_column_named_like_the_nesting_alias_is_not_fingerprinted(source):
    assert fingerprint_of(source, f"SELECT email AS {content.ALIAS} FROM employees") is None


def test_a_failed_fingerprint_leaves_the_connection_usable(source):
    with source.engine.connect() as conn:
        assert content.fingerprint(conn, "SELECT nothing FROM nowhere") is None
        assert conn.execute(text("SELECT count(*) FROM employees")).scalar_one() == 4
        assert conn.get_isolation_level() == conn.default_isolation_level


def test_sources_without_a_form_read_in_full(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'hr.db'}")
    with engine.connect() as conn:
        assert content.fingerprint(conn, "SELECT 1 AS a") is None
    engine.dispose()
    assert content.statements("mssql", "WITH a AS (SELECT 1 AS b) SELECT b FROM a") is None


def test_a_key_repeated_with_other_content_is_read_in_any_order(halo, db_url, tmp_path, source, sites):
    """Two rows for one email in different batches: the later row wins, so a query returning the
    same rows in another order must be read, not skipped (the fingerprint ignores order)."""
    source.execute("INSERT INTO employees VALUES ('E9', 'ana@contoso.example', 'Ana', 'Other', 'Warehouse')")
    row_id = add_import(halo, source.url, sql=QUERY + " ORDER BY employee_no", defaultsite=sites["Head Office"])
    config = write_config(tmp_path, db_url, BatchSize=2)
    assert only(run(config)).fetched == 5
    assert halo_users(halo)["ana@contoso.example"]["surname"] == "Other"
    with halo.begin() as conn:
        conn.execute(update(sqlimport).where(sqlimport.c.id == row_id).values(sql=QUERY + " ORDER BY employee_no DESC"))

    again = only(run(config))

    assert again.fetched == 5, again.note
    assert halo_users(halo)["ana@contoso.example"]["surname"] == "Silva"


# -- SQL Server's isolation fall-back -----------------------------------------------------------


class FakeSqlServer:
    """Stands in for a SQL Server connection, since none can run here (its statements are checked
    as T-SQL in tests/test_tsql.py). Like a database without ALLOW_SNAPSHOT_ISOLATION, it refuses
    SNAPSHOT at the first statement (SQL Server's error 3952) unless ``allow_snapshot``; it answers
    the two fingerprint statements with a fixed result."""

    class dialect:
        name = "mssql"

    default_isolation_level = "READ COMMITTED"

    def __init__(self, allow_snapshot: bool, total: int = 123):
        self.allow_snapshot, self.total = allow_snapshot, total
        self.level = self.default_isolation_level
        self.calls: list[str] = []

    def execution_options(self, isolation_level):
        self.level = isolation_level
        return self

    def rollback(self):
        self.calls.append("rollback")

    def execute(self, statement):
        self.calls.append(f"{self.level}: {statement.text.split(None, 2)[1]}")
        if self.level == "SNAPSHOT" and not self.allow_snapshot:
            refusal = Exception("Snapshot isolation transaction failed accessing database 'hr' because snapshot isolation is not allowed in this database.")
            raise DBAPIError(statement.text, {}, refusal)
        if "TOP 0" in statement.text:
            return SimpleNamespace(cursor=SimpleNamespace(description=[("emailaddress", str, None, None, None, None, None)]))
        return SimpleNamespace(one=lambda: (4, Decimal(self.total)))


def test_sql_server_with_snapshot_isolation_shares_one_snapshot():
    conn = FakeSqlServer(allow_snapshot=True)
    mark = content.fingerprint(conn, QUERY)
    assert mark is not None and mark.snapshot
    assert conn.calls == ["SNAPSHOT: TOP", "SNAPSHOT: COUNT_BIG(*),"]
    assert content.still(conn, QUERY, mark) and conn.calls[-1] == "SNAPSHOT: COUNT_BIG(*),"  # nothing taken again


def test_sql_server_without_snapshot_isolation_takes_the_fingerprint_again_after_the_read():
    conn = FakeSqlServer(allow_snapshot=False)
    mark = content.fingerprint(conn, QUERY)
    assert mark is not None and not mark.snapshot
    assert conn.calls == ["SNAPSHOT: TOP", "rollback", "READ COMMITTED: TOP", "READ COMMITTED: COUNT_BIG(*),"]
    assert content.still(conn, QUERY, mark)
    conn.total = 124  # a row changed during the read
    assert not content.still(conn, QUERY, mark)
