"""Record every statement an engine executes and prove it is valid T-SQL for SQL Server.

No SQL Server runs on a development machine, yet production sends every statement to one. So a
test drives halodb on SQLite with a ``StatementRecorder`` attached, and ``check_tsql`` compiles
each recorded statement *element* (not the SQLite string) for the production dialect
(``mssql+pyodbc``, qmark, ``fast_executemany``) with the recorded parameters rendered as literals,
and parses the result with sqlglot's T-SQL reader.

What sqlglot cannot parse (checked in this module, see ``NARROW_FORMS``):

* ``SET IDENTITY_INSERT <table> ON|OFF`` - sqlglot falls back to an opaque ``Command``. The mssql
  dialect sends it around an INSERT that gives an IDENTITY column a value; it is verified by a
  regex of its only legal form instead.
* table hints written without commas (``WITH (UPDLOCK ROWLOCK)``) - legal T-SQL, but sqlglot
  wants ``WITH (UPDLOCK, ROWLOCK)``. Nothing in halodb emits them yet; a statement with such a
  hint is verified by a regex of the hint and the rest of the statement is parsed with the hint
  list comma-separated.

A parse that "succeeds" as ``exp.Command`` (sqlglot's fallback for syntax it does not know) is
treated as a failure unless a narrow form matches: nothing is skipped silently.

sqlglot's T-SQL reader is also *lenient*: it accepts ``LIMIT 5``, ``INSERT OR REPLACE``,
``RETURNING`` and ``TRUE`` and quietly turns them into T-SQL. So a parse alone would pass a
PostgreSQL/SQLite-ism; ``FOREIGN_SYNTAX`` rejects such tokens (outside string literals) first.
"""

from __future__ import annotations

import datetime as dt
import decimal
import inspect
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlglot
from sqlalchemy import create_engine, event
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.dml import Insert, UpdateBase
from sqlalchemy.sql.elements import TextClause
from sqlglot import exp

import halodb

HALODB_DIR = Path(halodb.__file__).resolve().parent
MSSQL_URL = "mssql+pyodbc://u:p@h/db?driver=ODBC+Driver+18+for+SQL+Server"


def production_dialect():
    """The dialect production uses: ``engine_for_url`` makes mssql engines with fast_executemany."""
    try:  # needs the pyodbc module (not a server, not a driver): qmark paramstyle as in production
        return create_engine(MSSQL_URL, fast_executemany=True).dialect
    except ImportError:  # pragma: no cover - pyodbc is a halodb dependency
        from sqlalchemy.dialects.mssql import pyodbc

        return pyodbc.dialect(paramstyle="qmark", fast_executemany=True)


MSSQL = production_dialect()
_SQLITE = sqlite.dialect()

#: Legal T-SQL sqlglot cannot parse, with the regex of the known-good form that replaces the parse.
NARROW_FORMS: dict[str, re.Pattern] = {
    "SET IDENTITY_INSERT": re.compile(r"SET IDENTITY_INSERT (\[[^\]]+\]|\w+)(\.(\[[^\]]+\]|\w+))? (ON|OFF)"),
}
#: Syntax of other dialects that sqlglot's T-SQL reader accepts but SQL Server rejects.
FOREIGN_SYNTAX: dict[str, re.Pattern] = {
    "LIMIT": re.compile(r"\bLIMIT\b", re.I),
    "RETURNING": re.compile(r"\bRETURNING\b", re.I),
    "ON CONFLICT / ON DUPLICATE KEY": re.compile(r"\bON\s+(CONFLICT|DUPLICATE\s+KEY)\b", re.I),
    "INSERT OR REPLACE/IGNORE": re.compile(r"\bINSERT\s+OR\s+(REPLACE|IGNORE)\b", re.I),
    "TRUE/FALSE literal": re.compile(r"\b(TRUE|FALSE)\b", re.I),
    "ILIKE": re.compile(r"\bILIKE\b", re.I),
    ":: cast": re.compile(r"::"),
    "|| concatenation": re.compile(r"\|\|"),
    "AUTOINCREMENT / SERIAL": re.compile(r"\b(AUTOINCREMENT|AUTO_INCREMENT|SERIAL|BIGSERIAL)\b", re.I),
    "backtick quoting": re.compile(r"`"),
}
_STRING = re.compile(r"N?'(?:[^']|'')*'")
_HINTS = r"(NOLOCK|READPAST|UPDLOCK|HOLDLOCK|ROWLOCK|PAGLOCK|TABLOCK|TABLOCKX|XLOCK|SERIALIZABLE|READCOMMITTED|NOWAIT)"
_HINT_LIST = re.compile(rf"WITH \(({_HINTS}(\s*,?\s*{_HINTS})*)\)", re.IGNORECASE)


