"""The shared machinery of the built-in API: set-based reads and writes that follow Halo's rules.

Every operation takes and returns batches. Records are dicts keyed by Halo API field names (the
readable column keys of ``halodb.halo.schema``); callers never see a Halo column name.

Halo's write rules, applied here so no caller can forget them:
* every insert and update stamps the table's ``*lastupdate`` column;
* every changed field of an existing record gets an ``audit`` row attributed to the integrator
  agent (``control.loginas_halointegrator``);
* records are marked inactive, never deleted;
* records whose ``*locked`` flag is set are reported as locked and left alone (the engine checks
  ``Repository.is_locked`` before it plans an update).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from operator import itemgetter
from typing import Any

from sqlalchemy import Boolean, DateTime, Integer, SmallInteger, Table, any_, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection

from halodb import bulk
from halodb.halo import output_into
from halodb.halo.triggers import tables_with_triggers_cached
from halodb.errors import RecordError
from halodb.halo import audit

# SQL Server refuses more than 2,100 parameters in one request; IN lists stay well under it.
IN_LIST_LIMIT = 2000


def keyed(*columns) -> list:
    """Columns labelled with their readable keys, so result rows say ``emailaddress``, not ``uemail``."""
    return [c.label(c.key) for c in columns]


def chunks(items: Sequence, size: int = IN_LIST_LIMIT) -> Iterator[Sequence]:
    """Slices of ``items`` no longer than ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def among(conn: Connection, column, values: Sequence):
    """``column IN (values)``, or on PostgreSQL ``column = ANY(:array)``.

    PostgreSQL gets the whole list as one array parameter: 2,000 scalar parameters cost more to
    bind and plan than the lookup itself. Other databases get a plain IN list (keep ``values``
    within ``IN_LIST_LIMIT`` for SQL Server)."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)


@dataclass(frozen=True)
class WriteContext:
    """Who writes and when: every row written in one batch carries the same stamp."""

    agent_id: int | None
    now: dt.datetime


@dataclass(frozen=True)
class FieldChange:
    """One field of one Halo record going from ``old`` to ``new``."""

    field: str
    old: Any
    new: Any


def normalise_key(value: Any) -> Any:
    """Match keys compare the way SQL Server's default collation does: trimmed, case-insensitive."""
    if isinstance(value, str):
        return value.strip().lower()
    return value


def match_key(values: Iterable[Any]) -> tuple | None:
    """The normalised key of one record's match values, or None if any of them is empty."""
    key = tuple(normalise_key(v) for v in values)
    return None if any(v in (None, "") for v in key) else key


