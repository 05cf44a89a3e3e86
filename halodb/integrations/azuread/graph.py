"""Microsoft Graph source client for the Azure AD integration (no database code here).

What it does:

* Gets an app-only token with MSAL (client credentials) from ``<authority_host>/<tenant_id>``
  for the scope ``<graph_host>/.default``. MSAL is given our own small HTTP client built on
  the same ``httpx.Client`` that talks to Graph, so ``verify`` (a bool or an ``ssl.SSLContext``)
  is honoured for the token endpoint too. Because ``requests`` is not involved,
  ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` cannot silently override ``verify``.
  Instance discovery is switched off, so MSAL only GETs
  ``<authority>/v2.0/.well-known/openid-configuration`` and POSTs to its ``token_endpoint``.
* Reads pages one at a time and follows ``@odata.nextLink`` exactly as Graph returns it. It never
  holds more than one page, so peak memory stays flat however large the tenant is.
* Retries 429, 502, 503 and 504 responses, and transport errors. It waits for ``Retry-After``
  (seconds, or an HTTP date), capped at ``max_retry_after``. Without that header it backs off
  exponentially with jitter. Every retry is taken from one budget per client (one client per
  integration run).
* On a 401 it drops the cached token, gets a new one and retries once.

Errors (every message is one line and never contains the client secret or a token):

* :class:`GraphError` (an ``IntegrationFailed``): a token failure, a 4xx answer (with Graph's
  ``error.code`` and ``error.message``), a non-retryable 5xx, or a response that is not valid JSON.
* :class:`GraphRetryExhausted` (a ``GraphError``, so also an ``IntegrationFailed``): the retry
  budget ran out, e.g. ``Graph throttled /v1.0/users 9 times (HTTP 429); retry budget of 8
  exhausted``. This is deliberately **not** a ``TransientError``. By the time it is raised the
  client has already waited and retried as much as one run may, and a second layer of engine
  retries would only add to the throttling Graph complains about. The run fails, Last Error
  says why, the stored delta link is not advanced, and the next scheduled run starts again.
* :class:`DeltaExpired` (a ``HalodbError``): the stored delta link is no longer valid (HTTP 410,
  or error code ``syncStateNotFound`` / ``resyncRequired``). Identity resources answer 400
  ``syncStateNotFound`` once a delta link is older than 7 days. The caller should do a full read.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import re
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
import msal

from halodb.errors import HalodbError, IntegrationFailed

__all__ = [
    "USER_FIELDS",
    "DeltaExpired",
    "DeltaRead",
    "GraphClient",
    "GraphError",
    "GraphRetryExhausted",
]

log = logging.getLogger(__name__)

#: Default ``$select`` for users: the fields the Halo user mapping can use.
USER_FIELDS: list[str] = [
    "id",
    "displayName",
    "givenName",
    "surname",
    "mail",
    "userPrincipalName",
    "businessPhones",
    "mobilePhone",
    "jobTitle",
    "department",
    "accountEnabled",
    "userType",
    "officeLocation",
    "companyName",
]

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
DELTA_EXPIRED_CODES = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})
_BACKOFF_BASE = 1.0  # seconds; the first backoff without Retry-After is 0.5-1 s, then doubles


class GraphError(IntegrationFailed):
    """Graph or the token endpoint refused or failed a request."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 hint: str | None = None):
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code


class GraphRetryExhausted(GraphError):
    """Graph kept throttling or failing after the client's retry budget was spent."""


