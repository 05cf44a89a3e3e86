"""Bulk writes of rows that need no ids back: COPY on PostgreSQL, one executemany elsewhere.

SQL Server gets ``fast_executemany`` from the engine (pyodbc binds the whole batch as arrays and
sends it in one round trip), SQLite a plain executemany. PostgreSQL's executemany pages
multi-row ``VALUES`` statements that the server must parse and plan; ``COPY`` streams the rows
and is several times faster, so links, change rows, audit rows and new Halo rows go that way
there. The COPY runs on the connection's own cursor, so it is part of the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from sqlalchemy import Table, insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (dicts keyed by column keys, all with the same keys) into ``table``."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        copy_rows(conn, table, rows)
    else:
        conn.execute(insert_statement(table), list(rows))


def insert_statement(table: Table):
    """A plain INSERT that fetches nothing back. Without ``inline()`` a batch of one row runs as
    a single execute, for which SQLAlchemy adds ``OUTPUT inserted.id`` on SQL Server to learn the
    new key; SQL Server refuses that on a table with a trigger (error 334), e.g. ``audit``."""
    return insert(table).inline()


def copy_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """PostgreSQL ``COPY … FROM STDIN`` of ``rows`` through psycopg, inside the open transaction."""
    keys = list(rows[0])
    preparer = conn.dialect.identifier_preparer
    columns = ", ".join(preparer.quote(table.c[k].name) for k in keys)
    sql = f"COPY {preparer.format_table(table)} ({columns}) FROM STDIN"
    if not conn.in_transaction():
        conn.begin()  # SQLAlchemy must know of the transaction the COPY opens, or commit() skips it
    raw = conn.connection.driver_connection
    try:
        with raw.cursor() as cur, cur.copy(sql) as copy:
            for row in rows:
                copy.write_row([row[k] for k in keys])
    except psycopg.Error as err:
        # The raw cursor raises the driver's own errors; wrapped as SQLAlchemy would wrap them,
        # the engine rolls the batch back, retries it if transient, and fails the entity cleanly.
        raise DBAPIError.instance(sql, None, err, psycopg.Error) from err
