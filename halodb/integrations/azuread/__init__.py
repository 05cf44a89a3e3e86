"""Azure AD (Microsoft Entra ID) integration: Microsoft Graph users into Halo.

One connection per tenant is configured in Halo (``azureadconnection``); each connection gives
two entities, ``Users`` (Halo users) and ``Agents`` (Halo agents, ``uname``). An entity that is not
in the connection's ``halo_integrator_import_list`` ("users,agents") is excluded and never runs.

Reading. The first run does a full read through ``/users/delta`` and stores the
``@odata.deltaLink`` as the entity's cursor (committed with the data it covers). Later runs read
only the changes since that link and mark the read incomplete, so a delta read can never
deactivate records for being "missing". When Graph no longer accepts the link (``DeltaExpired``)
the run falls back to a full, complete read and stores the new link.

Matching. Existing Halo records are adopted, never duplicated: by Azure object id first, then
email, then UPN (``login``; agents have none). The connection's ``user_matching_fields`` /
``agent_matching_fields`` ("email,upn") can leave email or UPN out; the order never changes.

Removed users. A delta entry marked ``@removed`` (and, when the connection imports enabled
accounts only, a user whose account became disabled) is reported to the engine as removed
(``ReadContext.mark_removed``). Graph itself says the user is gone, so the engine deactivates
the Halo record at once instead of waiting for N missed runs, but within the same limits as any
deactivation (``Sync.MaxDeactivations`` / ``Sync.MaxDeactivationPercent``, or
``--confirm-deactivations``): beyond them nothing is deactivated, the run is held back, and the
delta position is kept so the same removals come again next run. Removals only happen when the
connection has ``deactivate_users`` set, and only to Halo records this connection linked; they
are attributed to the integrator agent, audited, and in the change set. On a full read, removed
and (with ``accountenabled``) disabled accounts are simply not yielded: the engine's
missing-record rules apply as for any complete read.

Sites and clients. A user's site comes from the connection's group mappings (``azureadmapping``,
first mapping by ``sequenceid`` whose group - nested groups included - contains the user; members
are read once per run). Other users land on the connection's ``unmatchedusersite`` when
``createunmatchedusers`` is set, and are not imported otherwise. The tenant → client map
(``areaazuretenant``, by the connection's directory id) names the client the tenant's users
belong to: without an ``unmatchedusersite`` they land on that client's first active site. A
user's client is always its site's client in Halo, so a mapped site of another client is used
as mapped, with a warning in the log.

Clouds. ``graph_host`` empty means the global cloud (https://graph.microsoft.com). A host may be
given without its scheme. The token authority is ``authority_host`` when set, else the login
host of the national cloud ``graph_host`` belongs to (US Government, China), else
https://login.microsoftonline.com.

Secrets. Halo stores the app's client secret encrypted with its own key, which halodb cannot
decrypt, so halodb never reads ``azureadconnection.client_secret``. The secret comes from
appsettings.json ``AzureAD.Secrets``, by connection id or else by connection name (any case);
the environment overrides it as any setting (``HALODB_AzureAD__Secrets__<id>``). A connection
with none fails with a one-line message naming appsettings.json and the environment variable. Secrets are masked in
``config show`` and blanked in the log (``Settings.secrets``).

TLS. ``HALODB_AZUREAD_CA_FILE`` names a PEM file of CA certificates to trust for Graph and the
token endpoint instead of the system store (TLS-inspecting proxies; the tests' local Graph).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import ssl
from collections.abc import Iterator, Sequence
from itertools import chain, islice
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlalchemy.engine import Connection

from halodb.errors import IntegrationFailed
from halodb.halo import azure
from halodb.halo.repository import normalise_key
from halodb.integrations.azuread.graph import USER_FIELDS, DeltaExpired, GraphClient, GraphError
from halodb.integrations.azuread.mapping import (
    agent_fields,
    is_disabled,
    is_removed,
    match_fields,
    user_fields,
)
from halodb.integrations.base import connection_entity
from halodb.sync.entity import Entity, Excluded, ReadContext, SourceRecord
from halodb.sync.spool import spooled

log = logging.getLogger(__name__)

GRAPH_HOST = "https://graph.microsoft.com"
AUTHORITY_HOST = "https://login.microsoftonline.com"
#: Login host of each national cloud, by its Graph host (Microsoft's national cloud deployments).
NATIONAL_AUTHORITIES = {
    "graph.microsoft.com": AUTHORITY_HOST,
    "graph.microsoft.us": "https://login.microsoftonline.us",  # US Government L4
    "dod-graph.microsoft.us": "https://login.microsoftonline.us",  # US Government L5 (DoD)
    "microsoftgraph.chinacloudapi.cn": "https://login.chinacloudapi.cn",  # operated by 21Vianet
}
SECRET_SETTING = "AzureAD.Secrets.{}"
SECRET_ENV = "HALODB_AzureAD__Secrets__{}"
CA_FILE_VARIABLE = "HALODB_AZUREAD_CA_FILE"

#: Entity kinds as Halo lists them in ``halo_integrator_import_list``, by halodb's entity name.
KINDS = {"Users": "users", "Agents": "agents"}


class AzureADIntegration:
    name = "AzureAD"

    def entities(self, conn: Connection, settings) -> list[Entity | Excluded]:
        rows = azure.connections(conn)
        site_maps = azure.mappings(conn, [r["id"] for r in rows])
        tenants = azure.tenant_clients(conn, [r["directoryid"] or "" for r in rows])
        site_ids = [m["siteid"] for maps in site_maps.values() for m in maps] + [r["unmatchedusersite"] for r in rows]
        clients_of = azure.site_clients(conn, [i for i in site_ids if i is not None])
        out: list[Entity | Excluded] = []
        for row in rows:
            imported = import_list(row)
            recorder = _Recorder(row["id"])
            secret, secret_problem = client_secret(row, settings, rows)
            placement = _place(conn, row, site_maps[row["id"]], tenants, clients_of)
            for entity, kind in KINDS.items():
                label = f"Azure AD '{row['name'] or row['id']}' {kind}"
                if kind not in imported:
                    out.append(Excluded(self.name, entity, label, "not in the connection's integrator import list"))
                    continue
                users = entity == "Users"
                problems = [secret_problem] if secret_problem else []
                if users:
                    problems += placement.problems
                column = "user_matching_fields" if users else "agent_matching_fields"
                try:
                    matchers = match_fields(row[column], agents=not users)
                except ValueError as err:
                    problems.append(f"{column}: {err}")
                    matchers = match_fields(None, agents=not users)
                out.append(
                    connection_entity(
                        self.name, row["id"], entity, label,
                        read=_Reader(row, entity, secret=secret, problems=problems, placement=placement, label=label),
                        match_fields=matchers,
                        deactivate=bool(row["deactivate_users"]),
                        prepare_options={"default_site": placement.landing} if users else {},
                        record_result=recorder,
                    )
                )
        return out


def import_list(row: dict) -> set[str]:
    """The entity kinds Halo lets the integrator import for this connection ("users", "agents")."""
    return {part.strip().lower() for part in (row["halo_integrator_import_list"] or "").split(",") if part.strip()}


def _describe(row: dict) -> str:
    return f"Azure AD connection {row['id']}" + (f" '{row['name'].strip()}'" if (row["name"] or "").strip() else "")


def client_secret(row: dict, settings, rows: Sequence[dict] = ()) -> tuple[str | None, str | None]:
    """(secret, None) or (None, why there is none): appsettings.json ``AzureAD.Secrets`` by id,
    then by name (environment overrides included, so every secret is in ``Settings.secrets``)."""
    azure_settings = getattr(settings, "azure_ad", None)
    configured = {key.strip().lower(): value for key, value in (azure_settings.secrets if azure_settings else {}).items()}
    secret = configured.get(str(row["id"]))
    name = normalise_key(row["name"] or "")
    if not secret and name and name in configured:
        if any(str(r["id"]) == name for r in rows if r["id"] != row["id"]):
            # A key that is another connection's id belongs to that connection, never to one
            # that merely has that id as its name: its secret must not go to this tenant.
            return None, (f"{_describe(row)} is named like connection {name}: key its secret by id "
                          f"({SECRET_SETTING.format(row['id'])})")
        namesakes = [r["id"] for r in rows if normalise_key(r["name"] or "") == name]
        if len(namesakes) > 1:
            ids = ", ".join(map(str, namesakes))
            return None, (f"{_describe(row)} shares its name with connections {ids}: key its secret by id "
                          f"({SECRET_SETTING.format(row['id'])})")
        secret = configured[name]
    secret = (secret or "").strip()
    if secret:
        return secret, None
    return None, (f"{_describe(row)} has no client secret: set {SECRET_SETTING.format(row['id'])} in appsettings.json "
                  f"or the environment variable {SECRET_ENV.format(row['id'])} (Halo keeps it encrypted)")


def tls_verify() -> ssl.SSLContext | bool:
    """The system trust store, or the CA file named by ``HALODB_AZUREAD_CA_FILE``."""
    path = os.environ.get(CA_FILE_VARIABLE, "").strip()
    if not path:
        return True
    try:
        return ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as err:
        raise IntegrationFailed(f"{CA_FILE_VARIABLE}: cannot load CA certificates from {path}: {err}") from None


def _https(value: str | None, what: str) -> str | None:
    """An ``https://host[:port]`` origin from a host as Halo may store it (scheme optional)."""
    value = (value or "").strip()
    if not value:
        return None
    if "://" not in value:
        value = "https://" + value
    parts = urlsplit(value)
    if parts.scheme.lower() != "https" or not parts.netloc:
        raise IntegrationFailed(f"{what} must be an https:// host (got {value!r})")
    return f"https://{parts.netloc}"


