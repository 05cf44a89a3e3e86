"""Graph user objects → Halo API fields, for users and for agents (no I/O here).

Graph omits nothing from a ``$select`` on a full read, but a delta read may send only the
changed properties; a property absent from the item is therefore left out of the record (the
engine then leaves that Halo field alone) rather than mapped to an empty value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Names a connection's ``user_matching_fields`` / ``agent_matching_fields`` may use [I: Halo's
#: own encoding of the list is not documented], by the matcher they choose.
MATCH_NAMES = {
    "azureoid": "azureoid", "oid": "azureoid", "objectid": "azureoid", "azureobjectid": "azureoid", "id": "azureoid",
    "email": "email", "emailaddress": "email", "mail": "email",
    "upn": "upn", "login": "upn", "userprincipalname": "upn", "username": "upn",
}  # fmt: skip
_MATCH_ORDER = ("azureoid", "email", "upn")
_USER_MATCHERS = {"azureoid": ("azureoid",), "email": ("emailaddress",), "upn": ("login",)}
_AGENT_MATCHERS = {"azureoid": ("azureoid",), "email": ("email",)}  # uname has no login column


def match_fields(value: str | None, *, agents: bool = False) -> list[tuple[str, ...]]:
    """The Halo fields existing records are adopted by, from a connection's matching list.

    Always in the order Azure object id → email → UPN, whatever order the list gives; the object
    id is always tried first (it names the one Azure user for certain). An empty list means all
    of them. Raises ``ValueError`` naming an unknown entry. Agents have no UPN field in Halo, so
    ``upn`` is dropped for them."""
    chosen = {"azureoid"}
    names = [n for n in (value or "").replace(";", ",").split(",") if n.strip()]
    for name in names:
        key = "".join(ch for ch in name.lower() if ch.isalnum())
        if key not in MATCH_NAMES:
            raise ValueError(f"unknown matching field {name.strip()!r} (use azureoid, email or upn)")
        chosen.add(MATCH_NAMES[key])
    if not names:
        chosen = set(_MATCH_ORDER)
    matchers = _AGENT_MATCHERS if agents else _USER_MATCHERS
    return [matchers[n] for n in _MATCH_ORDER if n in chosen and n in matchers]

# Halo field ← Graph property, for the simple one-to-one fields of a user.
_USER_SIMPLE = {
    "name": "displayName",
    "firstname": "givenName",
    "surname": "surname",
    "login": "userPrincipalName",
    "mobilenumber": "mobilePhone",
    "title": "jobTitle",
    "department": "department",
}


def is_removed(item: Mapping[str, Any]) -> bool:
    """A delta entry saying the user was deleted (or moved out of scope)."""
    return "@removed" in item


def is_disabled(item: Mapping[str, Any]) -> bool:
    """``accountEnabled`` is explicitly false (absent means unknown, not disabled)."""
    return item.get("accountEnabled") is False


def _email(item: Mapping[str, Any]) -> tuple[bool, Any]:
    """(present, value): mail, else the UPN (members without a mailbox still sign in by UPN)."""
    if "mail" not in item and "userPrincipalName" not in item:
        return False, None
    return True, item.get("mail") or item.get("userPrincipalName")


def user_fields(item: Mapping[str, Any], site_id: int | None) -> dict[str, Any]:
    """A Graph user as Halo user fields; ``site_id`` from the group mapping (None: default site)."""
    out: dict[str, Any] = {"azureoid": item["id"]}
    for halo, graph in _USER_SIMPLE.items():
        if graph in item:
            out[halo] = item[graph]
    present, email = _email(item)
    if present:
        out["emailaddress"] = email
    if "businessPhones" in item:
        phones = item.get("businessPhones") or []
        out["phonenumber"] = phones[0] if phones else None
    if "accountEnabled" in item:
        out["inactive"] = not item["accountEnabled"]
    if site_id is not None:
        out["site_id"] = site_id
    return out


def agent_fields(item: Mapping[str, Any]) -> dict[str, Any]:
    """A Graph user as Halo agent fields (``uname``)."""
    out: dict[str, Any] = {"azureoid": item["id"]}
    if "displayName" in item:
        out["name"] = item["displayName"]
    present, email = _email(item)
    if present:
        out["email"] = email
    if "accountEnabled" in item:
        out["isdisabled"] = not item["accountEnabled"]
    return out