class Repository:
    """Set-based access to one Halo entity. Subclasses declare the table and its fields."""

    table: Table
    #: How Halo names the table in audit rows.
    audit_name: str
    #: API fields a source may write (column keys of ``table``).
    writable: tuple[str, ...]
    #: Fields a new record must have after ``prepare``.
    required: tuple[str, ...] = ("name",)
    inactive_field = "inactive"
    locked_field: str | None = "locked"
    lastupdate_field: str | None = "lastupdate"
    created_field: str | None = None
    #: Halo data ``prepare`` looks records up in (sites by name, a site's client...): column
    #: tuples whose rows ``reference_fingerprint`` hashes.
    references: tuple[tuple, ...] = ()

    # -- reading ---------------------------------------------------------------------------------

    def count(self, conn: Connection, *, active_only: bool = True) -> int:
        """How many records there are (active ones only by default)."""
        stmt = select(func.count()).select_from(self.table)
        if active_only:
            stmt = stmt.where(self.table.c[self.inactive_field] == False)  # noqa: E712
        return conn.execute(stmt).scalar_one()

    def current(self, conn: Connection, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """The stored values of ``writable`` (plus inactive and locked) for ``ids``."""
        cols = [self.table.c.id] + [self.table.c[f] for f in self._read_fields()]
        out: dict[int, dict[str, Any]] = {}
        for part in chunks(list(ids)):
            for row in conn.execute(select(*keyed(*cols)).where(among(conn, self.table.c.id, part))).mappings():
                values = dict(row)
                out[values.pop("id")] = values
        return out

    def top_id(self, conn: Connection) -> int | None:
        """The highest record id (ids grow: every record added later has a higher one)."""
        return conn.execute(select(func.max(self.table.c.id))).scalar()

    def match_rows(self, conn: Connection, fields: Sequence[str], after: int | None, up_to: int) -> Iterator[tuple]:
        """(id, *fields) of the records with ids in (``after``, ``up_to``], served by the primary
        key; all records up to ``up_to`` when ``after`` is None."""
        stmt = select(self.table.c.id, *(self.table.c[f] for f in fields)).where(self.table.c.id <= up_to)
        if after is not None:
            stmt = stmt.where(self.table.c.id > after)
        return iter(conn.execute(stmt))

    def find(self, conn: Connection, fields: tuple[str, ...], values: Iterable[tuple]) -> dict[tuple, list[int]]:
        """Halo ids of records whose ``fields`` equal each of ``values`` (trimmed, any case)."""
        wanted = {key for key in map(match_key, values) if key is not None}
        if not wanted:
            return {}
        first = self.table.c[fields[0]]
        probe = sorted({w[0] for w in wanted}, key=str)
        # Both sides trimmed and lower-cased (LTRIM/RTRIM: SQL Server 2016 has no TRIM).
        first_expr = func.lower(func.ltrim(func.rtrim(first))) if isinstance(probe[0], str) else first
        cols = [self.table.c.id] + [self.table.c[f] for f in fields]
        found: dict[tuple, list[int]] = defaultdict(list)
        for part in chunks(probe):
            for row in conn.execute(select(*cols).where(first_expr.in_(part))):
                key = match_key(row[1:])
                if key in wanted:
                    found[key].append(row[0])
        return dict(found)

    def reference_fingerprint(self, conn: Connection) -> str:
        """A digest of the Halo data ``prepare`` resolves against, read once per run.

        The engine salts each source record's hash with it: when a site moves to another client
        or is renamed, every record is prepared and compared again, not just the changed ones."""
        if not self.references:
            return ""
        digest = hashlib.sha1()
        for columns in self.references:
            for row in conn.execute(select(*columns).order_by(*columns)):
                digest.update(repr(tuple(row)).encode())
            digest.update(b"|")
        return digest.hexdigest()

    def is_locked(self, stored: Mapping[str, Any]) -> bool:
        return bool(self.locked_field and stored.get(self.locked_field))

    def _read_fields(self) -> list[str]:
        extra = [self.inactive_field] + ([self.locked_field] if self.locked_field else [])
        return list(dict.fromkeys([*self.writable, *extra]))

    # -- preparing source records ---------------------------------------------------------------

    def prepare(self, conn: Connection, records: Sequence[Mapping[str, Any]], *, known: Any = None) -> list[dict | RecordError]:
        """Turn API-field records into rows ready to write, one result (or error) per record.

        Subclasses resolve references (a site by name, a client by name) in one query per batch
        and then call ``coerce`` for the plain fields. ``known`` is the run's memory of what
        earlier batches looked up (``new_known``); a repository that keeps none ignores it.
        """
        return [self._try(self.coerce, record) for record in records]

    def new_known(self) -> Any:
        """A fresh memory of looked-up references for one run, handed to ``prepare`` and
        ``prepare_known`` with every batch of the run (None: this repository keeps none)."""
        return None

    def prepare_known(self, records: Sequence[Mapping[str, Any]], known: Any, **options: Any) -> list[dict | RecordError] | None:
        """``prepare`` without the database, from what ``known`` holds; None when that is not
        enough (or, as here, when the repository cannot prepare without the database). The
        engine prepares the next batch this way while PostgreSQL stores the last one."""
        return None

    @staticmethod
    def _try(fn, *args) -> dict | RecordError:
        try:
            return fn(*args)
        except RecordError as err:
            return err

    @cached_property
    def _converters(self) -> dict[str, Callable[[Any], Any]]:
        return {name: converter(self.table.c[name].type, name) for name in self.writable}

    @cached_property
    def _text_limits(self) -> dict[str, int | None]:
        """Text columns among ``writable`` and their lengths: the fields whose converter is
        ``_to_text``, whose rules ``coerce`` runs inline for plain strings."""
        return {name: c.keywords["length"] for name, c in self._converters.items() if c.func is _to_text}

    @cached_property
    def _int_fields(self) -> frozenset[str]:
        """Whole-number columns among ``writable``: an ``int`` for one is kept as it is."""
        return frozenset(name for name, c in self._converters.items() if c.func is _to_int)

    def coerce(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Check field names and convert values to the column types; raise RecordError if bad."""
        row: dict[str, Any] = {}
        converters, text_limits, int_fields = self._converters, self._text_limits, self._int_fields
        # Runs for every field of every record of a first load (1.2 million times for 100,000
        # users), so the common cases skip the converter call: a string for a text column gets
        # _to_text's rules inline, and an int for a whole-number column and a None for any
        # known column are kept as they are, as their converters would keep them.
        for name, value in record.items():
            kind = type(value)
            if kind is str and name in text_limits:
                value = value.strip()
                limit = text_limits[name]
                if limit and len(value) > limit:
                    raise RecordError(f"{name} is longer than {limit} characters")
                row[name] = value or None
            elif (kind is int and name in int_fields) or (value is None and name in converters):
                row[name] = value
            else:
                convert = converters.get(name)
                if convert is None:
                    raise RecordError(f"unknown {self.audit_name.lower()} field {name!r}")
                row[name] = convert(value)
        return self._complete(row)

    def _complete(self, row: dict[str, Any]) -> dict[str, Any]:
        """The rules for a whole converted row: active unless it says otherwise, and every
        required field given; RecordError names the first one missing."""
        if row.get(self.inactive_field) is None:
            row[self.inactive_field] = False
        for name in self.required:
            if row.get(name) in (None, ""):
                raise RecordError(f"{name} is empty")
        return row

    # -- writing ---------------------------------------------------------------------------------

    def insert(self, conn: Connection, rows: Sequence[Mapping[str, Any]], ctx: WriteContext) -> list[int]:
        """Insert new records; return their Halo ids in the order of ``rows``."""
        if not rows:
            return []
        stamp = self._stamp({}, ctx, created=True)
        keys = sorted({k for r in rows for k in r}.union(stamp))
        # One statement needs one shape: a key some rows lack gets the column's default, never
        # an explicit NULL that a NOT NULL flag would refuse.
        defaults = {k: _scalar_default(self.table.c[k]) for k in keys}
        if conn.dialect.name == "postgresql":
            return self._insert_by_copy(conn, keys, rows, defaults, stamp)
        params = [{**defaults, **r, **stamp} for r in rows]
        if conn.dialect.name == "mssql" and self.table.name in tables_with_triggers_cached(conn):
            return self._insert_output_into(conn, keys, params)
        # SQL Server: INSERT … OUTPUT inserted.id in pages under the 2,100-parameter limit, the
        # ids sorted back into parameter order by SQLAlchemy; SQLite: INSERT … RETURNING.
        stmt = insert(self.table).returning(self.table.c.id, sort_by_parameter_order=True)
        return [row[0] for row in conn.execute(stmt, params)]

    def _insert_output_into(self, conn: Connection, keys: list[str], params: list[dict]) -> list[int]:
        """SQL Server, table with triggers: ``OUTPUT … INTO @ids`` pages (see ``output_into``)."""
        ids: list[int] = []
        for page in chunks(params, output_into.rows_per_page(len(keys))):
            flat = tuple(row[k] for row in page for k in keys)
            new = [r[0] for r in conn.exec_driver_sql(output_into.batch(self.table, keys, len(page)), flat)]
            if len(new) != len(page):
                raise RuntimeError(f"{self.table.name}: inserted {len(page)} rows but got {len(new)} ids back")
            ids.extend(new)
        return ids

    def _insert_by_copy(self, conn: Connection, keys: list[str], rows: Sequence[Mapping[str, Any]], defaults: dict, stamp: dict) -> list[int]:
        """PostgreSQL: take the ids from the table's sequence first, then COPY rows that carry them.

        Each row's id is known before it is written, so nothing has to be read back or sorted, and
        the rows stream in one COPY instead of pages of multi-row INSERT … RETURNING. Each COPY
        tuple is taken from its row directly; only a batch with a row that lacks a field merges
        every row with the defaults first (0.07 s more per 100,000 rows)."""
        ids = self._take_ids(conn, len(rows))
        # COPY sends text, and psycopg renders a datetime at about 0.65 µs: the two stamps of
        # every row took 0.13 s of a 100,000-user first load. The batch's stamp is one value.
        fixed = {k: bulk.copy_text(v) for k, v in stamp.items()}
        tail = tuple(fixed.values())
        fields = [k for k in keys if k not in fixed]  # a stamp a row carries is overwritten
        pick = itemgetter(*fields) if len(fields) > 1 else (lambda row: tuple(row[k] for k in fields))
        try:
            values = [(i, *pick(r), *tail) for i, r in zip(ids, rows)]
        except KeyError:
            values = [(i, *pick({**defaults, **r}), *tail) for i, r in zip(ids, rows)]
        bulk.copy_values(conn, self.table, ["id", *fields, *fixed], values)
        return ids

    def _take_ids(self, conn: Connection, count: int) -> list[int]:
        """``count`` new ids from the table's sequence (PostgreSQL).

        The sequence's name is an uncorrelated subquery, resolved once per statement: written as a
        plain argument, PostgreSQL resolved it again for every id (0.3 s of a 100,000-row first
        load against 0.04 s). The driver's rows are taken as they are, without SQLAlchemy's."""
        result = conn.exec_driver_sql(
            "SELECT nextval((SELECT pg_get_serial_sequence(%(table)s, %(column)s)::regclass)) FROM generate_series(1, %(n)s)",
            # The table as SQL names it: pg_get_serial_sequence parses it like an identifier.
            {"table": conn.dialect.identifier_preparer.format_table(self.table), "column": self.table.c.id.name, "n": count},
        )
        rows = result.cursor.fetchall()
        result.close()
        return [row[0] for row in rows]

    def update(
        self, conn: Connection, changes: Sequence[tuple[int, Sequence[FieldChange]]], ctx: WriteContext
    ) -> int:
        """Write changed fields of existing records, with one audit row per changed field.

        Records with the same set of changed fields share one executemany statement.
        """
        groups: dict[tuple[str, ...], list[dict]] = defaultdict(list)
        audit_rows = []
        for halo_id, fields in changes:
            if not fields:
                continue
            names = tuple(sorted(c.field for c in fields))
            groups[names].append({"_id": halo_id, **{f"_v_{c.field}": c.new for c in fields}})
            audit_rows.extend(audit.row(self.audit_name, halo_id, c.field, c.old, c.new, ctx) for c in fields)
        for names, params in groups.items():
            values = {name: bindparam(f"_v_{name}") for name in names}
            if self.lastupdate_field:
                values[self.lastupdate_field] = ctx.now
            stmt = update(self.table).where(self.table.c.id == bindparam("_id")).values(values)
            conn.execute(stmt, params)
        audit.write(conn, audit_rows)
        return sum(len(p) for p in groups.values())

    def set_inactive(self, conn: Connection, ids: Sequence[int], inactive: bool, ctx: WriteContext) -> int:
        """Mark records inactive (or active again) and audit the change; never deletes."""
        changes = [(i, [FieldChange(self.inactive_field, not inactive, inactive)]) for i in ids]
        return self.update(conn, changes, ctx)

    def _stamp(self, row: dict, ctx: WriteContext, *, created: bool) -> dict:
        if self.lastupdate_field:
            row[self.lastupdate_field] = ctx.now
        if created and self.created_field:
            row[self.created_field] = ctx.now
        return row

    # -- comparing -------------------------------------------------------------------------------

    def diff(self, stored: Mapping[str, Any], desired: Mapping[str, Any]) -> list[FieldChange]:
        """Fields whose desired value differs from the stored one."""
        return [
            FieldChange(name, stored.get(name), value)
            for name, value in desired.items()
            if not same_value(stored.get(name), value)
        ]


def _scalar_default(column) -> Any:
    default = column.default
    return default.arg if default is not None and default.is_scalar else None


# -- value conversion ---------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "y", "on", "-1"}
_FALSE = {"0", "false", "no", "n", "off", ""}


def coerce_value(type_, value: Any, name: str) -> Any:
    """Convert a source value to what the column holds; ``RecordError`` names the field if it can't."""
    return converter(type_, name)(value)


def converter(type_, name: str) -> Callable[[Any], Any]:
    """The conversion ``coerce_value`` does for one column, chosen once (``coerce`` runs it for
    every field of every record of a first load)."""
    if isinstance(type_, Boolean):
        return partial(_to_bool, name=name)
    if isinstance(type_, (Integer, SmallInteger)):
        return partial(_to_int, name=name)
    if isinstance(type_, DateTime):
        return partial(_to_datetime, name=name)
    return partial(_to_text, name=name, length=getattr(type_, "length", None))


def _to_bool(value: Any, name: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise RecordError(f"{name} must be true or false (got {value!r})")


def _to_int(value: Any, name: str) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str):
        value = value.strip()
        if value == "":
            return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RecordError(f"{name} must be a whole number (got {value!r})") from None
    if not number.is_integer():
        raise RecordError(f"{name} must be a whole number (got {value!r})")
    return int(number)


def _to_datetime(value: Any, name: str) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    text = str(value).strip()
    if text == "":
        return None
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise RecordError(f"{name} must be a date and time (got {value!r})") from None


def _to_text(value: Any, name: str, length: int | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))  # spreadsheets hand phone numbers and codes over as floats
    else:
        text = str(value).strip()
    if text == "":
        return None
    if length and len(text) > length:
        raise RecordError(f"{name} is longer than {length} characters")
    return text


def same_value(stored: Any, desired: Any) -> bool:
    """Equality as a Halo user would judge it: '' equals NULL, 1 equals True."""
    if stored in ("", None) and desired in ("", None):
        return True
    if isinstance(desired, bool) or isinstance(stored, bool):
        return bool(stored) == bool(desired)
    return stored == desired