def endpoints(row: dict) -> tuple[str, str]:
    """(authority host, Graph host) of a connection: its own, or its national cloud's."""
    graph = _https(row["graph_host"], "graph_host") or GRAPH_HOST
    authority = _https(row["authority_host"], "authority_host")
    if authority is None:
        authority = NATIONAL_AUTHORITIES.get((urlsplit(graph).hostname or "").lower(), AUTHORITY_HOST)
    return authority, graph


def graph_client(row: dict, secret: str) -> GraphClient:
    authority, graph = endpoints(row)
    return GraphClient(
        (row["directoryid"] or "").strip(),
        (row["applicationid"] or "").strip(),
        secret,
        authority_host=authority,
        graph_host=graph,
        verify=tls_verify(),
    )


# -- where users land ----------------------------------------------------------------------------


@dataclass
class _Placement:
    """Group → site mappings that apply, the landing site for other users, and what is wrong."""

    site_maps: list[dict] = field(default_factory=list)
    landing: int | None = None
    client: int | None = None
    problems: list[str] = field(default_factory=list)


def _place(conn: Connection, row: dict, site_maps: list[dict], tenants: dict[str, list[int]], clients_of: dict[int, int]) -> _Placement:
    out = _Placement()
    who = _describe(row)
    tenant = normalise_key(row["directoryid"] or "")
    mapped = tenants.get(tenant, [])
    if len(mapped) > 1:
        out.problems.append(f"{who}: tenant {tenant} is mapped to {len(mapped)} clients in Halo (ids {', '.join(map(str, mapped))})")
    elif mapped:
        out.client = mapped[0]
    for mapping in site_maps:
        if not (mapping["group_id"] or "").strip() or mapping["siteid"] is None:
            continue
        site_id = mapping["siteid"]
        if site_id not in clients_of:
            out.problems.append(f"{who}: the mapping of group {mapping['group_id'].strip()} names site {site_id}, which does not exist")
            continue
        if out.client is not None and clients_of[site_id] != out.client:
            log.warning("%s: group %s maps to site %s of client %s, not client %s the tenant is mapped to; a user's client follows its site",
                        who, mapping["group_id"].strip(), site_id, clients_of[site_id], out.client)  # fmt: skip
        out.site_maps.append(mapping)
    landing = row["unmatchedusersite"]
    if landing is not None and landing not in clients_of:
        out.problems.append(f"{who}: the site for unmatched users ({landing}) does not exist")
        landing = None
    elif landing is not None and out.client is not None and clients_of[landing] != out.client:
        log.warning("%s: unmatched users land on site %s of client %s, not client %s the tenant is mapped to",
                    who, landing, clients_of[landing], out.client)  # fmt: skip
    if landing is None and out.client is not None:
        landing = azure.first_site(conn, out.client)
    out.landing = landing
    if row["createunmatchedusers"] and landing is None and not out.problems:
        out.problems.append(f"{who} creates unmatched users but has no site for them: set the connection's site for "
                            "unmatched users, or map its tenant to a client that has a site")  # fmt: skip
    return out


