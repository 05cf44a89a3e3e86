"""GraphClient against the local fake Graph (real TLS, real MSAL, real HTTP; only sleep is faked)."""

from __future__ import annotations

import random
import re
import uuid

import httpx
import pytest

from halodb.errors import HalodbError, IntegrationFailed, TransientError
from halodb.integrations.azuread.graph import (
    USER_FIELDS,
    DeltaExpired,
    DeltaRead,
    GraphClient,
    GraphError,
    GraphRetryExhausted,
)
from tests.fakes.directory import generate_users


class FakeSleep:
    def __init__(self):
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleep():
    return FakeSleep()


@pytest.fixture
def make_client(fake_graph, sleep):
    clients = []

    def make(**overrides) -> GraphClient:
        kwargs = dict(
            authority_host=fake_graph.authority_host,
            graph_host=fake_graph.graph_host,
            verify=fake_graph.ssl_context_for_client(),
            timeout=10.0,
            sleep=sleep,
        )
        kwargs.update(overrides)
        secret = kwargs.pop("client_secret", fake_graph.client_secret)
        client = GraphClient(fake_graph.tenant_id, fake_graph.client_id, secret, **kwargs)
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


def graph_requests(fake, path_prefix="/v1.0/"):
    return [r for r in fake.request_log if r.split(" ", 1)[1].startswith(path_prefix)]


# -- token --------------------------------------------------------------------------------------


def test_token_success_uses_discovery_and_one_token_post(fake_graph, make_client):
    client = make_client()
    token = client.token()
    assert token and client.token() == token  # served from MSAL's cache the second time
    assert fake_graph.token_requests == 1
    assert fake_graph.request_log == [
        f"GET /{fake_graph.tenant_id}/v2.0/.well-known/openid-configuration",
        f"POST /{fake_graph.tenant_id}/oauth2/v2.0/token",
    ]


def test_token_failure_is_one_line_names_tenant_and_aad_code_and_hides_secret(fake_graph, make_client):
    secret = "Wr0ng~Secret.value-that-must-not-leak"
    client = make_client(client_secret=secret)
    with pytest.raises(IntegrationFailed) as info:
        client.token()
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert fake_graph.tenant_id in message
    assert "invalid_client" in message and "AADSTS7000215" in message
    assert secret not in message
    assert "Trace ID" not in message


def test_unknown_tenant_fails_cleanly(fake_graph, make_client):
    client = GraphClient("no-such-tenant", fake_graph.client_id, fake_graph.client_secret,
                         authority_host=fake_graph.authority_host, graph_host=fake_graph.graph_host,
                         verify=fake_graph.ssl_context_for_client())
    try:
        with pytest.raises(IntegrationFailed, match=r"tenant no-such-tenant failed: .*AADSTS90002"):
            client.token()
    finally:
        client.close()


def test_untrusted_certificate_is_refused(fake_graph, make_client):
    client = make_client(verify=True)  # system CAs only: the fake's private CA is not among them
    with pytest.raises(IntegrationFailed, match="ConnectError"):
        client.token()


def test_expired_access_token_is_refreshed_once(fake_graph, make_client):
    fake_graph.add_many(generate_users(5, seed=3))
    client = make_client()
    assert len(list(client.users())) == 5
    fake_graph.expire_access_tokens()
    assert len(list(client.users())) == 5
    assert fake_graph.token_requests == 2


# -- full read ----------------------------------------------------------------------------------


def test_full_read_over_several_pages_returns_exactly_the_users(fake_graph, make_client):
    users = generate_users(237, seed=11)
    fake_graph.add_many(users)
    client = make_client()
    got = list(client.users(USER_FIELDS, page_size=50))
    assert got == users  # same objects, same order, every selected field present
    listing = graph_requests(fake_graph)
    assert len(listing) == 5  # 50+50+50+50+37
    first = listing[0]
    assert first.startswith("GET /v1.0/users?$select=id,displayName,")
    assert "$top=50" in first
    assert all("$skiptoken=" in r for r in listing[1:])


def test_users_default_page_size_and_select_subset(fake_graph, make_client):
    fake_graph.add_many(generate_users(150, seed=12))
    got = list(make_client().users(["displayName", "mail"]))
    assert len(got) == 150
    assert set(got[0]) == {"id", "displayName", "mail"}  # Graph always adds the key
    assert len(graph_requests(fake_graph)) == 2


