"""Inserting into SQL Server tables with triggers (``halodb.halo.output_into``).

No SQL Server runs here. The batch text is parsed as T-SQL by sqlglot; the paging and id mapping
of ``Repository._insert_output_into`` run against a stand-in connection that records what it is
sent and answers with ids, because nothing else can execute a T-SQL batch on this machine.
"""

from __future__ import annotations

import itertools
import re

import pytest
import sqlglot
from sqlglot import exp

from sqlalchemy.dialects import mssql

from halodb.halo import output_into
from halodb.halo.schema import device, users
from halodb.halo.users import UserRepository


@pytest.mark.parametrize("rows", [1, 3, 139])
def test_the_batch_is_tsql_that_inserts_through_output_into_and_selects_the_ids(rows):
    keys = ["name", "emailaddress", "site_id", "inactive"]
    statements = sqlglot.parse(output_into.batch(users, keys, rows), read="tsql")
    assert [type(s) for s in statements] == [exp.Set, exp.Declare, exp.Insert, exp.Select]
    insert = statements[2]
    assert insert.this.this.name == "users"
    assert [c.name for c in insert.this.expressions] == ["uusername", "uemail", "usite", "uinactive"]
    returning = insert.args["returning"].sql("tsql")
    assert returning == "OUTPUT inserted.uid INTO @ids"
    values = insert.find(exp.Values)
    assert len(values.expressions) == rows
    assert all(len(row.expressions) == len(keys) + 1 for row in values.expressions)
    assert insert.expression.args["order"].sql("tsql") == "ORDER BY v.n"
    assert statements[3].sql("tsql") == "SELECT id FROM @ids ORDER BY id"
    assert output_into.batch(users, keys, rows).count("?") == rows * len(keys)


@pytest.mark.parametrize("columns", range(1, 40))
def test_a_page_stays_under_the_parameter_and_row_limits(columns):
    rows = output_into.rows_per_page(columns)
    assert 1 <= rows <= 1000
    assert rows * columns < 2100
    assert (rows + 1) * columns >= 2100 - columns or rows == 1000


class StandInConnection:
    """Records each batch and its parameters; answers with ascending ids, like @ids would."""

    class dialect:
        name = "mssql"

    def __init__(self):
        self.info = {"halodb_triggers": {"users"}}
        self.calls = []
        self._ids = itertools.count(500)

    def exec_driver_sql(self, sql, params):
        rows = len(re.findall(r"\?, \d+\)", sql))  # one per VALUES row: (?, ..., ?, n)
        self.calls.append((sql, params))
        return [(next(self._ids),) for _ in range(rows)]


def test_insert_pages_the_rows_and_maps_ids_back_in_order(monkeypatch):
    conn = StandInConnection()
    monkeypatch.setattr(output_into, "rows_per_page", lambda columns: 3)
    rows = [{"name": f"User {i}", "site_id": 7} for i in range(7)]
    ids = UserRepository().insert(conn, rows, _ctx())
    assert ids == list(range(500, 507))
    # keys, sorted: datecreated, lastupdate (both stamped by insert), name, site_id
    assert [len(params) for _, params in conn.calls] == [3 * 4, 3 * 4, 1 * 4]
    first_sql, first_params = conn.calls[0]
    assert "OUTPUT inserted.uid INTO @ids" in first_sql
    assert (first_params[2], first_params[2 + 4], first_params[3]) == ("User 0", "User 1", 7)


def test_a_table_without_triggers_keeps_sqlalchemys_output_path():
    conn = StandInConnection()
    conn.info["halodb_triggers"] = set()
    sent = []
    conn.execute = lambda stmt, params: sent.append((stmt, params)) or [(41,)]
    assert UserRepository().insert(conn, [{"name": "A", "site_id": 1}], _ctx()) == [41]
    assert conn.calls == []  # no OUTPUT … INTO batch
    (stmt, params), = sent
    assert "OUTPUT inserted.uid" in str(stmt.compile(dialect=mssql.dialect(), column_keys=list(params[0])))


def test_devices_numbering_locks_the_range_on_sql_server():
    from halodb.halo.assets import AssetRepository

    captured = []

    class Recorder:
        class dialect:
            name = "mssql"

        def execute(self, stmt):
            captured.append(str(stmt.compile(dialect=mssql.dialect())))
            return []

    AssetRepository()._next_devnums(Recorder(), [3])
    assert f"FROM {device.name} WITH (UPDLOCK, HOLDLOCK)" in captured[0]


def _ctx():
    import datetime as dt

    from halodb.halo.repository import WriteContext

    return WriteContext(agent_id=2, now=dt.datetime(2026, 1, 1))


def test_rows_written_without_ids_fetch_nothing_back_even_one_at_a_time():
    # One audit row (one deactivated user) runs as a single execute: it must not carry the
    # OUTPUT clause that SQL Server refuses on a table with a trigger.
    from sqlalchemy import insert
    from halodb.bulk import insert_statement
    from halodb.halo.schema import audit

    keys = ["table_name", "id1", "value", "from_value", "to_value", "date", "agent_id"]
    assert "OUTPUT" in str(insert(audit).compile(dialect=mssql.dialect(), column_keys=keys))  # the trap
    assert "OUTPUT" not in str(insert_statement(audit).compile(dialect=mssql.dialect(), column_keys=keys))


def test_every_table_a_repository_writes_is_asked_about_triggers():
    # Trigger detection asks about WRITTEN_TABLES only; a repository over a table missing there
    # would insert with a plain OUTPUT on SQL Server and fail with error 334 if it had a trigger.
    from halodb.halo import REPOSITORIES
    from halodb.halo.triggers import WRITTEN_TABLES

    assert {repo.table.name for repo in REPOSITORIES.values()} <= set(WRITTEN_TABLES)