# -- recording --------------------------------------------------------------------------------------


@dataclass
class Recorded:
    """One distinct statement shape and the first parameters it ran with."""

    element: ClauseElement
    params: dict[str, Any] | None  # the first parameter set (of an executemany: its first row)
    many: list[dict[str, Any]] = field(default_factory=list)  # first two rows of an executemany
    origins: set[str] = field(default_factory=set)  # halodb modules that executed it
    executions: int = 0

    @property
    def origin(self) -> str:
        return ", ".join(sorted(self.origins)) or "?"

    def describe(self) -> str:
        return f"{type(self.element).__name__} from {self.origin}: {sqlite_key(self.element, self.params, bool(self.many))[:300]}"


def sqlite_key(element: ClauseElement, params: Mapping | None, many: bool) -> str:
    """The statement as SQLite sees it, per set of inserted/updated columns: the dedup key."""
    keys = list(params) if isinstance(element, UpdateBase) and params else None
    text = str(element.compile(dialect=_SQLITE, column_keys=keys))
    return text + (" -- executemany" if many else "")


def calling_module() -> str | None:
    """The halodb module nearest the execute() call (the innermost frame inside halodb/)."""
    frame = inspect.currentframe()
    try:
        while frame is not None:
            filename = frame.f_code.co_filename
            if filename.startswith(str(HALODB_DIR)) and "site-packages" not in filename:
                return frame.f_globals.get("__name__")
            frame = frame.f_back
        return None
    finally:
        del frame


class StatementRecorder:
    """Attach to an engine; every executed ClauseElement is kept once per shape with its params.

    ``statements``: ClauseElements (incl. text()) by SQLite string; ``driver_sql``: strings sent
    with ``exec_driver_sql`` (no element to compile for mssql: backend-specific by construction).
    """

    def __init__(self, engine: Engine | None = None):
        self.statements: dict[str, Recorded] = {}
        self.driver_sql: dict[str, set[str]] = {}
        self.executions = 0
        self._engine: Engine | None = None
        if engine is not None:
            self.attach(engine)

    def attach(self, engine: Engine) -> "StatementRecorder":
        self._engine = engine
        event.listen(engine, "before_execute", self._before_execute)
        event.listen(engine, "before_cursor_execute", self._before_cursor_execute)
        return self

    def detach(self) -> None:
        if self._engine is not None:
            event.remove(self._engine, "before_execute", self._before_execute)
            event.remove(self._engine, "before_cursor_execute", self._before_cursor_execute)
            self._engine = None

    def __enter__(self) -> "StatementRecorder":
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    def _before_execute(self, conn, element, multiparams, params, execution_options):
        if not isinstance(element, ClauseElement):
            return  # a DefaultGenerator or similar: no SQL of its own
        rows = [dict(p) for p in multiparams] if multiparams else ([dict(params)] if params else [])
        many = len(rows) > 1
        first = rows[0] if rows else None
        key = sqlite_key(element, first, many)
        rec = self.statements.get(key)
        if rec is None:
            rec = self.statements[key] = Recorded(element, first, rows[:2] if many else [])
        rec.executions += 1
        self.executions += 1
        module = calling_module()
        if module:
            rec.origins.add(module)

    def _before_cursor_execute(self, conn, cursor, statement, parameters, context, executemany):
        if context is not None and getattr(context, "compiled", None) is None:
            self.driver_sql.setdefault(statement, set()).add(calling_module() or "?")

    # -- views -------------------------------------------------------------------------------------

    @property
    def elements(self) -> list[Recorded]:
        """Recorded SQLAlchemy constructs (not text())."""
        return [r for r in self.statements.values() if not isinstance(r.element, TextClause)]

    @property
    def texts(self) -> list[Recorded]:
        """Recorded text() statements: raw SQL whose dialect the code chose."""
        return [r for r in self.statements.values() if isinstance(r.element, TextClause)]

    def origins(self) -> set[str]:
        return {o for r in self.statements.values() for o in r.origins}


