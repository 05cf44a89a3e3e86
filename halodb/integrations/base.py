"""What every integration offers the runner."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Protocol

from sqlalchemy.engine import Connection

from halodb.errors import IntegrationFailed
from halodb.halo import REPOSITORIES
from halodb.sync.entity import Entity, Excluded


class Integration(Protocol):
    #: The name used in appsettings.json ``Integrations`` and on the command line.
    name: str

    def entities(self, conn: Connection, settings) -> list[Entity | Excluded]:
        """The entities configured for this integration in Halo (one per connection and kind)."""
        ...


def connection_entity(integration: str, connection_id, entity: str, label: str, **options) -> Entity:
    """One entity of one connection configured in Halo, written through the built-in API's
    repository for ``entity``; ``options`` are the rest of :class:`Entity`'s fields."""
    return Entity(
        integration=integration, connection=str(connection_id), name=entity, label=label,
        repository=REPOSITORIES[entity], **options,
    )  # fmt: skip


def check_columns(where: str, columns: Iterable[str], allowed: Iterable[str]) -> None:
    """Refuse a source whose columns are not Halo API field names, naming the nearest one."""
    allowed = list(allowed)
    for column in columns:
        if column not in allowed:
            near = difflib.get_close_matches(column, allowed, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else f" (expected Halo API field names such as {', '.join(allowed[:6])})"
            raise IntegrationFailed(f"{where}: unknown column {column!r}{hint}")