def test_iter_pages_is_lazy(fake_graph, make_client):
    fake_graph.add_many(generate_users(30, seed=13))
    pages = make_client().iter_pages("/v1.0/users", {"$top": 10, "$select": ["id"]})
    first = next(pages)
    assert len(first["value"]) == 10 and "@odata.nextLink" in first
    assert len(graph_requests(fake_graph)) == 1  # nothing fetched ahead


def test_other_4xx_raises_with_graph_code_and_message(fake_graph, make_client):
    with pytest.raises(GraphError) as info:
        list(make_client().users(["id", "favouriteColour"]))
    msg = str(info.value)
    assert "HTTP 400" in msg and "Request_BadRequest" in msg and "favouriteColour" in msg
    assert isinstance(info.value, IntegrationFailed) and info.value.status == 400


def test_foreign_next_link_is_refused(fake_graph, make_client):
    with pytest.raises(GraphError, match="refusing to send the token"):
        make_client().get_json("https://evil.example/v1.0/users")


# -- delta --------------------------------------------------------------------------------------


def test_delta_initial_read_pages_and_ends_with_delta_link(fake_graph, make_client):
    users = generate_users(250, seed=21)
    fake_graph.add_many(users)
    read = make_client().users_delta(USER_FIELDS, None)
    assert isinstance(read, DeltaRead)
    assert read.complete is False and read.delta_link is None
    got = list(read)
    assert got == users
    assert read.complete is True
    assert read.delta_link.startswith(f"{fake_graph.graph_host}/v1.0/users/delta?$deltatoken=")
    assert read.pages == 3  # delta pages are 100 (Graph ignores $top on delta)
    reqs = graph_requests(fake_graph)
    assert reqs[0].startswith("GET /v1.0/users/delta?$select=")
    assert all("$skiptoken=" in r for r in reqs[1:])


def test_delta_after_changes_returns_exactly_changed_and_removed(fake_graph, make_client):
    users = generate_users(120, seed=22)
    fake_graph.add_many(users)
    client = make_client()
    first = client.users_delta(USER_FIELDS, None)
    list(first)

    changed, gone, soft_gone = users[5]["id"], users[17]["id"], users[40]["id"]
    fake_graph.update(changed, jobTitle="Chief Halo Officer", department="IT")
    fake_graph.remove(gone, reason="deleted")
    fake_graph.remove(soft_gone)  # soft delete: reason "changed"
    fake_graph.update(users[60]["id"], employeeId="E-1")  # not in $select: not tracked
    new_id = fake_graph.add({"displayName": "Zoë Newcomer", "givenName": "Zoë", "surname": "Newcomer",
                             "userPrincipalName": "zoe.newcomer@contoso.example",
                             "accountEnabled": True, "userType": "Member"})

    second = client.users_delta(USER_FIELDS, first.delta_link)
    got = {u["id"]: u for u in second}
    assert second.complete and second.delta_link and second.delta_link != first.delta_link
    assert set(got) == {changed, gone, soft_gone, new_id}
    assert got[changed]["jobTitle"] == "Chief Halo Officer" and got[changed]["department"] == "IT"
    assert got[gone] == {"id": gone, "@removed": {"reason": "deleted"}}
    assert got[soft_gone] == {"id": soft_gone, "@removed": {"reason": "changed"}}
    assert got[new_id]["displayName"] == "Zoë Newcomer" and got[new_id]["mail"] is None
    assert got[new_id]["businessPhones"] == []

    third = client.users_delta(USER_FIELDS, second.delta_link)
    assert list(third) == [] and third.complete


def test_delta_partial_updates_carry_only_changed_properties(fake_graph, make_client):
    users = generate_users(10, seed=23)
    fake_graph.add_many(users)
    fake_graph.partial_updates = True
    client = make_client()
    first = client.users_delta(["displayName", "mail", "jobTitle"], None)
    list(first)
    fake_graph.update(users[2]["id"], jobTitle="Buyer")
    got = list(client.users_delta(None, first.delta_link))
    assert got == [{"id": users[2]["id"], "jobTitle": "Buyer"}]


