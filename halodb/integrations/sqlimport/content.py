"""A SQL import's content fingerprint, taken by the external database itself.

Counting and hashing the query's rows on the source server costs one round trip and no row
transfer, so a scheduled import whose query returns what it returned last time can skip the read
(``ReadContext.same_content``). The fingerprint is order-independent, as a query without ORDER BY
may return its rows in any order: the row count, and the exact sum of a 64-bit hash of each row's
text. The result's column names and types are part of it too, so a renamed column reads again.

The fingerprint and the read then share one snapshot of the source, so the fingerprint stored
after the read is of exactly the rows read: without that, a row changed between the two and back
again after the read would hide the version halodb wrote. Where no snapshot can be had, or the
query cannot be nested in another (``None``), every run reads in full, as before.
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
    """How one kind of source database fingerprints a query: the isolation level that gives the
    fingerprint and the read one snapshot, a query returning no rows (for the column names and
    types), and one returning the row count and the hash sum."""

    isolation: str
    empty: str
    aggregate: str


FORMS = {
    # hashtextextended is the hash behind hash partitioning, so it is stable across upgrades;
    # the record's text keeps NULL and '' apart. A numeric sum cannot overflow.
    "postgresql": Form(
        isolation="REPEATABLE READ",
        empty=f"SELECT * FROM (\n{{sql}}\n) AS {ALIAS} LIMIT 0",
        aggregate=f"SELECT count(*), sum(hashtextextended({ALIAS}::text, 0)::numeric) FROM (\n{{sql}}\n) AS {ALIAS}",
    ),
    # SNAPSHOT needs ALLOW_SNAPSHOT_ISOLATION ON in the source database; without it the first
    # statement fails and the import reads in full. Each row as JSON keeps names, NULLs and types.
    "mssql": Form(
        isolation="SNAPSHOT",
        empty=f"SELECT TOP 0 * FROM (\n{{sql}}\n) AS {ALIAS}",
        aggregate=(
            "SELECT COUNT_BIG(*), SUM(CAST(CAST(CAST(HASHBYTES('SHA2_256', "
            f"(SELECT {ALIAS}.* FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES)) "
            f"AS BINARY(8)) AS BIGINT) AS DECIMAL(38, 0))) FROM (\n{{sql}}\n) AS {ALIAS}"
        ),
    ),
}


def statements(dialect: str, sql: str) -> tuple[str, str] | None:
    """The two statements that fingerprint ``sql`` on ``dialect``, or None where there are none.
    The query stands on lines of its own, so a trailing ``--`` comment cannot swallow the rest."""
    form = FORMS.get(dialect)
    if form is None:
        return None
    if dialect == "mssql" and sql.split(None, 1)[0].upper() == "WITH":
        return None  # T-SQL does not nest a common table expression in a derived table
    return form.empty.format(sql=sql), form.aggregate.format(sql=sql)


def fingerprint(conn: Connection, sql: str) -> str | None:
    """Put ``conn`` in the snapshot its read must share and fingerprint ``sql`` there; None (and
    ``conn`` as it was) when this source cannot."""
    form, pair = FORMS.get(conn.dialect.name), statements(conn.dialect.name, sql)
    if form is None or pair is None:
        return None
    empty, aggregate = pair
    conn.execution_options(isolation_level=form.isolation)
    try:
        description = conn.execute(text(empty)).cursor.description
        columns = [(c[0], _type_name(c[1])) for c in description]
        if any(name.lower() == ALIAS for name, _ in columns):
            raise _Unusable(f"the query has a column named {ALIAS}")
        count, total = conn.execute(text(aggregate)).one()
    except (DBAPIError, _Unusable) as err:
        conn.rollback()
        conn.execution_options(isolation_level=conn.default_isolation_level)
        log.info("no content fingerprint for this SQL import, reading it in full: %s", one_line(err))
        return None
    return hashlib.sha256(json.dumps([conn.dialect.name, columns, count, str(total)]).encode()).hexdigest()


class _Unusable(Exception):
    pass


def _type_name(type_code) -> str:
    # psycopg gives a type OID, pyodbc a Python type.
    return getattr(type_code, "__name__", str(type_code))