# -- reading -------------------------------------------------------------------------------------


class _Reader:
    """The ``read`` of one entity of one connection (see the module's docstring)."""

    def __init__(self, row: dict, entity: str, *, secret: str | None, problems: list[str], placement: _Placement, label: str):
        self.row, self.entity, self.label = row, entity, label
        self.users = entity == "Users"
        self._secret = secret
        self.problems = problems
        self.placement = placement
        self.only_enabled = bool(row["accountenabled"])

    def __repr__(self) -> str:  # never the secret
        return f"<azuread reader {self.label}>"

    def __call__(self, ctx: ReadContext) -> Iterator[SourceRecord]:
        # Graph pages for minutes at 100,000 users: spool the whole read, so a failure on any
        # page leaves Halo untouched, not half-synced (halodb.sync.spool).
        return spooled(self._read(ctx), ctx.heartbeat)

    def _read(self, ctx: ReadContext) -> Iterator[SourceRecord]:
        if self.problems:
            raise IntegrationFailed("; ".join(self.problems))
        row, users = self.row, self.users
        with graph_client(row, self._secret) as client:
            items = _items(client, ctx, self.label)
            site_of: dict[str, int] | _UserGroups = {}
            if users and self.placement.site_maps:
                # A short delta asks Graph for the groups of each changed user; anything bigger
                # (or a full read) reads every mapped group's members once. A delta only places
                # the users it carries, so both give the same sites.
                head = list(islice(items, SHORT_DELTA + 1))
                items = chain(head, items)
                if len(head) <= SHORT_DELTA and all(delta for delta, _ in head):
                    site_of = _UserGroups(client, self.placement.site_maps)
                else:
                    site_of = _group_sites(client, self.placement.site_maps)
            gone: list[str] = []
            for delta, item in items:
                oid = item.get("id")
                if not oid:
                    continue
                if is_removed(item) or (self.only_enabled and is_disabled(item)):
                    if delta:  # a full read just leaves them out: the missing-record rules apply
                        gone.append(oid)
                    continue
                if not users:
                    yield SourceRecord(oid, agent_fields(item))
                    continue
                site = site_of.get(oid)
                if site is None and not row["createunmatchedusers"]:
                    continue
                yield SourceRecord(oid, user_fields(item, site))
            if gone:
                ctx.mark_removed(gone)  # the engine deactivates them if the connection says so