@pytest.mark.parametrize("status", [410, 400])
def test_expired_delta_token_raises_delta_expired(fake_graph, make_client, status):
    fake_graph.add_many(generate_users(3, seed=24))
    client = make_client()
    first = client.users_delta(USER_FIELDS, None)
    list(first)
    fake_graph.expire_delta_tokens(status=status)
    read = client.users_delta(USER_FIELDS, first.delta_link)
    with pytest.raises(DeltaExpired) as info:
        list(read)
    assert isinstance(info.value, HalodbError) and not isinstance(info.value, IntegrationFailed)
    assert info.value.code == "syncStateNotFound" and info.value.status == status
    assert "expired" in str(info.value) and "\n" not in str(info.value)
    assert not read.complete and read.delta_link is None
    # The documented way out: a full delta read gives a fresh, working link.
    fresh = client.users_delta(USER_FIELDS, None)
    assert len(list(fresh)) == 3 and fresh.complete


def test_mid_paging_failure_raises_and_delta_read_is_not_complete(fake_graph, make_client, sleep):
    fake_graph.add_many(generate_users(350, seed=25))
    fake_graph.fail_on_page(3)
    read = make_client().users_delta(USER_FIELDS, None)
    seen = 0
    with pytest.raises(GraphError) as info:
        for _ in read:
            seen += 1
    assert seen == 200  # two good pages came through before the failure
    assert info.value.status == 500 and "UnknownError" in str(info.value)
    assert read.complete is False and read.delta_link is None
    assert sleep.calls == []  # 500 is not retried


# -- throttling and retries --------------------------------------------------------------------


def test_429_with_retry_after_is_honoured(fake_graph, make_client, sleep):
    fake_graph.add_many(generate_users(30, seed=31))
    client = make_client()
    client.token()
    fake_graph.throttle(2, retry_after=7)
    assert len(list(client.users(page_size=10))) == 30
    assert sleep.calls == [7.0, 7.0]
    assert client.retries_used == 2


def test_retry_after_is_capped(fake_graph, make_client, sleep):
    fake_graph.add_many(generate_users(3, seed=32))
    client = make_client(max_retry_after=5.0)
    fake_graph.throttle(1, retry_after=120)
    assert len(list(client.users())) == 3
    assert sleep.calls == [5.0]


@pytest.mark.parametrize("status", [503, 502, 504])
def test_5xx_gateway_errors_survived_with_backoff(fake_graph, make_client, sleep, status):
    fake_graph.add_many(generate_users(3, seed=33))
    client = make_client()
    fake_graph.fail_with(status, 3)  # no Retry-After: exponential backoff with jitter
    assert len(list(client.users())) == 3
    assert len(sleep.calls) == 3
    for attempt, delay in enumerate(sleep.calls, start=1):
        assert 0.5 * 2 ** (attempt - 1) <= delay <= 2 ** (attempt - 1)


def test_503_with_retry_after(fake_graph, make_client, sleep):
    fake_graph.add_many(generate_users(3, seed=34))
    client = make_client()
    fake_graph.fail_with(503, 1, retry_after=2)
    assert len(list(client.users())) == 3
    assert sleep.calls == [2.0]


def test_retry_budget_exhausted_gives_clear_error(fake_graph, make_client, sleep):
    fake_graph.add_many(generate_users(3, seed=35))
    client = make_client(retry_budget=8)
    client.token()
    fake_graph.throttle(50, retry_after=1)
    with pytest.raises(GraphRetryExhausted) as info:
        list(client.users())
    assert str(info.value).startswith(
        "Graph throttled /v1.0/users 9 times (HTTP 429); retry budget of 8 exhausted")
    assert isinstance(info.value, IntegrationFailed) and not isinstance(info.value, TransientError)
    assert len(sleep.calls) == 8
    assert len(graph_requests(fake_graph)) == 9


def test_retry_budget_is_per_client_run(fake_graph, make_client, sleep):
    fake_graph.add_many(generate_users(3, seed=36))
    client = make_client(retry_budget=3)
    fake_graph.throttle(2, retry_after=0)
    list(client.users())
    fake_graph.throttle(2, retry_after=0)
    with pytest.raises(GraphRetryExhausted, match=r"2 times \(HTTP 429\); retry budget of 3"):
        list(client.users())


def test_transport_errors_are_retried_then_reported(fake_graph, make_client, sleep):
    # A port nothing listens on: every Graph request fails to connect.
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"https://127.0.0.1:{s.getsockname()[1]}"
    client = make_client(graph_host=dead, retry_budget=2)
    client.scope = f"{fake_graph.graph_host}/.default"  # the token still comes from the fake
    with pytest.raises(GraphRetryExhausted, match=r"Graph unreachable /v1.0/users 3 times \(ConnectError"):
        list(client.users())
    assert len(sleep.calls) == 2


