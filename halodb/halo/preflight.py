"""Pre-flight check: does the live database have every Halo table and column halodb uses?

Halo owns its schema and changes it between versions; this check turns "invalid column name"
half-way through a sync into a readable list before anything is written.
"""

from __future__ import annotations

from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from halodb.halo.schema import metadata


def missing_schema(engine: Engine) -> list[str]:
    """``table`` or ``table.column`` for everything halodb needs that the database lacks."""
    inspector = inspect(engine)
    present = {name.lower() for name in inspector.get_table_names()}
    missing: list[str] = []
    for table in metadata.sorted_tables:
        if table.name.lower() not in present:
            missing.append(table.name)
            continue
        columns = {c["name"].lower() for c in inspector.get_columns(table.name)}
        missing.extend(f"{table.name}.{c.name}" for c in table.columns if c.name.lower() not in columns)
    return missing
