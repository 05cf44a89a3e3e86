"""A local Microsoft Graph + Entra token endpoint, written from Graph's documented wire format.

It runs on a pytest-httpserver ``HTTPServer`` over TLS (the certificate comes from a ``trustme`` CA),
because MSAL only accepts ``https://`` authorities. A single catch-all handler routes requests:

* ``GET  /<tenant>/v2.0/.well-known/openid-configuration``: the OIDC discovery document that
  MSAL reads when instance discovery is off. Its ``token_endpoint`` points back at this fake.
* ``POST /<tenant>/oauth2/v2.0/token``: the client-credentials grant. A wrong secret gets
  401 ``invalid_client``/AADSTS7000215, an unknown client id gets 400 ``unauthorized_client``/AADSTS700016,
  and a scope other than ``<graph_host>/.default`` gets 400 ``invalid_scope``/AADSTS1002012.
* ``GET /v1.0/users``: supports ``$select`` and ``$top`` (default 100, at most 999). Pages are linked
  by ``@odata.nextLink`` URLs that carry an opaque ``$skiptoken``.
* ``GET /v1.0/users/delta``: the first read pages with ``$skiptoken`` links, and its last page carries
  ``@odata.deltaLink`` with a ``$deltatoken``. A later delta read returns only the users changed or
  removed since that token. Removed users come back as ``{"id": …, "@removed": {"reason": …}}``.
  Updates to properties outside the token's ``$select`` are not reported. Set ``partial_updates = True``
  to get updated users back as ``id`` plus only the changed selected properties (Graph documents
  "at least the properties that have been updated").
* ``GET /v1.0/groups/{id}/transitiveMembers/microsoft.graph.user``: the users in the group, with nested
  groups expanded.

Graph errors have the documented shape ``{"error": {"code", "message", "innerError": {...}}}``.
Fault injection applies to Graph requests only, not to the token endpoint: see :meth:`FakeGraph.throttle`,
:meth:`FakeGraph.fail_with`, :meth:`FakeGraph.fail_on_page`, :meth:`FakeGraph.expire_delta_tokens` and
:meth:`FakeGraph.expire_access_tokens`.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import secrets
import ssl
import threading
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import trustme
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

__all__ = ["FakeGraph", "DEFAULT_USER_PROPERTIES", "KNOWN_USER_PROPERTIES"]

#: What Graph returns for a user when the request has no ``$select``.
DEFAULT_USER_PROPERTIES = (
    "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
    "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id",
)
#: Properties a ``$select`` may name. An unknown name gets a 400, as it does on Graph.
KNOWN_USER_PROPERTIES = frozenset(DEFAULT_USER_PROPERTIES) | {
    "accountEnabled", "userType", "companyName", "department", "employeeId", "city", "country",
    "state", "streetAddress", "postalCode", "usageLocation", "onPremisesSamAccountName",
    "onPremisesImmutableId", "onPremisesSyncEnabled", "createdDateTime", "otherMails",
    "proxyAddresses", "faxNumber", "employeeType", "mailNickname", "preferredLanguage",
}
_COLLECTION_PROPERTIES = frozenset({"businessPhones", "otherMails", "proxyAddresses"})

_ERROR_CODES = {
    400: "Request_BadRequest",
    401: "InvalidAuthenticationToken",
    403: "Authorization_RequestDenied",
    404: "Request_ResourceNotFound",
    410: "syncStateNotFound",
    429: "TooManyRequests",
    500: "UnknownError",
    502: "BadGateway",
    503: "serviceNotAvailable",
    504: "gatewayTimeout",
}
_ERROR_MESSAGES = {
    403: "Insufficient privileges to complete the operation.",
    429: "Too many requests; please retry after the time given in Retry-After.",
    500: "An unexpected error occurred.",
    502: "The gateway received an invalid response.",
    503: "The service is temporarily unavailable. Please retry later.",
    504: "The gateway timed out.",
}


class FakeGraph:
    """One tenant's users and groups, served as Graph and Entra would serve them."""

    def __init__(
        self,
        server: HTTPServer,
        ca: trustme.CA,
        *,
        tenant_id: str = "0b1d2c3e-4f50-4a6b-8c7d-9e0f1a2b3c4d",
        client_id: str = "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b",
        client_secret: str = "fake~Secret.0123456789abcdefghijKLMN",
    ):
        self.server = server
        self.ca = ca
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.base_url = f"https://{server.host}:{server.port}"
        # One server plays both hosts, exactly as two hosts would be configured in halodb.
        self.authority_host = self.base_url
        self.graph_host = self.base_url

        self.users: dict[str, dict] = {}
        self.groups: dict[str, dict] = {}  # id -> {"id", "displayName", "members": [user or group ids]}
        self.delta_page_size = 100
        self.partial_updates = False
        self.access_token_lifetime = 3599
        #: True makes a refused secret come back inside the error text, as a careless proxy or
        #: server might: what halodb shows or logs must still never contain it.
        self.echo_client_secret = False

        self.keep_server_log = False  # True keeps pytest-httpserver's own log of bodies
        self.request_log: list[str] = []  # "GET /v1.0/users?$select=…", in arrival order
        self.token_requests = 0
        self.discovery_requests = 0

        self._lock = threading.RLock()
        self._log: list[tuple[str, str, frozenset | str | None]] = []  # entry i has version i + 1
        self._generation = 0
        self._expired_status = 410
        self._access_tokens: set[str] = set()
        self._pages: dict[str, dict] = {}  # $skiptoken -> paging state
        self._deltas: dict[str, dict] = {}  # $deltatoken -> {"version", "select", "generation"}
        self._listing_seq = 0
        self._throttle: list[tuple[int, float | None]] = []  # (status, retry_after) answered in order
        self._fail_page: int | None = None
        self._fail_listing: int | None = None
        self._raw: dict[str, tuple[dict, dict]] = {}  # path -> (JSON body, headers): a misbehaving Graph

        server.expect_request(re.compile(".*")).respond_with_handler(self._dispatch)

    # -- client-side helpers -------------------------------------------------------------------

    def ssl_context_for_client(self) -> ssl.SSLContext:
        """An ``ssl.SSLContext`` that trusts this fake's CA (and nothing else)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=None, capath=None, cadata=None)
        ctx.load_verify_locations(cadata=self.ca.cert_pem.bytes().decode("ascii"))
        return ctx

    @property
    def version(self) -> int:
        return len(self._log)

    # -- directory mutations (all feed the delta log) -----------------------------------------

    def add(self, user: dict) -> str:
        """Add (or re-create) a user; returns its id."""
        with self._lock:
            user = dict(user)
            user.setdefault("id", str(uuid.uuid4()))
            self.users[user["id"]] = user
            self._log.append(("add", user["id"], None))
            return user["id"]

    def add_many(self, users: Iterable[dict]) -> list[str]:
        return [self.add(u) for u in users]

    def update(self, user_id: str, **fields: Any) -> None:
        """Change properties; a value of ``None`` clears the property."""
        with self._lock:
            user = self.users[user_id]
            for key, value in fields.items():
                if value is None:
                    user.pop(key, None)
                else:
                    user[key] = value
            self._log.append(("update", user_id, frozenset(fields)))

    def remove(self, user_id: str, reason: str = "changed") -> None:
        """Delete a user. Graph reports a soft delete (restorable for 30 days) as reason "changed"."""
        with self._lock:
            del self.users[user_id]
            for group in self.groups.values():
                if user_id in group["members"]:
                    group["members"].remove(user_id)
            self._log.append(("remove", user_id, reason))

    def add_group(self, members: Iterable[str] = (), *, group_id: str | None = None,
                  display_name: str = "Group") -> str:
        """Add a group whose members are user ids or ids of other (nested) groups."""
        with self._lock:
            gid = group_id or str(uuid.uuid4())
            self.groups[gid] = {"id": gid, "displayName": display_name, "members": list(members)}
            return gid

    # -- fault injection -------------------------------------------------------------------

    def throttle(self, n: int, retry_after: float | None = 1) -> None:
        """The next ``n`` Graph requests answer 429 with ``Retry-After`` (none if ``retry_after`` is None)."""
        with self._lock:
            self._throttle.extend([(429, retry_after)] * n)

    def fail_with(self, status: int, n: int = 1, retry_after: float | None = None) -> None:
        """The next ``n`` Graph requests answer ``status`` (e.g. 503) with a Graph error body."""
        with self._lock:
            self._throttle.extend([(status, retry_after)] * n)

    def answer_raw(self, path: str, body: dict, headers: dict | None = None) -> None:
        """Every Graph GET of ``path`` answers 200 with ``body`` as it is, however malformed:
        for testing what halodb does with shapes Graph's documentation does not promise."""
        with self._lock:
            self._raw[path] = (body, headers or {})

    def fail_on_page(self, k: int) -> None:
        """Page ``k`` (1-based) of the next listing answers 500 for as long as it is asked for.

        A listing starts with a request that carries no ``$skiptoken``. For ``k == 1`` only that
        first request fails, because a retry without a token looks like a new listing.
        """
        with self._lock:
            self._fail_page = k
            self._fail_listing = None

    def clear_faults(self) -> None:
        with self._lock:
            self._throttle.clear()
            self._fail_page = None
            self._fail_listing = None

    def expire_delta_tokens(self, status: int = 410) -> None:
        """Every delta token issued so far now answers ``status`` with code ``syncStateNotFound``.

        Identity resources answer 400 once a token is more than 7 days old; other resources
        answer 410 Gone. Both are accepted.
        """
        with self._lock:
            self._generation += 1
            self._expired_status = status

    def expire_access_tokens(self) -> None:
        """Every access token issued so far now gets 401 ``InvalidAuthenticationToken``."""
        with self._lock:
            self._access_tokens.clear()

    # -- HTTP plumbing -----------------------------------------------------------------------

    @staticmethod
    def _json(status: int, body: Any, headers: dict | None = None) -> Response:
        return Response(json.dumps(body), status=status, headers=headers or {},
                        content_type="application/json; charset=utf-8")

    def _graph_error(self, status: int, code: str | None = None, message: str | None = None,
                     headers: dict | None = None) -> Response:
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        rid = str(uuid.uuid4())
        body = {"error": {
            "code": code or _ERROR_CODES.get(status, "UnknownError"),
            "message": message or _ERROR_MESSAGES.get(status, "Request failed."),
            "innerError": {"date": now, "request-id": rid, "client-request-id": rid},
        }}
        return self._json(status, body, headers)

    def _dispatch(self, request: Request) -> Response:
        with self._lock:
            # pytest-httpserver keeps every (request, response) pair, bodies included. For a
            # 100,000-user tenant that is the whole directory again, so keep only what the last
            # request left there. ``request_log`` keeps a line per request instead.
            if not self.keep_server_log:
                self.server.log.clear()
            query = request.query_string.decode("latin-1")
            self.request_log.append(f"{request.method} {request.path}{'?' + query if query else ''}")
            path = request.path
            tenant_prefix = f"/{self.tenant_id}/"
            if path.endswith("/v2.0/.well-known/openid-configuration") and request.method == "GET":
                return self._openid_configuration(request)
            if path.endswith("/oauth2/v2.0/token") and request.method == "POST":
                if not path.startswith(tenant_prefix):
                    return self._aad_error(400, "invalid_tenant", 90002,
                                           f"Tenant '{path.split('/')[1]}' not found.")
                return self._token(request)
            if path in self._raw:
                body, headers = self._raw[path]
                return self._json(200, body, headers)
            if path.startswith(("/v1.0/", "/beta/")):
                return self._graph(request)
            return self._graph_error(404, "Request_ResourceNotFound", f"No route for {path}")

    # -- Entra endpoints ---------------------------------------------------------------------

    def _openid_configuration(self, request: Request) -> Response:
        self.discovery_requests += 1
        tenant = request.path.split("/")[1]
        if tenant != self.tenant_id:
            return self._aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        base = f"{self.authority_host}/{tenant}"
        return self._json(200, {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "jwks_uri": f"{self.authority_host}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        })

    def _aad_error(self, status: int, error: str, code: int, text: str) -> Response:
        now = _dt.datetime.now(_dt.timezone.utc)
        trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
        return self._json(status, {
            "error": error,
            "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {trace}\r\n"
                                 f"Correlation ID: {corr}\r\nTimestamp: {now:%Y-%m-%d %H:%M:%SZ}",
            "error_codes": [code],
            "timestamp": f"{now:%Y-%m-%d %H:%M:%SZ}",
            "trace_id": trace,
            "correlation_id": corr,
            "error_uri": f"{self.authority_host}/error?code={code}",
        })

    def _token(self, request: Request) -> Response:
        self.token_requests += 1
        form = request.form
        if form.get("grant_type") != "client_credentials":
            return self._aad_error(400, "unsupported_grant_type", 70003,
                                   "The app requested an unsupported grant type.")
        if form.get("client_id") != self.client_id:
            return self._aad_error(400, "unauthorized_client", 700016,
                                   f"Application with identifier '{form.get('client_id')}' was not found "
                                   f"in the directory '{self.tenant_id}'.")
        if form.get("client_secret") != self.client_secret:
            echo = f" Received: '{form.get('client_secret')}'." if self.echo_client_secret else ""
            return self._aad_error(401, "invalid_client", 7000215,
                                   "Invalid client secret provided. Ensure the secret being sent in the "
                                   "request is the client secret value, not the client secret ID, for a "
                                   f"secret added to app '{self.client_id}'.{echo}")
        if form.get("scope") != f"{self.graph_host}/.default":
            return self._aad_error(400, "invalid_scope", 1002012,
                                   f"The provided value for scope {form.get('scope')} is not valid. "
                                   "Client credential flows must have a scope value with /.default "
                                   "suffixed to the resource identifier (application ID URI).")
        token = "eyJ0eXAiOiJKV1QifQ." + secrets.token_urlsafe(32)
        self._access_tokens.add(token)
        return self._json(200, {
            "token_type": "Bearer",
            "expires_in": self.access_token_lifetime,
            "ext_expires_in": self.access_token_lifetime,
            "access_token": token,
        })

    # -- Graph endpoints ---------------------------------------------------------------------

    def _graph(self, request: Request) -> Response:
        if self._throttle:
            status, retry_after = self._throttle.pop(0)
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            return self._graph_error(status, headers=headers)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[len("Bearer "):] not in self._access_tokens:
            code_msg = ("Access token is empty." if not auth else
                        "Access token has expired or is not yet valid.")
            return self._graph_error(401, "InvalidAuthenticationToken", code_msg,
                                     {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'})
        if request.method != "GET":
            return self._graph_error(405, "Request_BadRequest", "Only GET is served by this fake.")
        path = request.path
        args = request.args
        if path == "/v1.0/users":
            return self._list_users(args)
        if path == "/v1.0/users/delta":
            return self._users_delta(args)
        parts = path.split("/")
        # /v1.0/groups/{id}/transitiveMembers/microsoft.graph.user
        if (len(parts) == 6 and parts[2] == "groups" and parts[4] == "transitiveMembers"
                and parts[5] == "microsoft.graph.user"):
            return self._group_members(parts[3], args)
        # /v1.0/users/{id}/transitiveMemberOf/microsoft.graph.group
        if (len(parts) == 6 and parts[2] == "users" and parts[4] == "transitiveMemberOf"
                and parts[5] == "microsoft.graph.group"):
            return self._member_of(parts[3])
        return self._graph_error(400, "BadRequest",
                                 f"Resource not found for the segment '{parts[-1]}'.")

    def _parse_select(self, args, default=DEFAULT_USER_PROPERTIES) -> list[str] | Response:
        raw = args.get("$select")
        if not raw:
            return list(default)
        names = [n.strip() for n in raw.split(",") if n.strip()]
        for n in names:
            if n not in KNOWN_USER_PROPERTIES:
                return self._graph_error(400, "Request_BadRequest",
                                         f"Could not find a property named '{n}' on type "
                                         "'microsoft.graph.user'.")
        if "id" not in names:
            names.append("id")  # Graph always returns the key
        return names

    def _parse_top(self, args, default: int = 100) -> int | Response:
        raw = args.get("$top")
        if raw is None:
            return default
        try:
            top = int(raw)
        except ValueError:
            top = 0
        if not 1 <= top <= 999:
            return self._graph_error(400, "Request_BadRequest", "Invalid page size specified: '%s'. "
                                     "Must be between 1 and 999 inclusive." % raw)
        return top

    @staticmethod
    def _project(user: dict, select: list[str]) -> dict:
        out = {}
        for name in select:
            value = user.get(name)
            if value is None and name in _COLLECTION_PROPERTIES:
                value = []
            out[name] = value
        return out

    def _context(self, select: list[str], suffix: str = "") -> str:
        return f"{self.graph_host}/v1.0/$metadata#users({','.join(select)}){suffix}"

    def _new_listing(self, kind: str, items: list, page_size: int, extra: dict) -> dict:
        self._listing_seq += 1
        return {"kind": kind, "items": items, "offset": 0, "page": 1, "page_size": page_size,
                "listing": self._listing_seq, **extra}

    def _page_state(self, args, kind: str) -> dict | Response | None:
        token = args.get("$skiptoken")
        if token is None:
            return None
        state = self._pages.get(token)
        if state is None or state["kind"] != kind:
            return self._graph_error(400, "Directory_ExpiredPageToken",
                                     "The specified page token value has expired and can no longer be "
                                     "included in your request.")
        return state

    def _fault_for_page(self, state: dict) -> Response | None:
        if self._fail_page is None:
            return None
        if self._fail_listing is None and state["page"] == 1:
            self._fail_listing = state["listing"]
        if state["listing"] == self._fail_listing and state["page"] == self._fail_page:
            return self._graph_error(500)
        return None

    def _emit_page(self, state: dict, base_path: str, select: list[str], render, final: dict,
                   link_params: str = "", on_final=None) -> Response:
        """Serve one page of ``state``; link it to the next page, or finish with ``final``."""
        fault = self._fault_for_page(state)
        if fault is not None:
            return fault
        start, size = state["offset"], state["page_size"]
        chunk = state["items"][start:start + size]
        body: dict[str, Any] = {"@odata.context": self._context(select, state.get("context_suffix", "")),
                                "value": [v for v in (render(i) for i in chunk) if v is not None]}
        if start + size < len(state["items"]):
            nxt = dict(state, offset=start + size, page=state["page"] + 1)
            token = secrets.token_urlsafe(24)
            self._pages[token] = nxt
            body["@odata.nextLink"] = f"{self.graph_host}{base_path}?{link_params}$skiptoken={token}"
        else:
            body.update(final)
            if on_final is not None:
                on_final()
        return self._json(200, body)

    def _list_users(self, args) -> Response:
        state = self._page_state(args, "users")
        if isinstance(state, Response):
            return state
        if state is None:
            select = self._parse_select(args)
            if isinstance(select, Response):
                return select
            top = self._parse_top(args)
            if isinstance(top, Response):
                return top
            state = self._new_listing("users", list(self.users), top, {"select": select})
        select = state["select"]
        users = self.users

        def render(uid):
            user = users.get(uid)
            return None if user is None else self._project(user, select)

        link_params = f"$select={','.join(select)}&$top={state['page_size']}&"
        return self._emit_page(state, "/v1.0/users", select, render, {}, link_params)

    def _users_delta(self, args) -> Response:
        state = self._page_state(args, "delta")
        if isinstance(state, Response):
            return state
        if state is None:
            deltatoken = args.get("$deltatoken")
            if deltatoken is None:
                select = self._parse_select(args)
                if isinstance(select, Response):
                    return select
                items = [("full", uid, None) for uid in self.users]
                since = self.version
            elif deltatoken == "latest":
                select = self._parse_select(args)
                if isinstance(select, Response):
                    return select
                items, since = [], self.version
            else:
                saved = self._deltas.get(deltatoken)
                if saved is None:
                    return self._graph_error(400, "Request_BadRequest", "Invalid delta token.")
                if saved["generation"] != self._generation:
                    return self._graph_error(
                        self._expired_status, "syncStateNotFound",
                        "The sync state generation is not found. The delta token is expired and "
                        "data must be synchronized again.")
                select = saved["select"]
                items, since = self._changes_since(saved["version"], select), self.version
            state = self._new_listing("delta", items, self.delta_page_size,
                                      {"select": select, "since": since, "context_suffix": "/delta"})
        select = state["select"]

        def render(item):
            kind, uid, extra = item
            if kind == "removed":
                return {"id": uid, "@removed": {"reason": extra}}
            user = self.users.get(uid)
            if user is None:
                return {"id": uid, "@removed": {"reason": "changed"}}
            if kind == "partial":
                return {"id": uid, **{k: v for k, v in self._project(user, select).items() if k in extra}}
            return self._project(user, select)

        token = secrets.token_urlsafe(32)
        final = {"@odata.deltaLink": f"{self.graph_host}/v1.0/users/delta?$deltatoken={token}"}
        def remember():
            self._deltas[token] = {"version": state["since"], "select": select,
                                   "generation": self._generation}

        return self._emit_page(state, "/v1.0/users/delta", select, render, final, on_final=remember)

    def _changes_since(self, version: int, select: list[str]) -> list[tuple]:
        selected = set(select) - {"id"}
        net: dict[str, tuple] = {}
        for kind, uid, extra in self._log[version:]:
            previous = net.get(uid)
            if kind == "add":
                net[uid] = ("full", uid, None)
            elif kind == "remove":
                net[uid] = ("removed", uid, extra)
            else:  # update
                fields = set(extra) & selected
                if previous is not None and previous[0] in ("full", "removed"):
                    continue
                if previous is not None:
                    fields |= previous[2]
                if fields:
                    net[uid] = ("partial", uid, fields)
        if not self.partial_updates:
            return [("full", uid, None) if kind == "partial" else (kind, uid, extra)
                    for kind, uid, extra in net.values()]
        return list(net.values())

    def _group_members(self, group_id: str, args) -> Response:
        state = self._page_state(args, "members")
        if isinstance(state, Response):
            return state
        if state is None:
            if group_id not in self.groups:
                return self._graph_error(404, "Request_ResourceNotFound",
                                         f"Resource '{group_id}' does not exist or one of its queried "
                                         "reference-property objects are not present.")
            select = self._parse_select(args, default=DEFAULT_USER_PROPERTIES)
            if isinstance(select, Response):
                return select
            top = self._parse_top(args)
            if isinstance(top, Response):
                return top
            state = self._new_listing("members", self._transitive_users(group_id), top,
                                      {"select": select})
        select = state["select"]

        def render(uid):
            user = self.users.get(uid)
            return None if user is None else self._project(user, select)

        base = f"/v1.0/groups/{quote(group_id, safe='')}/transitiveMembers/microsoft.graph.user"
        link_params = f"$select={','.join(select)}&$top={state['page_size']}&"
        return self._emit_page(state, base, select, render, {}, link_params)

    def _member_of(self, user_id: str) -> Response:
        """The groups a user belongs to, directly or through nested groups (one page: a user's
        groups are few here), each as Graph shows a group cast to ``microsoft.graph.group``."""
        if user_id not in self.users:
            return self._graph_error(404, "Request_ResourceNotFound", f"Resource '{user_id}' does not exist.")
        groups = [gid for gid in self.groups if user_id in self._transitive_users(gid)]
        return self._json(200, {
            "@odata.context": f"{self.graph_host}/v1.0/$metadata#directoryObjects",
            "value": [{"@odata.type": "#microsoft.graph.group", "id": gid} for gid in groups],
        })

    def _transitive_users(self, group_id: str) -> list[str]:
        seen_groups, out, seen_users = set(), [], set()
        stack = [group_id]
        while stack:
            gid = stack.pop()
            if gid in seen_groups:
                continue
            seen_groups.add(gid)
            for member in self.groups[gid]["members"]:
                if member in self.groups:
                    stack.append(member)
                elif member in self.users and member not in seen_users:
                    seen_users.add(member)
                    out.append(member)
        return out
