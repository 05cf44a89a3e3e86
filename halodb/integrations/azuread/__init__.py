"""Azure AD (Microsoft Entra ID) integration: Microsoft Graph users into Halo.

One connection per tenant is configured in Halo (``azureadconnection``); each connection gives
two entities, ``Users`` (Halo users) and ``Agents`` (Halo agents, ``uname``). An entity that is not
in the connection's ``halo_integrator_import_list`` ("users,agents") is excluded and never runs.

Reading. The first run does a full read through ``/users/delta`` and stores the
``@odata.deltaLink`` as the entity's cursor (committed with the data it covers). Later runs read
only the changes since that link and mark the read incomplete, so a delta read can never
deactivate records for being "missing". When Graph no longer accepts the link (``DeltaExpired``)
the run falls back to a full, complete read and stores the new link.

Removed users. A delta entry marked ``@removed`` (and, when the connection imports enabled
accounts only, a user whose account became disabled) is yielded as a source record carrying the
user's stored Halo values with ``inactive`` (agents: ``isdisabled``) set, so the engine deactivates
it through an ordinary update: attributed to the integrator agent, audited, in the change set.
This deliberately bypasses the engine's N-consecutive-missed-runs rule, because here Graph itself
says the user is gone; it is only done when the connection has ``deactivate_users`` set. Users
Halo does not know (or knows twice) are left alone. On a full read, removed and (with
``accountenabled``) disabled accounts are simply not yielded: the engine's missing-record rules
apply as for any complete read.

Sites. A user's site comes from the connection's group mappings (``azureadmapping``, first
mapping by ``sequenceid`` whose group - nested groups included - contains the user; members are
read once per run). Other users land on ``unmatchedusersite`` when ``createunmatchedusers`` is set
and are not imported otherwise.

Secrets (interim). Halo stores the app's client secret encrypted with its own key, which halodb
cannot decrypt, and the appsettings.json model has no Secrets section yet. Until it has, the
secret comes from the environment variable ``HALODB_AZUREAD_SECRET_<connection id>`` (which an
appsettings.json-driven deployment can set, e.g. in the scheduled task); only when that is unset
is ``azureadconnection.client_secret`` used as stored (which works for fixture databases and for
installations that keep it in plain text). A connection with neither fails with a message that
names the variable.

TLS. ``HALODB_AZUREAD_CA_FILE`` names a PEM file of CA certificates to trust for Graph and the
token endpoint instead of the system store (TLS-inspecting proxies; the tests' local Graph).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import ssl
from collections.abc import Iterator

from sqlalchemy.engine import Connection, Engine

from halodb.errors import IntegrationFailed
from halodb.halo import REPOSITORIES, azure
from halodb.halo.repository import Repository, chunks, normalise_key
from halodb.integrations.azuread.graph import USER_FIELDS, DeltaExpired, GraphClient
from halodb.integrations.azuread.mapping import (
    AGENT_MATCH_FIELDS,
    USER_MATCH_FIELDS,
    agent_fields,
    is_disabled,
    is_removed,
    user_fields,
)
from halodb.sync.entity import Entity, Excluded, ReadContext, SourceRecord

log = logging.getLogger(__name__)

GRAPH_HOST = "https://graph.microsoft.com"
AUTHORITY_HOST = "https://login.microsoftonline.com"
SECRET_VARIABLE = "HALODB_AZUREAD_SECRET_{}"
CA_FILE_VARIABLE = "HALODB_AZUREAD_CA_FILE"

#: Entity kinds as Halo lists them in ``halo_integrator_import_list``, by halodb's entity name.
KINDS = {"Users": "users", "Agents": "agents"}


class AzureADIntegration:
    name = "AzureAD"

    def entities(self, conn: Connection, settings) -> list[Entity | Excluded]:
        rows = azure.connections(conn)
        site_maps = azure.mappings(conn, [r["id"] for r in rows])
        out: list[Entity | Excluded] = []
        for row in rows:
            imported = import_list(row)
            recorder = _Recorder(row["id"])
            for entity, kind in KINDS.items():
                label = f"Azure AD '{row['name'] or row['id']}' {kind}"
                if kind not in imported:
                    out.append(Excluded(self.name, entity, label, "not in the connection's integrator import list"))
                    continue
                users = entity == "Users"
                out.append(
                    Entity(
                        integration=self.name,
                        connection=str(row["id"]),
                        name=entity,
                        label=label,
                        repository=REPOSITORIES[entity],
                        read=_reader(conn.engine, row, site_maps[row["id"]], entity, label),
                        match_fields=USER_MATCH_FIELDS if users else AGENT_MATCH_FIELDS,
                        deactivate=bool(row["deactivate_users"]),
                        prepare_options={"default_site": row["unmatchedusersite"]} if users else {},
                        record_result=recorder,
                    )
                )
        return out


def import_list(row: dict) -> set[str]:
    """The entity kinds Halo lets the integrator import for this connection ("users", "agents")."""
    return {part.strip().lower() for part in (row["halo_integrator_import_list"] or "").split(",") if part.strip()}


def client_secret(row: dict) -> str:
    """The connection's client secret: the environment first, then Halo's column (see above)."""
    variable = SECRET_VARIABLE.format(row["id"])
    secret = os.environ.get(variable, "").strip() or (row["client_secret"] or "").strip()
    if not secret:
        raise IntegrationFailed(
            f"Azure AD connection {row['id']} has no usable client secret",
            hint=f"Halo keeps it encrypted; set the environment variable {variable}",
        )
    return secret


def tls_verify() -> ssl.SSLContext | bool:
    """The system trust store, or the CA file named by ``HALODB_AZUREAD_CA_FILE``."""
    path = os.environ.get(CA_FILE_VARIABLE, "").strip()
    if not path:
        return True
    try:
        return ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as err:
        raise IntegrationFailed(f"{CA_FILE_VARIABLE}: cannot load CA certificates from {path}: {err}") from None


def graph_client(row: dict) -> GraphClient:
    return GraphClient(
        (row["directoryid"] or "").strip(),
        (row["applicationid"] or "").strip(),
        client_secret(row),
        authority_host=(row["authority_host"] or "").strip() or AUTHORITY_HOST,
        graph_host=(row["graph_host"] or "").strip() or GRAPH_HOST,
        verify=tls_verify(),
    )


def _reader(engine: Engine, row: dict, site_maps: list[dict], entity: str, label: str):
    users = entity == "Users"
    repo = REPOSITORIES[entity]
    only_enabled = bool(row["accountenabled"])
    deactivate = bool(row["deactivate_users"])

    def read(ctx: ReadContext) -> Iterator[SourceRecord]:
        with graph_client(row) as client:
            site_of = _group_sites(client, site_maps) if users else {}
            gone: list[str] = []
            for delta, item in _items(client, ctx, label):
                oid = item.get("id")
                if not oid:
                    continue
                if is_removed(item) or (only_enabled and is_disabled(item)):
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
            if gone and deactivate:
                yield from _closures(engine, repo, gone)

    return read


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


def _group_sites(client: GraphClient, site_maps: list[dict]) -> dict[str, int]:
    """User object id → site id: the first mapping (by sequence) whose group holds the user."""
    site_of: dict[str, int] = {}
    for mapping in site_maps:
        if not mapping["group_id"] or mapping["siteid"] is None:
            continue
        for oid in client.group_members(mapping["group_id"].strip()):
            site_of.setdefault(oid, mapping["siteid"])
    return site_of


def _closures(engine: Engine, repo: Repository, oids: list[str]) -> Iterator[SourceRecord]:
    """Records that deactivate the Halo records of users Graph reports removed or disabled.

    Each carries the record's stored values with the inactive flag set, so the engine's update
    changes exactly that one field. Users unknown to Halo, or matched twice, are left alone."""
    inactive = repo.inactive_field
    records: list[SourceRecord] = []
    with engine.connect() as conn:
        for part in chunks(oids):
            found = repo.find(conn, ("azureoid",), [(o,) for o in part])
            single = {o: ids[0] for o in part if len(ids := found.get((normalise_key(o),), [])) == 1}
            stored = repo.current(conn, single.values())
            for oid, halo_id in single.items():
                current = stored.get(halo_id)
                if current is None or current.get(inactive):
                    continue
                fields = {k: current.get(k) for k in repo.writable}
                fields[inactive] = True
                records.append(SourceRecord(oid, fields))
    yield from records


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
