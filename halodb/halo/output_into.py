"""Inserting into a SQL Server table that has triggers, with the new ids back in row order.

SQL Server refuses ``INSERT … OUTPUT inserted.id`` without ``INTO`` on a table with an enabled
trigger (error 334), which is the statement SQLAlchemy uses to return ids. ``OUTPUT … INTO`` a
table variable is allowed, so the batch below inserts one page of rows from a ``VALUES`` list
ordered by a row number, collects the new ids in ``@ids`` and selects them in ascending order.
SQL Server assigns identity values in the order of an ``INSERT … SELECT … ORDER BY`` (the
guarantee SQLAlchemy's own ``sort_by_parameter_order`` rests on), so the n-th smallest id is the
n-th row. Unlike re-selecting the new rows by a key, this needs no unique key in the data and
cannot pick up a row another writer inserted at the same time.

Only the text is built here; ``Repository.insert`` runs it through pyodbc for tables that
``halodb.halo.triggers`` reports. Parameters stay under SQL Server's 2,100 per request.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table
from sqlalchemy.dialects import mssql

MAX_PARAMETERS = 2100
MAX_ROWS = 1000


def rows_per_page(columns: int) -> int:
    """How many rows of ``columns`` parameters one batch may carry."""
    return max(1, min(MAX_ROWS, (MAX_PARAMETERS - 1) // max(columns, 1)))


def batch(table: Table, keys: Sequence[str], rows: int) -> str:
    """The T-SQL batch inserting ``rows`` rows of ``keys`` (``?`` parameters, row by row) into
    ``table`` and returning the new ids, smallest first."""
    quote = mssql.dialect().identifier_preparer.quote
    columns = [quote(table.c[k].name) for k in keys]
    id_column = quote(table.c.id.name)
    values = ",\n".join(f"({', '.join('?' * len(keys))}, {n})" for n in range(rows))
    aliases = ", ".join(f"c{i}" for i in range(len(keys)))
    selected = ", ".join(f"v.c{i}" for i in range(len(keys)))
    return (
        "SET NOCOUNT ON;\n"
        "DECLARE @ids TABLE (id INT NOT NULL);\n"
        f"INSERT INTO {quote(table.name)} ({', '.join(columns)})\n"
        f"OUTPUT inserted.{id_column} INTO @ids\n"
        f"SELECT {selected} FROM (VALUES\n{values}\n) AS v ({aliases}, n)\n"
        "ORDER BY v.n;\n"
        "SELECT id FROM @ids ORDER BY id;"
    )