class DeltaExpired(HalodbError):
    """The stored delta link is no longer accepted; do a full read and store the new link."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message, hint="run a full read; a new delta link comes with it")
        self.status = status
        self.code = code


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class _MsalHttpClient:
    """The small requests-like interface MSAL wants (``msal.oauth2cli.http.HttpClient``), on httpx.

    httpx responses already have ``status_code``, ``text``, ``headers`` and ``raise_for_status()``.
    """

    def __init__(self, client: httpx.Client):
        self._client = client

    def _send(self, method: str, url: str, params=None, data=None, headers=None, **kwargs):
        headers = {k: v for k, v in (headers or {}).items() if v is not None}
        body: dict[str, Any] = {}
        if isinstance(data, (str, bytes)):
            body["content"] = data
        elif data is not None:
            body["data"] = data
        timeout = kwargs.get("timeout")
        extra = {"timeout": timeout} if timeout is not None else {}
        return self._client.request(method, url, params=params, headers=headers, **body, **extra)

    def post(self, url, params=None, data=None, headers=None, **kwargs):
        return self._send("POST", url, params=params, data=data, headers=headers, **kwargs)

    def get(self, url, params=None, headers=None, **kwargs):
        return self._send("GET", url, params=params, headers=headers, **kwargs)

    def close(self):  # MSAL may call this; the httpx client belongs to GraphClient
        pass


class DeltaRead:
    """One pass over ``/users/delta``: iterate it once for user dicts (and ``@removed`` entries).

    ``delta_link`` and ``complete`` are set only after the last page (the one that carries
    ``@odata.deltaLink``) has been read. If iteration stops early or raises, ``complete`` stays
    ``False`` and ``delta_link`` stays ``None``: do not store anything from an incomplete read.
    """

    def __init__(self, pages: Iterator[dict]):
        self._pages = pages
        self._started = False
        self.delta_link: str | None = None
        self.complete = False
        self.pages = 0
        self.count = 0

    def __iter__(self) -> Iterator[dict]:
        if self._started:
            raise RuntimeError("a DeltaRead can be iterated only once")
        self._started = True
        return self._iterate()

    def _iterate(self) -> Iterator[dict]:
        for page in self._pages:
            self.pages += 1
            for item in page.get("value", ()):
                self.count += 1
                yield item
            link = page.get("@odata.deltaLink")
            if link:
                self.delta_link = link
                self.complete = True


def _checked_page(body: dict, path: str) -> dict:
    """A collection page as Graph documents it (``value``: a list of objects; links: strings),
    or a GraphError naming what is off, rather than a TypeError deep in the integration."""
    value = body.get("value", [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise GraphError(f"Graph GET {path} returned a page whose 'value' is not a list of objects")
    for key in ("@odata.nextLink", "@odata.deltaLink"):
        if key in body and not isinstance(body[key], str):
            raise GraphError(f"Graph GET {path} returned a page whose {key} is not a string")
    return body


class GraphClient:
    """Read users, user changes and group members from Microsoft Graph for one tenant."""

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        *,
        authority_host: str = "https://login.microsoftonline.com",
        graph_host: str = "https://graph.microsoft.com",
        verify: ssl.SSLContext | bool = True,
        timeout: float = 30.0,
        retry_budget: int = 8,
        max_retry_after: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not tenant_id or not client_id or not client_secret:
            raise IntegrationFailed("Azure AD connection needs a tenant id, a client id and a client secret")
        self.tenant_id = tenant_id
        self.client_id = client_id
        self._secret = client_secret
        self.authority = f"{authority_host.rstrip('/')}/{tenant_id}"
        self.graph_host = graph_host.rstrip("/")
        self.scope = f"{self.graph_host}/.default"
        self.retry_budget = retry_budget
        self.max_retry_after = max_retry_after
        self.retries_used = 0
        self._sleep = sleep
        self._random = random.Random()
        g = urlsplit(self.graph_host)
        self._graph_origin = (g.scheme.lower(), g.netloc.lower())
        self._http = httpx.Client(
            verify=verify,
            timeout=httpx.Timeout(timeout),
            headers={"Accept": "application/json"},
            follow_redirects=False,
        )
        self._app: msal.ConfidentialClientApplication | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- token -------------------------------------------------------------------------------

    def _fail_token(self, detail: str) -> GraphError:
        if len(self._secret) >= 6:  # never echo the secret, whatever the server sent back
            detail = detail.replace(self._secret, "***")
        detail = _one_line(detail)
        return GraphError(f"Azure AD token request for tenant {self.tenant_id} failed: {detail}")

    def token(self, *, refresh: bool = False) -> str:
        """Return an access token for Graph (MSAL serves it from its cache until it expires).

        ``refresh=True`` drops the cached token first, so the token endpoint is asked again.
        """
        try:
            if self._app is None:
                self._app = msal.ConfidentialClientApplication(
                    self.client_id,
                    client_credential=self._secret,
                    authority=self.authority,
                    http_client=_MsalHttpClient(self._http),
                    instance_discovery=False,
                    token_cache=msal.TokenCache(),
                )
            if refresh:
                cache = self._app.token_cache
                for at in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                    cache.remove_at(at)
            result = self._app.acquire_token_for_client(scopes=[self.scope])
        except httpx.HTTPError as exc:
            raise self._fail_token(f"{type(exc).__name__} talking to {self.authority}: {exc}") from None
        except Exception as exc:  # MSAL raises ValueError/RuntimeError/MsalServiceError on discovery
            raise self._fail_token(_discovery_detail(exc) or f"{type(exc).__name__}: {exc}") from None
        if not isinstance(result, Mapping) or "access_token" not in result:
            raise self._fail_token(_aad_detail(result if isinstance(result, Mapping) else {}))
        return result["access_token"]

    # -- requests ----------------------------------------------------------------------------

    def _url(self, url_or_path: str, params: Mapping[str, Any] | None) -> str:
        if url_or_path.startswith(("http://", "https://")):
            parts = urlsplit(url_or_path)
            if (parts.scheme.lower(), parts.netloc.lower()) != self._graph_origin:
                raise GraphError(
                    f"Graph returned a link to {parts.scheme}://{parts.netloc}, not {self.graph_host}; "
                    "refusing to send the token there")
            url = url_or_path
        else:
            if not url_or_path.startswith("/"):
                url_or_path = "/" + url_or_path
            url = self.graph_host + url_or_path
        if params:
            query = urlencode(
                {k: ",".join(v) if isinstance(v, (list, tuple)) else v for k, v in params.items()},
                safe="$,", quote_via=quote)
            url += ("&" if "?" in url else "?") + query
        return url

    def _backoff(self, response: httpx.Response | None, attempt: int) -> float:
        if response is not None:
            value = response.headers.get("Retry-After")
            if value:
                value = value.strip()
                try:
                    seconds = float(value)
                    if not math.isfinite(seconds):
                        seconds = None  # "nan", "inf": no usable advice, back off as usual
                except ValueError:
                    try:
                        when = email.utils.parsedate_to_datetime(value)
                        seconds = when.timestamp() - time.time()
                    except (TypeError, ValueError):
                        seconds = None
                if seconds is not None:
                    return min(max(seconds, 0.0), self.max_retry_after)
        exp = _BACKOFF_BASE * (2 ** min(attempt - 1, 16))
        return min(exp * self._random.uniform(0.5, 1.0), self.max_retry_after)

    def get_json(self, url_or_path: str, params: Mapping[str, Any] | None = None) -> dict:
        """GET one Graph resource with token, retries and error mapping; return the JSON body."""
        url = self._url(url_or_path, params)
        path = urlsplit(url).path  # what messages show: never the query (it may hold tokens)
        attempts = 0
        refreshed = False
        while True:
            token = self.token()
            try:
                response = self._http.get(url, headers={"Authorization": f"Bearer {token}"})
            except httpx.TransportError as exc:
                attempts += 1
                self._spend_retry(path, attempts, "unreachable", None,
                                  f" ({type(exc).__name__}: {_one_line(str(exc), 120)})")
                delay = self._backoff(None, attempts)
                log.warning("Graph %s: %s; retrying in %.1f s", path, type(exc).__name__, delay)
                self._sleep(delay)
                continue
            status = response.status_code
            if status == 200:
                try:
                    body = response.json()
                except ValueError:
                    raise GraphError(f"Graph GET {path} returned a body that is not JSON",
                                     status=status) from None
                if not isinstance(body, dict):
                    raise GraphError(f"Graph GET {path} returned JSON that is not an object", status=status)
                return body
            if status == 401 and not refreshed:
                refreshed = True
                log.info("Graph %s answered 401; getting a new token", path)
                self.token(refresh=True)
                continue
            code, message = _graph_error(response)
            if status == 410 or (code or "").lower() in DELTA_EXPIRED_CODES:
                raise DeltaExpired(
                    f"Graph delta link for tenant {self.tenant_id} has expired "
                    f"(HTTP {status} {code or ''}: {message})".replace(" :", ":"),
                    status=status, code=code)
            if status in RETRYABLE_STATUS:
                attempts += 1
                what = "throttled" if status == 429 else "unavailable"
                self._spend_retry(path, attempts, what, status)
                delay = self._backoff(response, attempts)
                log.warning("Graph %s answered %s; retrying in %.1f s", path, status, delay)
                self._sleep(delay)
                continue
            raise GraphError(
                f"Graph GET {path} failed: HTTP {status} {code or ''}: {message}".replace(" :", ":"),
                status=status, code=code)

    def _spend_retry(self, path: str, attempts: int, what: str, status: int | None,
                     detail: str = "") -> None:
        """Take one retry from the run's budget, or raise GraphRetryExhausted if none is left."""
        if self.retries_used >= self.retry_budget:
            suffix = f" (HTTP {status})" if status else detail
            times = "time" if attempts == 1 else "times"
            raise GraphRetryExhausted(
                f"Graph {what} {path} {attempts} {times}{suffix}; "
                f"retry budget of {self.retry_budget} exhausted",
                status=status,
                hint="Graph is throttling or down; the next scheduled run will try again")
        self.retries_used += 1

    def iter_pages(self, url_or_path: str, params: Mapping[str, Any] | None = None) -> Iterator[dict]:
        """Yield each page (the JSON object) of a collection, following ``@odata.nextLink``.

        ``params`` go on the first request only; Graph's next links already carry them.
        """
        body = _checked_page(self.get_json(url_or_path, params), urlsplit(url_or_path).path)
        followed: set[str] = set()
        while True:
            yield body
            link = body.get("@odata.nextLink")
            if not link:
                return
            if link in followed:  # Graph handing out the same page again would never end
                raise GraphError(f"Graph GET {urlsplit(link).path} sent the same next link twice; the read was stopped")
            followed.add(link)
            body = _checked_page(self.get_json(link), urlsplit(link).path)

    # -- resources ---------------------------------------------------------------------------

    def users(self, select: list[str] | None = None, *, page_size: int | None = None) -> Iterator[dict]:
        """Every user in the tenant (``GET /v1.0/users``), one page in memory at a time."""
        params: dict[str, Any] = {"$select": list(select or USER_FIELDS)}
        if page_size:
            params["$top"] = int(page_size)
        for page in self.iter_pages("/v1.0/users", params):
            yield from page.get("value", ())

    def users_delta(self, select: list[str] | None = None, delta_link: str | None = None) -> DeltaRead:
        """Changes since ``delta_link`` (or every user, when it is ``None``), as a :class:`DeltaRead`.

        With a ``delta_link`` the ``select`` argument is ignored: the link carries the original query.
        Raises :class:`DeltaExpired` (while iterating) when Graph no longer accepts the link.
        """
        if delta_link:
            pages = self.iter_pages(delta_link)
        else:
            pages = self.iter_pages("/v1.0/users/delta", {"$select": list(select or USER_FIELDS)})
        return DeltaRead(pages)

    def group_members(self, group_id: str, *, page_size: int | None = None) -> Iterator[str]:
        """Object ids of the users in a group, nested groups included (transitive members)."""
        params: dict[str, Any] = {"$select": "id"}
        if page_size:
            params["$top"] = int(page_size)
        path = f"/v1.0/groups/{quote(group_id, safe='')}/transitiveMembers/microsoft.graph.user"
        for page in self.iter_pages(path, params):
            for item in page.get("value", ()):
                if item.get("id"):
                    yield item["id"]

    def member_of(self, user_id: str) -> Iterator[str]:
        """Ids of the groups a user belongs to, directly or through nested groups."""
        path = f"/v1.0/users/{quote(user_id, safe='')}/transitiveMemberOf/microsoft.graph.group"
        for page in self.iter_pages(path, {"$select": "id"}):
            for item in page.get("value", ()):
                if item.get("id"):
                    yield item["id"]