_END = object()


def _items(client: GraphClient, ctx: ReadContext, label: str) -> Iterator[tuple[bool, dict]]:
    """(is a delta read, Graph item): the changes since the cursor, or everything."""
    if ctx.cursor:
        changes = client.users_delta(USER_FIELDS, ctx.cursor)
        it = iter(changes)
        try:
            first = next(it, _END)
        except DeltaExpired as err:
            log.warning("%s: %s; doing a full read", label, err)
        else:
            ctx.mark_incomplete("delta read")
            if first is not _END:
                yield True, first
            for item in it:
                yield True, item
            if changes.delta_link:
                ctx.set_cursor(changes.delta_link)
            return
    full = client.users_delta(USER_FIELDS, None)
    for item in full:
        yield False, item
    if full.delta_link:
        ctx.set_cursor(full.delta_link)
    else:
        ctx.mark_incomplete("Graph ended the read without a delta link")


#: A delta of at most this many changes is placed user by user (one ``transitiveMemberOf`` request
#: each) instead of by reading every mapped group's members (100 members a request).
SHORT_DELTA = 200


class _UserGroups:
    """User object id → site id, asked of Graph per user: the first mapping (by sequence) among the
    groups the user belongs to. The same answer ``_group_sites`` gives, for a few users."""

    def __init__(self, client: GraphClient, site_maps: list[dict]):
        self.client = client
        self.site_maps = site_maps

    def get(self, oid: str) -> int | None:
        try:
            groups = set(self.client.member_of(oid))
        except GraphError as err:
            if err.status == 404:  # deleted since the delta was read: the next delta says so
                return None
            raise
        return next((m["siteid"] for m in self.site_maps if m["group_id"].strip() in groups), None)


def _group_sites(client: GraphClient, site_maps: list[dict]) -> dict[str, int]:
    """User object id → site id: the first mapping (by sequence) whose group holds the user."""
    site_of: dict[str, int] = {}
    for mapping in site_maps:
        for oid in client.group_members(mapping["group_id"].strip()):
            site_of.setdefault(oid, mapping["siteid"])
    return site_of


class _Recorder:
    """Last Sync / Last Error of one connection, shared by its entities within one run.

    The runner records each entity as it finishes; without sharing, a successful Agents run
    would clear the error the Users run of the same connection has just recorded."""

    def __init__(self, connection_id: int):
        self.connection_id = connection_id
        self.errors: list[str] = []

    def __call__(self, conn: Connection, when: dt.datetime | None, error: str | None) -> None:
        if error:
            self.errors.append(error)
        if self.errors:
            azure.record_connection(conn, self.connection_id, None, "; ".join(self.errors))
        else:
            azure.record_connection(conn, self.connection_id, when, None)


integration = AzureADIntegration()