# -- checking ---------------------------------------------------------------------------------------


@dataclass
class TsqlCheck:
    """What ``check_tsql`` verified for one statement."""

    sql: str  # the batch as SQL Server would receive it, literals in place of parameters
    parsed: list[exp.Expression]
    narrow: list[str] = field(default_factory=list)  # names of NARROW_FORMS used
    placeholders: int = 0  # parameters left as ? (no literal form for their type)


def check_tsql(element: ClauseElement, params: Mapping | None = None, *, many: Sequence[Mapping] = ()) -> str:
    """Compile ``element`` for mssql+pyodbc with ``params`` as literals and parse it as T-SQL.

    ``many`` (two or more rows of an executemany) renders the form SQL Server receives for an
    executemany: for an INSERT with RETURNING that is insertmanyvalues' ``OUTPUT inserted.id ...
    SELECT ... FROM (VALUES ...) ORDER BY sen_counter``. Returns the T-SQL; raises AssertionError
    naming the statement when it does not parse.
    """
    return check(element, params, many=many).sql


def check(element: ClauseElement, params: Mapping | None = None, *, many: Sequence[Mapping] = ()) -> TsqlCheck:
    name = f"{type(element).__name__} {str(element.compile(dialect=_SQLITE))[:200]!r}"
    if isinstance(element, TextClause):
        statements, left = [element.text], 0
    else:
        try:
            statements, left = _render(element, dict(params) if params else None, [dict(m) for m in many])
        except Exception as err:  # noqa: BLE001 - a statement mssql cannot compile is the finding
            raise AssertionError(f"{name} does not compile for mssql+pyodbc: {type(err).__name__}: {err}") from err
    parsed, narrow = [], []
    for sql in statements:
        trees, used = _parse(sql, name)
        parsed.extend(trees)
        narrow.extend(used)
    return TsqlCheck(";\n".join(statements), parsed, narrow, left)


def _parse(sql: str, name: str) -> tuple[list[exp.Expression], list[str]]:
    for form, pattern in NARROW_FORMS.items():
        if sql.strip().upper().startswith(form):
            if not pattern.fullmatch(sql.strip()):
                raise AssertionError(f"{name}: {sql!r} is not the known-good form of {form}")
            return [], [form]
    code = _STRING.sub("''", sql)
    for what, pattern in FOREIGN_SYNTAX.items():
        if pattern.search(code):
            raise AssertionError(f"{name}: {what} is not T-SQL (sqlglot would accept it):\n{sql}")
    used = []
    target = sql
    if _HINT_LIST.search(sql):  # sqlglot needs commas between table hints; T-SQL does not
        target = _HINT_LIST.sub(lambda m: "WITH (" + ", ".join(re.findall(_HINTS, m.group(1), re.I)) + ")", sql)
        used.append("table hints")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trees = [t for t in sqlglot.parse(target, read="tsql", error_level=sqlglot.ErrorLevel.RAISE) if t is not None]
    except sqlglot.errors.SqlglotError as err:
        raise AssertionError(f"{name} is not valid T-SQL per sqlglot:\n{sql}\n{err}") from err
    if not trees:
        raise AssertionError(f"{name}: compiled to nothing:\n{sql!r}")
    opaque = [t for t in trees if isinstance(t, exp.Command)]
    if opaque:
        raise AssertionError(f"{name}: sqlglot only parsed {opaque[0].sql('tsql')[:80]!r} as an opaque command; add a narrow form:\n{sql}")
    return trees, used