def _aad_detail(body: Mapping) -> str:
    """``error: first line of error_description`` from an Entra (AAD) error body."""
    error = body.get("error") or "no_token"
    desc = str(body.get("error_description") or "").strip().splitlines()
    codes = body.get("error_codes") or []
    detail = f"{error}: {desc[0] if desc else 'no description'}"
    if codes and not (desc and desc[0].startswith("AADSTS")):
        detail += f" (AADSTS{codes[0]})"
    return detail


def _discovery_detail(exc: BaseException) -> str | None:
    """MSAL wraps a failed OIDC discovery in a generic ValueError; dig out Entra's own answer."""
    seen = 0
    while exc is not None and seen < 5:
        match = re.search(r"HTTP status: (\d+), Error: (.*)$", str(exc), re.S)
        if match:
            try:
                body = json.loads(match.group(2))
            except ValueError:
                body = None
            answer = _aad_detail(body) if isinstance(body, dict) else _one_line(match.group(2), 200)
            return f"authority discovery answered HTTP {match.group(1)}: {answer}"
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _graph_error(response: httpx.Response) -> tuple[str | None, str]:
    """Graph's ``{"error": {"code", "message"}}``, or the start of whatever else came back."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return err.get("code"), _one_line(err.get("message") or "no message")
    text = _one_line(response.text or response.reason_phrase or "", 200)
    return None, text or "no message"