# -- groups -------------------------------------------------------------------------------------


def test_group_members_transitive_over_pages(fake_graph, make_client):
    users = generate_users(260, seed=41)
    fake_graph.add_many(users)
    inner = fake_graph.add_group([u["id"] for u in users[200:]], display_name="Inner")
    outer = fake_graph.add_group([u["id"] for u in users[:150]] + [inner, users[0]["id"]],
                                 display_name="Halo users")
    ids = list(make_client().group_members(outer))
    assert len(ids) == len(set(ids)) == 210
    assert set(ids) == {u["id"] for u in users[:150] + users[200:]}
    reqs = graph_requests(fake_graph)
    assert reqs[0] == (f"GET /v1.0/groups/{outer}/transitiveMembers/microsoft.graph.user?$select=id")
    assert len(reqs) == 3  # 100 + 100 + 10


def test_member_of_lists_a_users_groups_nested_ones_included(fake_graph, make_client):
    users = generate_users(3, seed=43)
    fake_graph.add_many(users)
    inner = fake_graph.add_group([users[0]["id"]], display_name="Inner")
    outer = fake_graph.add_group([inner], display_name="Outer")
    other = fake_graph.add_group([users[1]["id"]], display_name="Other")
    client = make_client()
    assert set(client.member_of(users[0]["id"])) == {inner, outer}
    assert set(client.member_of(users[1]["id"])) == {other}
    assert list(client.member_of(users[2]["id"])) == []
    assert graph_requests(fake_graph)[0] == f"GET /v1.0/users/{users[0]['id']}/transitiveMemberOf/microsoft.graph.group?$select=id"


def test_group_members_page_size_and_missing_group(fake_graph, make_client):
    users = generate_users(25, seed=42)
    fake_graph.add_many(users)
    gid = fake_graph.add_group([u["id"] for u in users])
    client = make_client()
    assert len(list(client.group_members(gid, page_size=10))) == 25
    with pytest.raises(GraphError, match=r"HTTP 404 Request_ResourceNotFound"):
        list(client.group_members(str(uuid.uuid4())))


# -- generator ---------------------------------------------------------------------------------


def test_generator_is_deterministic():
    assert generate_users(500, seed=5) == generate_users(500, seed=5)
    assert generate_users(500, seed=5) != generate_users(500, seed=6)
    assert generate_users(100, seed=5) == generate_users(500, seed=5)[:100]


def test_generator_field_shapes_and_mix():
    users = generate_users(20_000, seed=9)
    guid = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    assert len({u["id"] for u in users}) == len(users)
    for u in users:
        assert list(u) == USER_FIELDS
        assert guid.match(u["id"])
        assert isinstance(u["businessPhones"], list)
        assert isinstance(u["accountEnabled"], bool)
        assert u["userType"] in ("Member", "Guest")
        if u["userType"] == "Guest":
            assert "#EXT#@" in u["userPrincipalName"]
        else:
            assert u["userPrincipalName"].endswith("@contoso.example")
        if u["mail"]:
            assert u["mail"].isascii() and re.match(r"^[a-z0-9]+\.[a-z0-9]+\d*@[a-z.]+$", u["mail"])
    mails = [u["mail"] for u in users if u["mail"]]
    assert len(mails) == len(set(mails))  # collisions were made unique
    n = len(users)

    def share(pred):
        return sum(1 for u in users if pred(u)) / n

    assert 0.03 < share(lambda u: not u["displayName"].isascii()) < 0.07
    assert 0.02 < share(lambda u: not u["accountEnabled"]) < 0.045
    assert 0.01 < share(lambda u: u["userType"] == "Guest") < 0.03
    assert share(lambda u: u["mail"] is None) > 0.02
    assert share(lambda u: not u["businessPhones"]) > 0.1
    assert share(lambda u: u["department"] is None) > 0.03
    names = {u["surname"] for u in users} | {u["givenName"] for u in users}
    assert {"Zoë", "Łukasz", "José", "李", "Müller"} <= names


def test_generator_makes_100k_distinct_users():
    # The Azure AD benchmark reads 100,000 of them. (How long that takes is the benchmark's to
    # measure, not a test's to assert: a slower machine would fail it.)
    users = generate_users(100_000, seed=1)
    assert len(users) == 100_000
    assert len({u["id"] for u in users}) == len({u["userPrincipalName"] for u in users}) == 100_000


