"""What an Azure AD connection in Halo configures, end to end against the local Graph: matching
order and matching fields, group-based site mapping, the landing site and the tenant → client map,
the deactivation limits on removals, national clouds, and the client secret from appsettings.json
(never shown, never logged)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select

from halodb.cli import main
from halodb.config import Settings
from halodb.errors import IntegrationFailed
from halodb.halo.schema import area, areaazuretenant, site, users
from halodb.integrations.azuread import client_secret, endpoints
from halodb.integrations.azuread.mapping import match_fields
from tests.fakes.directory import generate_users
from tests.helpers import add_client_with_site
from tests.integrations.azuread.test_azuread_sync import (
    N,
    Tenant,
    by_entity,
    connection_row,
    halo_tables,
    halo_users,
    run,
    stored_cursor,
    write_config,
)

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def tenant(halo, fake_graph, tmp_path, monkeypatch):
    return Tenant(halo, fake_graph, tmp_path, monkeypatch)


def add_users(engine, rows):
    keys = {k for r in rows for k in r}
    with engine.begin() as conn:
        conn.execute(insert(users), [{k: r.get(k) for k in keys} for r in rows])


def user_by_name(engine, name):
    with engine.connect() as conn:
        return conn.execute(select(users.c.id, users.c.azureoid, users.c.name).where(users.c.name == name)).one()


def add_site(engine, client_id, name, **values):
    with engine.begin() as conn:
        return conn.execute(insert(site).returning(site.c.id), {"name": name, "client_id": client_id, **values}).scalar_one()


# -- matching: Azure object id, then email, then UPN ------------------------------------------------


def with_own_mail(tenant, fake_graph, k):
    """``k`` people whose mail differs from their UPN (members usually share the local part)."""
    out = []
    for i, person in enumerate([p for p in tenant.people if p["mail"] and p["accountEnabled"]][:k]):
        mail = f"alias{i}.{person['mail']}".replace("@contoso.example", "@mail.contoso.example")
        fake_graph.update(person["id"], mail=mail)
        out.append({**person, "mail": mail})
    return out


def test_matching_order_is_object_id_then_email_then_upn(halo, db_url, tmp_path, tenant, fake_graph):
    p0, p1, p2 = with_own_mail(tenant, fake_graph, 3)
    sid, cid = tenant.site_id, tenant.client_id
    add_users(halo, [
        {"name": "By oid", "azureoid": p0["id"], "emailaddress": "someone.else@contoso.example", "site_id": sid, "client_id": cid},
        {"name": "Same mail", "emailaddress": p0["mail"], "site_id": sid, "client_id": cid},  # loses to the oid
        {"name": "By upn", "login": f" {p1['userPrincipalName'].upper()}", "site_id": sid, "client_id": cid},
        {"name": "By mail", "emailaddress": p2["mail"], "login": "not-the-upn@contoso.example", "site_id": sid, "client_id": cid},
    ])  # fmt: skip
    before = {name: user_by_name(halo, name).id for name in ("By oid", "Same mail", "By upn", "By mail")}
    tenant.connect()

    result = by_entity(run(write_config(tmp_path, db_url)))

    assert (result.status, result.created, result.updated) == ("ok", N - 3, 3), result.error
    people = halo_users(halo)
    assert people[p0["id"]]["id"] == before["By oid"] and people[p0["id"]]["emailaddress"] == p0["mail"]
    assert people[p1["id"]]["id"] == before["By upn"]
    assert people[p2["id"]]["id"] == before["By mail"] and people[p2["id"]]["login"] == p2["userPrincipalName"]
    assert user_by_name(halo, "Same mail") == (before["Same mail"], None, "Same mail")  # untouched
    with halo.connect() as conn:
        assert len(conn.execute(select(users.c.id)).all()) == N + 1  # no duplicates; "Same mail" stays


def test_user_matching_fields_choose_email_or_upn(halo, db_url, tmp_path, tenant, fake_graph):
    p0, p1 = with_own_mail(tenant, fake_graph, 2)
    sid, cid = tenant.site_id, tenant.client_id
    add_users(halo, [
        {"name": "Mail only", "emailaddress": p0["mail"], "site_id": sid, "client_id": cid},
        {"name": "Upn only", "login": p1["userPrincipalName"], "site_id": sid, "client_id": cid},
    ])  # fmt: skip
    tenant.connect(user_matching_fields="UPN")

    result = by_entity(run(write_config(tmp_path, db_url)))

    assert (result.status, result.created, result.updated) == ("ok", N - 1, 1), result.error
    assert user_by_name(halo, "Mail only").azureoid is None  # email is not a matcher here
    assert halo_users(halo)[p1["id"]]["name"] == p1["displayName"]


def test_unknown_matching_field_fails_the_entity_and_writes_nothing(halo, db_url, tmp_path, tenant):
    row_id = tenant.connect(user_matching_fields="email,shoe size")

    result = by_entity(run(write_config(tmp_path, db_url)))

    assert result.status == "failed"
    assert "user_matching_fields: unknown matching field 'shoe size'" in result.error
    assert halo_users(halo) == {} and "shoe size" in connection_row(halo, row_id)["lasterror"]


def test_match_fields_keep_the_order_whatever_the_list_says():
    assert match_fields(None) == [("azureoid",), ("emailaddress",), ("login",)]
    assert match_fields("upn, mail") == [("azureoid",), ("emailaddress",), ("login",)]
    assert match_fields("userPrincipalName") == [("azureoid",), ("login",)]
    assert match_fields("email;upn", agents=True) == [("azureoid",), ("email",)]
    with pytest.raises(ValueError, match="'phone'"):
        match_fields("email,phone")


# -- sites: group mappings, landing site, tenant → client ---------------------------------------------


def test_group_mappings_by_sequence_with_nested_groups_and_no_unmatched(halo, db_url, tmp_path, tenant, fake_graph):
    p0, p1, p2 = (p["id"] for p in tenant.people[:3])
    third = add_site(halo, tenant.client_id, "Manchester")
    inner = fake_graph.add_group([p0], display_name="London desk")
    london = fake_graph.add_group([inner], display_name="London")  # p0 only through the nested group
    everyone = fake_graph.add_group([p0, p1], display_name="Everyone")
    tenant.connect(mappings=[(london, tenant.other_site), (everyone, third)], createunmatchedusers=False)

    result = by_entity(run(write_config(tmp_path, db_url)))

    assert (result.status, result.created) == ("ok", 2), result.error
    people = halo_users(halo)
    assert set(people) == {p0, p1}  # p2 is in no mapped group and unmatched users are not created
    assert people[p0]["site_id"] == tenant.other_site  # the first mapping by sequence wins
    assert people[p1]["site_id"] == third
    assert p2 not in people


@pytest.mark.parametrize("short_delta", [200, 0], ids=["per-user groups", "group listing"])
def test_a_delta_places_new_users_by_their_groups_either_way(halo, db_url, tmp_path, tenant, fake_graph, monkeypatch, short_delta):
    # A short delta asks Graph for each changed user's groups; a long one (SHORT_DELTA = 0 here)
    # reads every mapped group's members. Both must place users the same way.
    monkeypatch.setattr(sys.modules["halodb.integrations.azuread"], "SHORT_DELTA", short_delta)
    p0, p1 = (p["id"] for p in tenant.people[:2])
    third = add_site(halo, tenant.client_id, "Manchester")
    inner = fake_graph.add_group([p0], display_name="London desk")
    london = fake_graph.add_group([inner], display_name="London")
    everyone = fake_graph.add_group([p0, p1], display_name="Everyone")
    tenant.connect(mappings=[(london, tenant.other_site), (everyone, third)], createunmatchedusers=False)
    config = write_config(tmp_path, db_url)
    assert by_entity(run(config)).created == 2

    newcomer = fake_graph.add(next(u for u in generate_users(20, seed=31) if u["accountEnabled"] and u.get("mail")))
    fake_graph.groups[inner]["members"].append(newcomer)  # in London only through the nested group
    fake_graph.request_log.clear()
    result = by_entity(run(config))

    assert (result.status, result.created) == ("ok", 1), result.error
    assert halo_users(halo)[newcomer]["site_id"] == tenant.other_site
    paths = [line.split(" ", 1)[1].split("?")[0] for line in fake_graph.request_log]
    asked_user = any(p.endswith(f"/users/{newcomer}/transitiveMemberOf/microsoft.graph.group") for p in paths)
    listed_groups = any("/transitiveMembers/" in p for p in paths)
    assert (asked_user, listed_groups) == ((True, False) if short_delta else (False, True))


def test_unmatched_users_land_on_the_landing_site(halo, db_url, tmp_path, tenant, fake_graph):
    group = fake_graph.add_group([tenant.people[0]["id"]])
    landing = add_site(halo, tenant.client_id, "Unsorted")
    tenant.connect(mappings=[(group, tenant.other_site)], unmatchedusersite=landing)

    result = by_entity(run(write_config(tmp_path, db_url)))

    assert (result.status, result.created) == ("ok", N), result.error
    sites = [u["site_id"] for u in halo_users(halo).values()]
    assert sites.count(tenant.other_site) == 1 and sites.count(landing) == N - 1


def test_tenant_mapped_to_a_client_lands_users_on_that_clients_site(halo, db_url, tmp_path, tenant, fake_graph):
    fabrikam, closed = add_client_with_site(halo, "Fabrikam", "Old office")
    with halo.begin() as conn:
        conn.execute(site.update().where(site.c.id == closed).values(inactive=True))
    main_site = add_site(halo, fabrikam, "Main")
    with halo.begin() as conn:
        conn.execute(insert(areaazuretenant), {
            "client_id": fabrikam, "azure_tenant_id": f" {fake_graph.tenant_id.upper()} ",
            "azure_tenant_name": "Fabrikam", "azure_tenant_domain": "fabrikam.example",
        })  # fmt: skip
    tenant.connect(unmatchedusersite=None)

    result = by_entity(run(write_config(tmp_path, db_url)))

    assert (result.status, result.created) == ("ok", N), result.error
    people = halo_users(halo).values()
    assert {(u["client_id"], u["site_id"]) for u in people} == {(fabrikam, main_site)}


def test_tenant_mapped_to_two_clients_fails(halo, db_url, tmp_path, tenant, fake_graph):
    with halo.begin() as conn:
        ids = conn.execute(insert(area).returning(area.c.id), [{"name": "A"}, {"name": "B"}]).scalars().all()
        conn.execute(insert(areaazuretenant), [{"client_id": i, "azure_tenant_id": fake_graph.tenant_id} for i in ids])
    tenant.connect(unmatchedusersite=None)

    result = by_entity(run(write_config(tmp_path, db_url)))

    assert result.status == "failed" and "is mapped to 2 clients" in result.error
    assert halo_users(halo) == {}


def test_creating_unmatched_users_without_a_landing_site_fails_clearly(halo, db_url, tmp_path, tenant, fake_graph):
    row_id = tenant.connect(unmatchedusersite=None)

    result = by_entity(run(write_config(tmp_path, db_url)))

    assert result.status == "failed"
    assert "creates unmatched users but has no site for them" in result.error
    assert fake_graph.token_requests == 0 and halo_users(halo) == {}
    assert "no site for them" in connection_row(halo, row_id)["lasterror"]


def test_a_mapping_to_a_missing_site_fails(halo, db_url, tmp_path, tenant, fake_graph):
    group = fake_graph.add_group([tenant.people[0]["id"]])
    tenant.connect(mappings=[(group, 999_999)])

    result = by_entity(run(write_config(tmp_path, db_url)))

    assert result.status == "failed" and "names site 999999, which does not exist" in result.error
    assert halo_users(halo) == {}


# -- removals and the engine's limits ----------------------------------------------------------------


def test_removals_beyond_the_limits_are_held_until_the_limits_allow(halo, db_url, tmp_path, tenant, fake_graph):
    row_id = tenant.connect(deactivate_users=True)
    assert by_entity(run(write_config(tmp_path, db_url, MaxDeactivations=1))).created == N
    cursor = stored_cursor(halo, row_id)
    gone = [p["id"] for p in tenant.people if p["accountEnabled"]][:2]
    for oid in gone:
        fake_graph.remove(oid)
    fake_graph.update(tenant.people[-1]["id"], jobTitle="Still here")

    held = by_entity(run(write_config(tmp_path, db_url, MaxDeactivations=1)))

    # The engine's own limits and message: the removals are held, the rest of the delta is written.
    assert (held.status, held.held_back, held.deactivated, held.updated) == ("held-back", 2, 0, 1)
    assert "2 of " in held.error and "are reported removed by the source" in held.error
    assert "--confirm-deactivations" in held.error
    assert not any(halo_users(halo)[oid]["inactive"] for oid in gone)
    assert halo_users(halo)[tenant.people[-1]["id"]]["title"] == "Still here"
    assert stored_cursor(halo, row_id) == cursor  # the same delta, removals included, is read again

    allowed = by_entity(run(write_config(tmp_path, db_url, MaxDeactivations=2)))

    assert (allowed.status, allowed.deactivated, allowed.updated) == ("ok", 2, 0), allowed.error
    assert all(halo_users(halo)[oid]["inactive"] for oid in gone)
    assert {(c.action, c.field) for c in allowed.changes} == {("deactivate", "inactive")}
    assert stored_cursor(halo, row_id) != cursor


def test_confirm_deactivations_lets_held_removals_through(halo, db_url, tmp_path, tenant, fake_graph):
    # The held-back message tells the administrator to run with --confirm-deactivations; that must
    # work for Graph's removals as it does for records missing from a full read.
    tenant.connect(deactivate_users=True)
    config = write_config(tmp_path, db_url, MaxDeactivations=1)
    assert by_entity(run(config)).created == N
    gone = [p["id"] for p in tenant.people if p["accountEnabled"]][:2]
    for oid in gone:
        fake_graph.remove(oid)
    assert by_entity(run(config)).status == "held-back"

    confirmed = by_entity(run(config, confirm_deactivations=True))

    assert (confirmed.status, confirmed.deactivated) == ("ok", 2), confirmed.error
    assert all(halo_users(halo)[oid]["inactive"] for oid in gone)


def test_removal_of_a_user_this_connection_never_linked_is_ignored(halo, db_url, tmp_path, tenant, fake_graph):
    tenant.connect(deactivate_users=True, createunmatchedusers=False, mappings=[(fake_graph.add_group([tenant.people[0]["id"]]), tenant.site_id)])
    config = write_config(tmp_path, db_url)
    assert by_entity(run(config)).created == 1
    stranger = tenant.people[5]
    add_users(halo, [{"name": "Stranger", "azureoid": stranger["id"], "site_id": tenant.site_id, "client_id": tenant.client_id}])
    fake_graph.remove(stranger["id"])

    result = by_entity(run(config))

    assert (result.status, result.updated) == ("ok", 0), result.error
    assert halo_users(halo)[stranger["id"]]["inactive"] is False


# -- national clouds ---------------------------------------------------------------------------------


def _row(graph_host=None, authority_host=None):
    return {"graph_host": graph_host, "authority_host": authority_host}


@pytest.mark.parametrize(
    ("graph_host", "authority_host", "expected"),
    [
        (None, None, ("https://login.microsoftonline.com", "https://graph.microsoft.com")),
        ("  ", "", ("https://login.microsoftonline.com", "https://graph.microsoft.com")),
        ("graph.microsoft.us", None, ("https://login.microsoftonline.us", "https://graph.microsoft.us")),
        ("https://dod-graph.microsoft.us/", None, ("https://login.microsoftonline.us", "https://dod-graph.microsoft.us")),
        ("https://microsoftgraph.chinacloudapi.cn/v1.0", None, ("https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn")),
        ("https://GRAPH.microsoft.us", "https://login.example.test/", ("https://login.example.test", "https://GRAPH.microsoft.us")),
        ("https://127.0.0.1:8443", None, ("https://login.microsoftonline.com", "https://127.0.0.1:8443")),
    ],
)
def test_endpoints_follow_the_national_cloud(graph_host, authority_host, expected):
    assert endpoints(_row(graph_host, authority_host)) == expected


def test_plain_http_graph_host_is_refused():
    with pytest.raises(IntegrationFailed, match="graph_host must be an https:// host"):
        endpoints(_row("http://graph.microsoft.com"))


def test_national_cloud_hosts_reach_graph_and_the_token_endpoint(halo, db_url, tmp_path, tenant, fake_graph):
    """The connection's own hosts (here the fake's, without a scheme) are used for both."""
    host = fake_graph.graph_host.removeprefix("https://")
    tenant.connect(graph_host=host, authority_host=host)

    result = by_entity(run(write_config(tmp_path, db_url)))

    assert (result.status, result.created) == ("ok", N), result.error
    assert fake_graph.token_requests >= 1


# -- the client secret ---------------------------------------------------------------------------------


def _settings(secrets):
    return Settings.model_validate({"Database": {"Url": "sqlite://"}, "AzureAD": {"Secrets": secrets}})


def _conn(id_=3, name="Contoso"):
    return {"id": id_, "name": name, "client_secret": "stored-encrypted-blob"}


def test_secret_precedence_id_then_name(monkeypatch):
    row = _conn()
    assert client_secret(row, _settings({"3": "by-id", "contoso": "by-name"}), [row]) == ("by-id", None)
    assert client_secret(row, _settings({" CONTOSO ": "by-name"}), [row]) == ("by-name", None)
    # The removed HALODB_AZUREAD_SECRET_<id> bypassed Settings.secrets (log redaction): not read.
    monkeypatch.setenv("HALODB_AZUREAD_SECRET_3", "removed-variable")
    secret, problem = client_secret(row, _settings({"4": "someone else's"}), [row])
    assert secret is None  # never Halo's stored (encrypted) column
    assert problem == (
        "Azure AD connection 3 'Contoso' has no client secret: set AzureAD.Secrets.3 in appsettings.json "
        "or the environment variable HALODB_AzureAD__Secrets__3 (Halo keeps it encrypted)"
    )


def test_secret_by_a_shared_name_is_refused():
    rows = [_conn(3), _conn(4, " contoso")]
    secret, problem = client_secret(rows[0], _settings({"Contoso": "which one?"}), rows)
    assert secret is None and "shares its name with connections 3, 4" in problem and "AzureAD.Secrets.3" in problem


def test_a_secret_keyed_by_an_id_never_goes_to_a_connection_named_like_that_id():
    rows = [_conn(3), _conn(7, "3")]  # connection 7 is called "3"; the key "3" means connection 3
    secret, problem = client_secret(rows[1], _settings({"3": "secret-of-connection-3"}), rows)
    assert secret is None and "named like connection 3" in problem and "AzureAD.Secrets.7" in problem
    assert client_secret(rows[0], _settings({"3": "secret-of-connection-3"}), rows) == ("secret-of-connection-3", None)


def test_environment_overrides_the_file_secret(tmp_path):
    from halodb.config import load_settings

    path = tmp_path / "appsettings.json"
    path.write_text(json.dumps({"Database": {"Url": "sqlite://"}, "AzureAD": {"Secrets": {"Contoso": "from-file"}}}))
    settings = load_settings(path, env={"HALODB_AZUREAD__SECRETS__contoso": "from-env"})
    row = _conn()
    assert client_secret(row, settings, [row]) == ("from-env", None)


def write_secret_config(tmp_path, url, row_id, secret, level="Debug"):
    path = write_config(tmp_path, url, agents=True)
    data = json.loads(path.read_text())
    data["AzureAD"] = {"Secrets": {str(row_id): secret}}
    data["Logging"]["Level"] = level
    path.write_text(json.dumps(data))
    return path


def halodb_run(config, *args):
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("HALODB_AZUREAD__SECRETS")}
    return subprocess.run([sys.executable, "-m", "halodb", "run", "--config", str(config), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip


def test_secret_from_appsettings_is_used_and_never_shown_or_logged(halo, db_url, tmp_path, tenant, fake_graph, monkeypatch):
    row_id = tenant.connect()
    monkeypatch.delenv(f"HALODB_AzureAD__Secrets__{row_id}")
    secret = fake_graph.client_secret
    config = write_secret_config(tmp_path, db_url, row_id, secret)

    done = halodb_run(config)

    assert done.returncode == 0, done.stdout + done.stderr
    assert by_entity_rows(halo) == N
    log_text = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert "Azure AD 'Contoso' users: ok" in log_text
    for text in (done.stdout, done.stderr, log_text):
        assert secret not in text
    shown = CliRunner().invoke(main, ["config", "show", "--config", str(config)])
    assert f"AzureAD.Secrets.{row_id} = ********" in shown.output and secret not in shown.output


def test_refused_secret_echoed_by_the_server_is_never_shown_or_logged(halo, db_url, tmp_path, tenant, fake_graph, monkeypatch):
    row_id = tenant.connect()
    monkeypatch.delenv(f"HALODB_AzureAD__Secrets__{row_id}")
    wrong = "Wr0ng~Secret.value-that-must-not-leak"
    fake_graph.echo_client_secret = True
    config = write_secret_config(tmp_path, db_url, row_id, wrong)

    done = halodb_run(config)

    assert done.returncode == 1
    assert "invalid_client" in done.stdout + done.stderr
    assert "Received: '***'" in done.stdout  # the server did echo it; halodb blanked it
    log_text = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert "invalid_client" in log_text
    stored = connection_row(halo, row_id)["lasterror"]
    for text in (done.stdout, done.stderr, log_text, stored, json.dumps(halo_tables(halo), default=str)):
        assert wrong not in text


def by_entity_rows(halo) -> int:
    with halo.connect() as conn:
        return len(conn.execute(select(users.c.id).where(users.c.azureoid.is_not(None))).all())