def _render(element: ClauseElement, params: dict | None, many: list[dict]) -> tuple[list[str], int]:
    """The statement(s) the mssql dialect sends, with parameters replaced by literals."""
    keys = list(params) if params and isinstance(element, UpdateBase) else None
    is_many = len(many) > 1
    compiled = element.compile(
        dialect=MSSQL, column_keys=keys, for_executemany=is_many, compile_kwargs={"render_postcompile": True}
    )
    imv = getattr(compiled, "_insertmanyvalues", None)
    use_imv = is_many and imv is not None and (compiled.effective_returning or MSSQL.use_insertmanyvalues_wo_returning)
    if use_imv:
        cps = [compiled.construct_params(p, _check=False) for p in many]
        rows = [tuple(cp.get(k) for k in compiled.positiontup) for cp in cps] if compiled.positional else cps
        batches = list(
            compiled._deliver_insertmanyvalues_batches(
                compiled.string, rows, cps, None, 1000, bool(getattr(element, "_sort_by_parameter_order", False)), None
            )
        )
        sql, values = batches[0].replaced_statement, batches[0].replaced_parameters
        text, left = _inline(sql, list(values) if compiled.positional else values)
    else:
        bound = compiled.construct_params(params or {}, _check=False)
        values = [bound.get(k) for k in compiled.positiontup] if compiled.positional else bound
        text, left = _inline(compiled.string, values)
    statements = [text]
    table = _identity_insert_table(element, compiled, params)
    if table is not None:  # what MSExecutionContext.pre_exec / post_exec send around the insert
        statements = [f"SET IDENTITY_INSERT {table} ON", text, f"SET IDENTITY_INSERT {table} OFF"]
    return statements, left


def _identity_insert_table(element, compiled, params) -> str | None:
    if not isinstance(element, Insert) or not params:
        return None
    table = element.table
    identity = table._autoincrement_column
    if identity is None:
        return None
    if identity.key in params and params[identity.key] is not None:
        return MSSQL.identifier_preparer.format_table(table)
    return None


def _inline(sql: str, values) -> tuple[str, int]:
    """Replace ``?`` placeholders (outside quotes) by literals, in order; keep those with none."""
    if isinstance(values, Mapping):  # a named paramstyle: not what production uses
        raise AssertionError("expected the qmark paramstyle of mssql+pyodbc")
    it = iter(values)
    out, left, quote = [], 0, None
    for ch in sql:
        if quote:
            out.append(ch)
            if ch == quote:
                quote = None
        elif ch in ("'", '"', "["):
            quote = "]" if ch == "[" else ch
            out.append(ch)
        elif ch == "?":
            literal = literal_tsql(next(it))
            if literal is None:
                left += 1
                out.append("?")
            else:
                out.append(literal)
        else:
            out.append(ch)
    leftover = list(it)
    if leftover:
        raise AssertionError(f"{len(leftover)} parameters more than placeholders in {sql!r}")
    return "".join(out), left


def literal_tsql(value: Any) -> str | None:
    """A T-SQL literal for a parameter value, or None when there is no safe literal form."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, decimal.Decimal)):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.datetime):
        return "'" + value.isoformat(sep=" ", timespec="microseconds" if value.microsecond else "seconds") + "'"
    if isinstance(value, (dt.date, dt.time)):
        return f"'{value.isoformat()}'"
    if isinstance(value, str):
        return "N'" + value.replace("'", "''") + "'"
    return None  # bytes and the like stay as ? (sqlglot parses placeholders)