def test_ca_bundle_environment_cannot_override_verify(fake_graph, make_client, monkeypatch):
    # The trap from requests: these variables silently replace verify=. MSAL here goes through
    # the client's own httpx connection, so the SSLContext given as verify is what counts.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/nonexistent/ca.pem")
    assert make_client().token()


def test_retry_after_http_date_is_understood(make_client):
    import email.utils
    import time
    client = make_client(max_retry_after=60.0)
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    response = httpx.Response(429, headers={"Retry-After": when})
    assert 25 <= client._backoff(response, 1) <= 30


# Reads every user in a process of its own and prints how many it read and tracemalloc's peak.
_READ_ALL_USERS = """
import json, ssl, sys, tracemalloc
from halodb.integrations.azuread.graph import GraphClient
tenant, client_id, secret, authority, graph, cafile, page = sys.argv[1:]
verify = ssl.create_default_context(cafile=cafile)
client = GraphClient(tenant, client_id, secret, authority_host=authority, graph_host=graph,
                     verify=verify, timeout=10.0)
client.token()
tracemalloc.start()
count = sum(1 for _ in client.users(page_size=int(page)))
print(json.dumps({"count": count, "peak": tracemalloc.get_traced_memory()[1]}))
"""


def test_peak_memory_is_flat_page_by_page(fake_graph, tmp_path):
    import json
    import subprocess
    import sys
    import tracemalloc
    n = 20_000
    tracemalloc.start()
    users = generate_users(n, seed=51)
    held = tracemalloc.get_traced_memory()[0]  # what holding every user dict costs (~18 MB)
    tracemalloc.stop()
    fake_graph.add_many(users)
    # The client reads in a process of its own: in this one, the fake Graph's server threads
    # allocate too (werkzeug takes a 10 MB buffer whenever it drains a closed connection), and a
    # process-wide peak cannot tell their memory from the client's. CI failed on that once.
    cafile = tmp_path / "ca.pem"
    fake_graph.ca.cert_pem.write_to_path(str(cafile))
    done = subprocess.run(
        [sys.executable, "-c", _READ_ALL_USERS, fake_graph.tenant_id, fake_graph.client_id,
         fake_graph.client_secret, fake_graph.authority_host, fake_graph.graph_host, str(cafile),
         "200"],
        capture_output=True, text=True, timeout=120, check=True)
    read = json.loads(done.stdout)
    assert read["count"] == n
    # One page at a time measured 2.7 MB in every run (a page as bytes, text and dicts, and what the
    # first request imports); holding everything would be ``held``.
    assert read["peak"] < held / 4, (read["peak"], held)


# -- a misbehaving Graph ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, complaint",
    [
        ({"value": None}, "'value' is not a list of objects"),
        ({"value": {"id": "x"}}, "'value' is not a list of objects"),
        ({"value": ["not an object"]}, "'value' is not a list of objects"),
        ({"value": [], "@odata.nextLink": 42}, "@odata.nextLink is not a string"),
    ],
)
def test_malformed_pages_are_a_graph_error_not_a_crash(fake_graph, make_client, body, complaint):
    fake_graph.answer_raw("/v1.0/odd", body)
    with pytest.raises(GraphError, match=re.escape(complaint)):
        list(make_client().iter_pages("/v1.0/odd"))


def test_a_next_link_that_never_moves_on_stops_the_read(fake_graph, make_client):
    loop = f"{fake_graph.graph_host}/v1.0/loop?$skiptoken=same"
    fake_graph.answer_raw("/v1.0/loop", {"value": [{"id": "a"}], "@odata.nextLink": loop})
    pages = make_client().iter_pages("/v1.0/loop")
    with pytest.raises(GraphError, match="same next link twice"):
        for _ in range(10):
            next(pages)


@pytest.mark.parametrize("advice", ["nan", "inf", "-inf", "NaN", "Infinity"])
def test_a_retry_after_that_is_no_number_falls_back_to_backoff(fake_graph, make_client, advice):
    client = make_client()
    client._random = random.Random(7)
    delay = client._backoff(httpx.Response(429, headers={"Retry-After": advice}), 1)
    client._random = random.Random(7)
    plain = client._backoff(httpx.Response(429), 1)  # no Retry-After at all: the plain backoff
    assert delay == plain == random.Random(7).uniform(0.5, 1.0)  # attempt 1: base 1 s times 0.5-1
