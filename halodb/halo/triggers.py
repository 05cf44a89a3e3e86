"""Which Halo tables carry triggers.

SQL Server refuses ``INSERT … OUTPUT inserted.id`` (without ``INTO``) on a table with an enabled
trigger (error 334), and OUTPUT is how halodb reads back the ids of the rows it inserts. So
``halodb validate`` names the tables halodb writes that have triggers, and inserts into those
go through ``OUTPUT … INTO`` a table variable instead (``halodb.halo.output_into``). Halo ships triggers on some installations (audit add-ons,
customisations), so this is asked of the live database, never assumed.

One query per backend, each for the tables visible without a schema prefix (as halodb names them):

* SQL Server: enabled DML triggers in ``sys.triggers`` on tables of the login's default schema;
* PostgreSQL: ``pg_trigger`` rows that are not internal (foreign-key checks are triggers there)
  and not disabled, on tables visible on the ``search_path``;
* SQLite: ``sqlite_master`` entries of type ``trigger``.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Select, and_, column, func, literal_column, select, table
from sqlalchemy.engine import Connection

from halodb.halo.schema import area, audit, azureadconnection, control, device, importcsv, info, site, sqlimport, uname, users

#: The Halo tables halodb inserts into or updates (its own halodb_* tables are not Halo's).
WRITTEN_TABLES: tuple[str, ...] = tuple(
    t.name for t in (area, site, users, uname, device, info, audit, control, sqlimport, importcsv, azureadconnection)
)

_sys_triggers = table("triggers", column("parent_id"), column("is_disabled"), schema="sys")
_sys_tables = table("tables", column("name"), column("object_id"), column("schema_id"), schema="sys")
_pg_trigger = table("pg_trigger", column("tgrelid"), column("tgisinternal"), column("tgenabled"), schema="pg_catalog")
_pg_class = table("pg_class", column("oid"), column("relname"), schema="pg_catalog")
_sqlite_master = table("sqlite_master", column("type"), column("tbl_name"))


def mssql_query(names: Iterable[str]) -> Select:
    """SQL Server: tables among ``names`` (default schema) with an enabled DML trigger."""
    return (
        select(_sys_tables.c.name)
        .distinct()
        .select_from(_sys_triggers.join(_sys_tables, _sys_triggers.c.parent_id == _sys_tables.c.object_id))
        .where(
            _sys_triggers.c.is_disabled == literal_column("0"),  # a disabled trigger does not block OUTPUT
            _sys_tables.c.schema_id == func.schema_id(),
            _sys_tables.c.name.in_(list(names)),
        )
    )


def postgresql_query(names: Iterable[str]) -> Select:
    """PostgreSQL: tables among ``names`` on the search_path with an enabled user trigger."""
    return (
        select(_pg_class.c.relname)
        .distinct()
        .select_from(_pg_trigger.join(_pg_class, _pg_trigger.c.tgrelid == _pg_class.c.oid))
        .where(
            _pg_trigger.c.tgisinternal.is_(False),
            _pg_trigger.c.tgenabled != "D",
            func.pg_catalog.pg_table_is_visible(_pg_class.c.oid),
            _pg_class.c.relname.in_(list(names)),
        )
    )


def sqlite_query(names: Iterable[str]) -> Select:
    """SQLite: tables among ``names`` that a trigger is defined on."""
    return (
        select(_sqlite_master.c.tbl_name)
        .distinct()
        .where(and_(_sqlite_master.c.type == "trigger", func.lower(_sqlite_master.c.tbl_name).in_(list(names))))
    )


_QUERIES = {"mssql": mssql_query, "postgresql": postgresql_query, "sqlite": sqlite_query}


def tables_with_triggers(conn: Connection, tables: Iterable[str]) -> set[str]:
    """The names among ``tables`` that have a trigger, spelt as given (matched case-insensitively)."""
    wanted = {name.lower(): name for name in tables}
    if not wanted:
        return set()
    query = _QUERIES.get(conn.dialect.name)
    if query is None:
        raise NotImplementedError(f"trigger detection is not implemented for {conn.dialect.name}")
    found = conn.execute(query(sorted(wanted))).scalars()
    return {wanted[name.lower()] for name in found if name.lower() in wanted}


def tables_with_triggers_cached(conn: Connection) -> set[str]:
    """The Halo tables halodb writes that have triggers, asked once per database connection
    (an insert on SQL Server checks it for every batch)."""
    if "halodb_triggers" not in conn.info:
        conn.info["halodb_triggers"] = tables_with_triggers(conn, WRITTEN_TABLES)
    return conn.info["halodb_triggers"]
