"""The name of one stream of records: (integration, connection, entity)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Table, and_


@dataclass(frozen=True)
class Scope:
    integration: str  # "SqlImport"
    connection: str  # which configured connection of the integration, e.g. "3" or "hr.xlsx"
    entity: str  # "Users"

    def where(self, table: Table):
        """The WHERE clause selecting this scope's rows of a ``halodb_*`` table."""
        return and_(
            table.c.integration == self.integration,
            table.c.connection == self.connection,
            table.c.entity == self.entity,
        )

    def values(self) -> dict[str, str]:
        return {"integration": self.integration, "connection": self.connection, "entity": self.entity}

    def __str__(self) -> str:
        return f"{self.integration}/{self.connection}/{self.entity}"
