"""A SQL import's content fingerprint, taken by the external database itself.

Counting and hashing the query's rows on the source server costs one round trip and no row
transfer, so a scheduled import whose query returns what it returned last time can skip the read
(``ReadContext.same_content``). The fingerprint is order-independent, as a query without ORDER BY
may return its rows in any order: the row count, and the exact sum of a 64-bit hash of each row's
text. The result's column names and types are part of it too, so a renamed column reads again.

The fingerprint stored after a read must be of exactly the rows read: otherwise a row changed
between the fingerprint and the read, and changed back later, would hide the version halodb
wrote. Where the source can, the fingerprint and the read share one snapshot. Where it cannot
(SQL Server without ALLOW_SNAPSHOT_ISOLATION), the fingerprint is taken again after the read and
kept only if it did not move; that leaves one gap, a row changed during the read and changed back
before it ended. Where no fingerprint can be had, or the query cannot be nested in another
(``None``), every run reads in full, as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from halodb.sync.engine import one_line

log = logging.getLogger(__name__)

ALIAS = "_halodb_row"  # the query's result, nested; a column of that name makes the fingerprint refuse


@dataclass(frozen=True)
class Form:
    """How one kind of source database fingerprints a query: the isolation levels to try, each
    with whether it gives the fingerprint and the read one snapshot, a query returning no rows
    (for the column names and types), and one returning the row count and the hash sum."""

    isolations: tuple[tuple[str, bool], ...]
    empty: str
    aggregate: str


FORMS = {
    # hashtextextended is the hash behind hash partitioning, so it is stable across upgrades;
    # the record's text keeps NULL and '' apart. A numeric sum cannot overflow.
    "postgresql": Form(
        isolations=(("REPEATABLE READ", True),),
        empty=f"SELECT * FROM (\n{{sql}}\n) AS {ALIAS} LIMIT 0",
        aggregate=f"SELECT count(*), sum(hashtextextended({ALIAS}::text, 0)::numeric) FROM (\n{{sql}}\n) AS {ALIAS}",
    ),
    # SNAPSHOT needs ALLOW_SNAPSHOT_ISOLATION ON in the source database; where it is off the
    # first statement fails and READ COMMITTED follows. Each row as JSON keeps names, NULLs, types.
    "mssql": Form(
        isolations=(("SNAPSHOT", True), ("READ COMMITTED", False)),
        empty=f"SELECT TOP 0 * FROM (\n{{sql}}\n) AS {ALIAS}",
        aggregate=(
            "SELECT COUNT_BIG(*), SUM(CAST(CAST(CAST(HASHBYTES('SHA2_256', "
            f"(SELECT {ALIAS}.* FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES)) "
            f"AS BINARY(8)) AS BIGINT) AS DECIMAL(38, 0))) FROM (\n{{sql}}\n) AS {ALIAS}"
        ),
    ),
}


@dataclass(frozen=True)
class Mark:
    """A fingerprint, and whether the read that follows shares its snapshot."""

    value: str
    snapshot: bool


def statements(dialect: str, sql: str) -> tuple[str, str] | None:
    """The two statements that fingerprint ``sql`` on ``dialect``, or None where there are none.
    The query stands on lines of its own, so a trailing ``--`` comment cannot swallow the rest."""
    form = FORMS.get(dialect)
    if form is None:
        return None
    if dialect == "mssql" and sql.split(None, 1)[0].upper() == "WITH":
        return None  # T-SQL does not nest a common table expression in a derived table
    return form.empty.format(sql=sql), form.aggregate.format(sql=sql)


def fingerprint(conn: Connection, sql: str) -> Mark | None:
    """Put ``conn`` in the isolation its read must keep and fingerprint ``sql`` there; None (and
    ``conn`` as it was) when this source cannot."""
    form, pair = FORMS.get(conn.dialect.name), statements(conn.dialect.name, sql)
    if form is None or pair is None:
        return None
    for isolation, snapshot in form.isolations:
        conn.execution_options(isolation_level=isolation)
        try:
            return Mark(_take(conn, *pair), snapshot)
        except (DBAPIError, _Unusable) as err:
            conn.rollback()
            failure = err
            if isinstance(err, _Unusable):
                break
    conn.execution_options(isolation_level=conn.default_isolation_level)
    log.info("no content fingerprint for this SQL import, reading it in full: %s", one_line(failure))
    return None


def still(conn: Connection, sql: str, mark: Mark) -> bool:
    """After the read: whether ``mark`` is the fingerprint of the rows it returned. A snapshot
    guarantees it; otherwise the fingerprint is taken again, and must not have moved."""
    if mark.snapshot:
        return True
    try:
        return _take(conn, *statements(conn.dialect.name, sql)) == mark.value
    except (DBAPIError, _Unusable) as err:
        log.info("the SQL import's content fingerprint could not be taken again: %s", one_line(err))
        return False


def _take(conn: Connection, empty: str, aggregate: str) -> str:
    description = conn.execute(text(empty)).cursor.description
    columns = [(c[0], _type_name(c[1])) for c in description]
    if any(name.lower() == ALIAS for name, _ in columns):
        raise _Unusable(f"the query has a column named {ALIAS}")
    count, total = conn.execute(text(aggregate)).one()
    return hashlib.sha256(json.dumps([conn.dialect.name, columns, count, str(total)]).encode()).hexdigest()


class _Unusable(Exception):
    pass


def _type_name(type_code) -> str:
    # psycopg gives a type OID, pyodbc a Python type.
    return getattr(type_code, "__name__", str(type_code))
