"""SQL imports: a SELECT against an external database, upserted into users, assets or clients.

Each SQL import is configured in Halo (``sqlimport``): the query, the key field, and Halo's
options - ``defaultsite`` (where users/assets without a site land), ``updateonly`` (never
create), ``dontremoveusers`` (never deactivate), ``dontupdatesite`` (site set on create only).
The query's column names are Halo API field names (use SQL aliases), as in Halo.
Where the source database can fingerprint the query's result (``content``), an import whose
result has not changed since its last complete run is not read again.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, NoSuchModuleError, ArgumentError

from halodb.database import ConnectSettings, engine_for_url, explain_connect_error, mssql_url
from halodb.errors import IntegrationFailed
from halodb.halo import imports
from halodb.integrations import fields
from halodb.integrations.base import check_columns, connection_entity
from halodb.integrations.sqlimport import content
from halodb.sync.engine import one_line
from halodb.sync.entity import Entity, Excluded, ReadContext, SourceRecord

_FETCH = 1000  # rows fetched per round trip from the external database


class SqlImportIntegration:
    name = "SqlImport"

    def entities(self, conn: Connection, settings) -> list[Entity | Excluded]:
        out: list[Entity | Excluded] = []
        for row in imports.sql_imports(conn):
            label = f"SQL import '{row['name'] or row['id']}'"
            entity = imports.SQL_IMPORT_TABLES.get((row["table"] or "").strip().lower())
            if entity is None:
                out.append(Excluded(self.name, str(row["table"]), label, f"unknown target table {row['table']!r}"))
                continue
            keyfield = (row["keyfield"] or fields.DEFAULT_MATCHING[entity]).strip()
            out.append(
                connection_entity(
                    self.name, row["id"], entity, label,
                    read=_reader(row, entity, keyfield, label),
                    match_fields=fields.match_fields(entity, keyfield),
                    create=not row["updateonly"],
                    deactivate=not row["dontremoveusers"],
                    prepare_options={"default_site": row["defaultsite"]} if entity in ("Users", "Assets") else {},
                    create_only=("site_id", "client_id") if row["dontupdatesite"] else (),
                    record_result=_recorder(row["id"]),
                )
            )
        return out


def external_url(row: dict):
    """The external database's URL: a full SQLAlchemy URL in ``sqlserver``, or SQL Server parts."""
    server = (row["sqlserver"] or "").strip()
    if "://" in server:
        return server
    if not server or not row["sqldatabase"]:
        raise IntegrationFailed("no external database configured (sqlserver / sqldatabase are empty)")
    # Halo stores the password encrypted with its own certificate; halodb cannot read it, so a
    # username means SQL authentication that halodb cannot complete yet.
    if row["sqlusername"]:
        raise IntegrationFailed(
            "the SQL login's password is encrypted in Halo; put a full SQLAlchemy URL in the "
            "import's server field, or use Windows authentication (no username)"
        )
    return mssql_url(server=server, database=row["sqldatabase"], username=None, password=None, driver=row["sql_driver"] or None)


def connect_settings(row: dict) -> ConnectSettings:
    """Where a SQL import's connection is configured, as a connect error's hint names it: Halo's
    SQL import fields, never appsettings.json. A full URL in ``sqlserver`` holds every part."""
    if "://" in (row["sqlserver"] or ""):
        where = "the SQL import's sqlserver field (a SQLAlchemy URL)"
        return ConnectSettings(
            driver=f"the driver in {where}",
            database=f"the database in {where}",
            login=f"the username and password in {where}",
            tls=f"TrustServerCertificate (or Encrypt) in {where}",
            url=where,
            server=f"the host and port in {where}",
        )
    return ConnectSettings(
        driver="the SQL import's sql_driver field",
        database="the SQL import's sqldatabase field",
        login="that the account halodb runs as may log in (no sqlusername: Windows authentication)",
        tls="TrustServerCertificate in a full SQLAlchemy URL in the SQL import's sqlserver field",
        url="the SQL import's sqlserver field",
        server="the SQL import's sqlserver field (host, host,port or host\\INSTANCE)",
    )


def _reader(row: dict, entity: str, keyfield: str, label: str):
    sql = (row["sql"] or "").strip().rstrip(";")
    timeout = row["sql_timeout"] or 30

    def read(ctx: ReadContext):
        first_word = sql.split(None, 1)[0].upper() if sql else ""
        if first_word not in ("SELECT", "WITH"):
            raise IntegrationFailed(f"{label}: the query must be a SELECT")
        try:
            source = engine_for_url(external_url(row), connect_timeout=timeout, sqlite_wal=False)
        except (ArgumentError, NoSuchModuleError) as err:
            raise IntegrationFailed(f"{label}: bad external database URL ({err})") from None
        try:
            try:
                conn = source.connect()
            except DBAPIError as err:
                raise IntegrationFailed(f"{label}: {explain_connect_error(err, source.url, connect_settings(row))}") from None
            with conn:
                # The key field decides every record's key: part of what the result stands for.
                settings = f"{entity}|{keyfield}|"
                mark = content.fingerprint(conn, sql)
                if mark is not None and ctx.same_content(settings + mark.value):
                    return
                yield from _rows(conn, sql, entity, keyfield, label)
                if mark is not None and content.still(conn, sql, mark):
                    ctx.set_content(settings + mark.value)
        except DBAPIError as err:
            raise IntegrationFailed(f"{label}: the query failed: {one_line(err)}") from None
        finally:
            source.dispose()

    return read


def _rows(conn: Connection, sql: str, entity: str, keyfield: str, label: str):
    """Stream the query's rows as source records keyed by ``keyfield``."""
    result = conn.execution_options(stream_results=True).execute(text(sql))
    columns = list(result.keys())
    if keyfield not in columns:
        raise IntegrationFailed(f"{label}: the query has no column {keyfield!r} (the key field)")
    # The key field may be a source-only column (an employee number): it keys, it is not written.
    usable = [c for c in columns if c != keyfield or keyfield in fields.allowed_columns(entity)]
    if entity != "Assets":  # other asset columns are the asset type's fields
        check_columns(label, usable, fields.allowed_columns(entity))
    number = 0
    for chunk in result.partitions(_FETCH):
        for values in chunk:
            number += 1
            record = dict(zip(columns, values))
            key = fields.source_key(entity, record, keyfield)
            record = {c: record[c] for c in usable}
            if key is None:  # keyed by row number, so two such rows are not reported as duplicates
                yield SourceRecord(f"(row {number})", record, error=f"row {number}: {keyfield} is empty")
            else:
                yield SourceRecord(key, record)


def _recorder(row_id: int):
    def record(conn: Connection, when: dt.datetime | None, error: str | None) -> None:
        imports.record_sql_import(conn, row_id, when, error)

    return record


integration = SqlImportIntegration()
