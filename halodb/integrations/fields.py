"""Which Halo API field names a source may use per entity, and how records match Halo.

Shared by the spreadsheet and SQL imports: both take Halo API field names as column names,
as Halo's own imports do.
"""

from __future__ import annotations

from halodb.halo import REPOSITORIES
from halodb.halo.repository import normalise_key

#: Reference fields a source may give by name instead of id; resolved by the repositories.
NAMED_REFERENCES = {
    "Clients": (),
    "Sites": ("client_name",),
    "Users": ("site_name", "client_name"),
    "Assets": ("site_name", "client_name", "assettype_name"),
}

#: The default field a record is matched on, per entity (Halo's imports: users by email).
DEFAULT_MATCHING = {"Clients": "name", "Sites": "name", "Users": "emailaddress", "Assets": "inventory_number"}


def allowed_columns(entity: str) -> list[str]:
    """Column names a source may use for ``entity`` (assets also take their field names)."""
    return [*REPOSITORIES[entity].writable, *NAMED_REFERENCES[entity]]


def match_fields(entity: str, matching_field: str) -> list[tuple[str, ...]]:
    """Halo fields, in order, by which an unlinked record adopts an existing Halo record."""
    if entity == "Sites":
        return [("client_id", "name")]  # site names repeat across clients
    fields = [matching_field] if matching_field in REPOSITORIES[entity].writable else []
    default = DEFAULT_MATCHING[entity]
    if default not in fields:
        fields.append(default)
    return [(f,) for f in fields]


def source_key(entity: str, record: dict, matching_field: str) -> str | None:
    """The stable key of a record: its matching field (sites: client and name), normalised."""
    if entity == "Sites":
        client = record.get("client_name") or record.get("client_id")
        name = record.get("name")
        return f"{normalise_key(str(client))}/{normalise_key(str(name))}" if client and name else None
    value = record.get(matching_field)
    if value in (None, ""):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(normalise_key(str(value)))
