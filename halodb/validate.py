"""``halodb validate``: prove the configuration, the connection and the built-in API work.

Steps, each reported even when an earlier one fails where that makes sense: configuration →
connection (naming the ODBC driver or DBAPI used) → Halo schema → triggers on the Halo tables
halodb writes → halodb migration state → a read through the built-in API → the integrations with
their state in Halo and here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from halodb import migrate
from halodb.config import mask_url
from halodb.database import connect_check, driver_description, engine_from_settings
from halodb.errors import HalodbError
from halodb.halo import REPOSITORIES
from halodb.halo import settings as halo_settings
from halodb.halo.preflight import missing_schema
from halodb.halo.triggers import WRITTEN_TABLES, tables_with_triggers
from halodb.integrations import REGISTRY
from halodb.runner import enabled_integrations


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class IntegrationRow:
    name: str
    enabled_in_halo: bool
    enabled_here: list[str]
    last_sync: dt.datetime | None
    last_error: str | None


@dataclass
class Validation:
    checks: list[Check] = field(default_factory=list)
    integrations: list[IntegrationRow] = field(default_factory=list)
    exit_code: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def to_dict(self) -> dict:
        out = asdict(self)
        for row in out["integrations"]:
            row["last_sync"] = row["last_sync"].isoformat(sep=" ") if row["last_sync"] else None
        return out


def integration_rows(engine: Engine, settings) -> list[IntegrationRow]:
    """Every integration halodb runs, with Halo's enabled flag, Last Sync, Last Error and the
    entities this appsettings.json enables."""
    rows = []
    with engine.connect() as conn:
        for name in REGISTRY:
            state = halo_settings.integration_state(conn, name)
            rows.append(IntegrationRow(name, state.enabled, settings.enabled_entities(name), state.last_sync, state.last_error))
    return rows


def validate(settings, engine: Engine | None = None) -> Validation:
    """Run every check; the result says what passed, what failed, and the exit code."""
    result = Validation()
    own_engine = engine is None
    try:
        engine = engine or engine_from_settings(settings)
        target = settings.database_url_resolved() or f"{settings.database.server}/{settings.database.name}"
        result.checks.append(Check("configuration", True, f"{settings.source_path or 'settings'} (instance database {mask_url(target)})"))
        connect_check(engine)
        result.checks.append(Check("connection", True, f"connected ({engine.dialect.name}, {driver_description(engine)})"))
    except HalodbError as err:
        result.checks.append(Check("connection", False, str(err)))
        result.exit_code = err.exit_code
        return result
    try:
        missing = missing_schema(engine, enabled_integrations(settings))
        if missing:
            result.checks.append(Check("halo schema", False, "missing: " + ", ".join(missing)))
            result.exit_code = 3
            return result
        result.checks.append(Check("halo schema", True, "every table and column halodb uses is present"))
        result.checks.append(trigger_check(engine))
        current, head = migrate.current(engine), migrate.head()
        state = "up to date" if current == head else f"at {current or 'nothing'}, {head} pending (applied by the next run or 'halodb db upgrade')"
        result.checks.append(Check("halodb tables", True, f"revision {current or '-'}: {state}"))
        with engine.connect() as conn:
            counts = {name: REPOSITORIES[name].count(conn) for name in ("Clients", "Sites", "Users", "Agents")}
            agent = halo_settings.integrator_agent(conn)
            recorded_url = halo_settings.halo_url(conn)
        result.checks.append(Check("built-in API", True, ", ".join(f"{n} {name.lower()}" for name, n in counts.items())))
        if agent is None:
            result.checks.append(Check("integrator agent", False, "Halo names no integrator agent: pick one under Configuration > Integrations > Halo Integrator"))
            result.exit_code = 1
        else:
            kind = "API-only agent" if agent.is_api_agent else "agent (an API-only agent is recommended)"
            result.checks.append(Check("integrator agent", not agent.disabled, f"{agent.name} (id {agent.id}), {kind}" + (", DISABLED" if agent.disabled else "")))
            if agent.disabled:
                result.exit_code = 1
        same = (recorded_url or "").rstrip("/").lower() == (settings.halo_url or "").rstrip("/").lower()
        detail = f"{settings.halo_url} matches Halo" if same else f"configured {settings.halo_url or '(none)'}, Halo has {recorded_url or '(none)'}"
        result.checks.append(Check("halo url", same or not settings.halo_url, detail))
        result.integrations = integration_rows(engine, settings)
        return result
    finally:
        if own_engine and engine is not None:
            engine.dispose()


def trigger_check(engine: Engine) -> Check:
    """Which Halo tables halodb writes carry triggers. Not a failure: SQL Server refuses
    a plain ``OUTPUT inserted`` on such a table, so halodb inserts there through ``OUTPUT … INTO``
    a table variable (``halodb.halo.output_into``)."""
    try:
        with engine.connect() as conn:
            found = tables_with_triggers(conn, WRITTEN_TABLES)
    except DBAPIError as err:
        first = (str(err.orig).strip().splitlines() or [type(err).__name__])[0]
        return Check("halo triggers", False, f"could not read the triggers: {first}")
    if not found:
        return Check("halo triggers", True, "none on the tables halodb writes")
    names = ", ".join(sorted(found))
    return Check("halo triggers", True, f"on {names}: halodb inserts there through OUTPUT … INTO a table variable")

