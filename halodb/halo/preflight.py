"""Pre-flight check: does the live database have every Halo table and column halodb uses?

Halo owns its schema and changes it between versions; this check turns "invalid column name"
half-way through a sync into a readable list before anything is written. Tables only one
integration reads are required only when that integration is enabled.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from halodb.halo.schema import metadata

#: Tables that only one integration needs, by the integration's appsettings.json name.
INTEGRATION_TABLES = {
    "Spreadsheet": ("importcsv",),
    "SqlImport": ("sqlimport",),
    "AzureAD": ("azureadconnection", "azureadmapping", "areaazuretenant"),
}


def missing_schema(engine: Engine, integrations: Iterable[str] | None = None) -> list[str]:
    """``table`` or ``table.column`` for everything halodb needs that the database lacks.

    ``integrations``: the integrations about to run (None: all of them)."""
    wanted = set(INTEGRATION_TABLES) if integrations is None else set(integrations)
    skip = {t for name, tables in INTEGRATION_TABLES.items() if name not in wanted for t in tables}
    inspector = inspect(engine)
    present = {name.lower() for name in inspector.get_table_names()}
    missing: list[str] = []
    for table in metadata.sorted_tables:
        if table.name in skip:
            continue
        if table.name.lower() not in present:
            missing.append(table.name)
            continue
        columns = {c["name"].lower() for c in inspector.get_columns(table.name)}
        missing.extend(f"{table.name}.{c.name}" for c in table.columns if c.name.lower() not in columns)
    return missing
