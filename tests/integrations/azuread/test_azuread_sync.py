"""The Azure AD integration end to end: the local HTTPS Graph fake (real TLS, MSAL, paging and
delta links) into a Halo fixture database on every backend, run through ``halodb.runner.run``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select

from halodb import runner
from halodb.cli import main
from halodb.config import load_settings
from halodb.halo import settings as halo_settings
from halodb.halo.fixture import INTEGRATOR_AGENT
from halodb.halo.repository import keyed
from halodb.halo.schema import audit, azureadconnection, azureadmapping, site, uname, users
from halodb.halo.schema import metadata as halo_metadata
from halodb.state import cursors
from halodb.state.scope import Scope
from tests.fakes.directory import generate_users
from tests.helpers import add_client_with_site

N = 30


# -- helpers ----------------------------------------------------------------------------------


def write_config(tmp_path, url, *, agents=False, **sync):
    path = tmp_path / "cfg" / "appsettings.json"
    path.parent.mkdir(exist_ok=True)
    settings = {
        "InstanceName": "azure",
        "Database": {"Url": url},
        "Integrations": {"AzureAD": {"Users": True, "Agents": agents}},
        "Logging": {"Folder": str(tmp_path / "logs")},
        "Sync": {"MaxDeactivationPercent": 50, **sync},
    }
    path.write_text(json.dumps(settings), encoding="utf-8")
    return path


def run(config_path, **options):
    return runner.run(load_settings(config_path), runner.RunOptions(**options))


def by_entity(report, name="Users"):
    (entity,) = [e for e in report.entities if e.entity == name]
    return entity


def halo_users(engine) -> dict[str, dict]:
    """Every Halo user by Azure object id (or email when it has none)."""
    with engine.connect() as conn:
        rows = conn.execute(select(*keyed(*users.c))).mappings()
        return {r["azureoid"] or r["emailaddress"]: dict(r) for r in rows}


def connection_row(engine, row_id):
    with engine.connect() as conn:
        stmt = select(*keyed(*azureadconnection.c)).where(azureadconnection.c.id == row_id)
        return dict(conn.execute(stmt).mappings().one())


def stored_cursor(engine, row_id, entity="Users"):
    with engine.connect() as conn:
        return cursors.get(conn, Scope("AzureAD", str(row_id), entity))


class Tenant:
    """A fake Graph tenant with users, and its connection configured in Halo."""

    def __init__(self, halo, graph, tmp_path, monkeypatch):
        self.halo, self.graph = halo, graph
        self.client_id, self.site_id = add_client_with_site(halo, "Contoso", "Head Office")
        with halo.begin() as conn:
            self.other_site = conn.execute(
                insert(site).returning(site.c.id), {"name": "London", "client_id": self.client_id}
            ).scalar_one()
        ca_file = tmp_path / "graph-ca.pem"
        graph.ca.cert_pem.write_to_path(str(ca_file))
        monkeypatch.setenv("HALODB_AZUREAD_CA_FILE", str(ca_file))
        self.monkeypatch = monkeypatch
        self.people = generate_users(N, seed=7)
        for p in self.people[20:22]:  # a couple of disabled accounts, whatever the generator drew
            p["accountEnabled"] = False
        graph.add_many(self.people)

    def connect(self, *, secret=None, mappings=(), **values) -> int:
        defaults = {
            "name": "Contoso", "directoryid": self.graph.tenant_id, "applicationid": self.graph.client_id,
            "graph_host": self.graph.graph_host, "authority_host": self.graph.authority_host,
            "halointegratorenabled": True, "halo_integrator_import_list": "users,agents",
            "createunmatchedusers": True, "unmatchedusersite": self.site_id,
        }  # fmt: skip
        with self.halo.begin() as conn:
            row_id = conn.execute(
                insert(azureadconnection).returning(azureadconnection.c.id), {**defaults, **values}
            ).scalar_one()
            for seq, (group_id, site_id) in enumerate(mappings, 1):
                conn.execute(insert(azureadmapping), {"connection_id": row_id, "group_id": group_id, "siteid": site_id, "sequenceid": seq})
            halo_settings.set_enabled(conn, "AzureAD", True)
        # Halo keeps the secret encrypted: halodb takes it from appsettings.json AzureAD.Secrets,
        # here through its environment override.
        self.monkeypatch.setenv(f"HALODB_AzureAD__Secrets__{row_id}", secret or self.graph.client_secret)
        return row_id


@pytest.fixture
def tenant(halo, fake_graph, tmp_path, monkeypatch):
    return Tenant(halo, fake_graph, tmp_path, monkeypatch)


# -- tests ------------------------------------------------------------------------------------


def test_full_sync_then_delta_updates_exactly_the_changed(halo, db_url, tmp_path, tenant, fake_graph):
    london = [p["id"] for p in tenant.people[:5]]
    group = fake_graph.add_group(london, display_name="London staff")
    row_id = tenant.connect(mappings=[(group, tenant.other_site)])
    config = write_config(tmp_path, db_url)

    first = by_entity(run(config))

    assert (first.status, first.fetched, first.created, first.complete) == ("ok", N, N, True), first.error
    people = halo_users(halo)
    assert len(people) == N
    sample = next(p for p in tenant.people if p["mail"] and p["businessPhones"] and p["mobilePhone"] and p["jobTitle"])
    stored = people[sample["id"]]
    assert stored["name"] == sample["displayName"]
    assert (stored["firstname"], stored["surname"]) == (sample["givenName"], sample["surname"])
    assert (stored["emailaddress"], stored["login"]) == (sample["mail"], sample["userPrincipalName"])
    assert (stored["phonenumber"], stored["mobilenumber"]) == (sample["businessPhones"][0], sample["mobilePhone"])
    assert (stored["title"], stored["department"]) == (sample["jobTitle"], sample["department"])
    no_mail = next((p for p in tenant.people if not p["mail"]), None)
    if no_mail:
        assert people[no_mail["id"]]["emailaddress"] == no_mail["userPrincipalName"]
    for p in tenant.people:
        assert people[p["id"]]["inactive"] is (not p["accountEnabled"])
        expected_site = tenant.other_site if p["id"] in london else tenant.site_id
        assert people[p["id"]]["site_id"] == expected_site
        assert people[p["id"]]["client_id"] == tenant.client_id
    first_cursor = stored_cursor(halo, row_id)
    assert first_cursor and "$deltatoken=" in first_cursor
    assert connection_row(halo, row_id)["lastsync"] is not None

    changed = [p["id"] for p in tenant.people[10:13]]
    for i, oid in enumerate(changed):
        fake_graph.update(oid, jobTitle=f"Chief Thing {i}")
    fake_graph.request_log.clear()

    second = by_entity(run(config))

    assert (second.status, second.fetched, second.created, second.updated, second.deactivated) == ("ok", 3, 0, 3, 0)
    assert second.complete is False  # a delta read never deactivates anything
    assert any("$deltatoken=" in line for line in fake_graph.request_log)
    people = halo_users(halo)
    assert [people[oid]["title"] for oid in changed] == ["Chief Thing 0", "Chief Thing 1", "Chief Thing 2"]
    assert sum(1 for p in people.values() if p["title"] and p["title"].startswith("Chief Thing")) == 3
    assert stored_cursor(halo, row_id) != first_cursor

    third = by_entity(run(config))
    assert (third.fetched, third.created, third.updated) == (0, 0, 0)


def test_removed_users_are_deactivated_audited_and_in_the_change_set(halo, db_url, tmp_path, tenant, fake_graph):
    tenant.connect(deactivate_users=True)
    config = write_config(tmp_path, db_url)
    assert by_entity(run(config)).created == N
    gone = [p["id"] for p in tenant.people if p["accountEnabled"]][:2]
    for oid in gone:
        fake_graph.remove(oid)

    result = by_entity(run(config))

    assert (result.status, result.created, result.updated, result.deactivated) == ("ok", 0, 0, 2), result.error
    people = halo_users(halo)
    assert all(people[oid]["inactive"] for oid in gone)
    assert sum(1 for p in people.values() if p["inactive"]) == sum(1 for p in tenant.people if not p["accountEnabled"]) + 2
    assert {(c.action, c.field, c.old, c.new) for c in result.changes} == {("deactivate", "inactive", False, True)}
    with halo.connect() as conn:
        rows = conn.execute(select(audit.c.id1, audit.c.value, audit.c.agent_id).where(audit.c.table_name == "USERS")).all()
    assert sorted(r.id1 for r in rows) == sorted(people[oid]["id"] for oid in gone)
    assert {(r.value, r.agent_id) for r in rows} == {("inactive", INTEGRATOR_AGENT)}


def test_removed_users_kept_when_the_connection_does_not_deactivate(halo, db_url, tmp_path, tenant, fake_graph):
    tenant.connect(deactivate_users=False)
    config = write_config(tmp_path, db_url)
    run(config)
    oid = next(p["id"] for p in tenant.people if p["accountEnabled"])
    fake_graph.remove(oid)

    result = by_entity(run(config))

    assert (result.status, result.updated, result.deactivated) == ("ok", 0, 0)
    assert halo_users(halo)[oid]["inactive"] is False


def test_import_only_enabled_accounts(halo, db_url, tmp_path, tenant, fake_graph):
    tenant.connect(accountenabled=True, deactivate_users=True)
    config = write_config(tmp_path, db_url)
    enabled = [p for p in tenant.people if p["accountEnabled"]]
    assert len(enabled) < N, "the fixture should contain a disabled account"

    assert by_entity(run(config)).created == len(enabled)
    assert set(halo_users(halo)) == {p["id"] for p in enabled}

    fake_graph.update(enabled[0]["id"], accountEnabled=False)
    result = by_entity(run(config))
    assert (result.created, result.updated, result.deactivated) == (0, 0, 1)
    assert halo_users(halo)[enabled[0]["id"]]["inactive"] is True


def test_throttling_is_survived(halo, db_url, tmp_path, tenant, fake_graph):
    tenant.connect()
    fake_graph.throttle(3, retry_after=0)

    result = by_entity(run(write_config(tmp_path, db_url)))

    assert (result.status, result.created) == ("ok", N), result.error
    assert sum(1 for line in fake_graph.request_log if "/v1.0/users/delta" in line) >= 4


def test_token_failure_fails_the_entity_and_writes_nothing(halo, db_url, tmp_path, tenant, fake_graph):
    row_id = tenant.connect(secret="not-the-secret-at-all")

    report = run(write_config(tmp_path, db_url))

    result = by_entity(report)
    assert result.status == "failed" and report.exit_code == 1
    assert "invalid_client" in result.error and "not-the-secret-at-all" not in result.error
    assert halo_users(halo) == {}
    with halo.connect() as conn:
        assert "invalid_client" in halo_settings.integration_state(conn, "AzureAD").last_error
    stored = connection_row(halo, row_id)
    assert "invalid_client" in stored["lasterror"] and stored["lastsync"] is None
    assert stored_cursor(halo, row_id) is None


def test_missing_secret_names_the_setting_and_the_variable(halo, db_url, tmp_path, tenant, fake_graph, monkeypatch):
    row_id = tenant.connect()
    monkeypatch.delenv(f"HALODB_AzureAD__Secrets__{row_id}")
    with halo.begin() as conn:  # what Halo stores is encrypted: never sent as the secret
        conn.execute(azureadconnection.update().values(client_secret=fake_graph.client_secret))

    result = by_entity(run(write_config(tmp_path, db_url)))

    assert result.status == "failed"
    assert f"AzureAD.Secrets.{row_id} in appsettings.json" in result.error
    assert f"environment variable HALODB_AzureAD__Secrets__{row_id}" in result.error
    assert "\n" not in result.error
    assert fake_graph.token_requests == 0 and halo_users(halo) == {}
    assert f"AzureAD.Secrets.{row_id}" in connection_row(halo, row_id)["lasterror"]


def test_failure_mid_paging_deactivates_nothing_and_keeps_the_cursor(halo, db_url, tmp_path, tenant, fake_graph):
    fake_graph.add_many(generate_users(220, seed=8))  # 250 users: three delta pages of 100
    row_id = tenant.connect(deactivate_users=True)
    config = write_config(tmp_path, db_url, BatchSize=20)
    assert by_entity(run(config)).created == 250
    cursor = stored_cursor(halo, row_id)
    for p in tenant.people[:3]:
        fake_graph.remove(p["id"])
    fake_graph.expire_delta_tokens()  # so the next run is a full read that could deactivate
    fake_graph.fail_on_page(2)
    before = data_tables(halo)

    result = by_entity(run(config))

    assert result.status == "failed" and "HTTP 500" in result.error
    assert (result.deactivated, result.complete) == (0, False)
    assert data_tables(halo) == before  # no user, agent or audit row touched
    people = halo_users(halo)
    assert sum(1 for p in people.values() if p["inactive"]) == sum(1 for p in tenant.people if not p["accountEnabled"]) + sum(
        1 for p in generate_users(220, seed=8) if not p["accountEnabled"]
    )
    assert stored_cursor(halo, row_id) == cursor
    assert "HTTP 500" in connection_row(halo, row_id)["lasterror"]


def test_a_first_sync_failing_mid_paging_writes_no_halo_row(halo, db_url, tmp_path, tenant, fake_graph):
    # Pages one and two (200 users, ten engine batches of 20) arrive before page three fails:
    # the read is spooled, so none of them reaches Halo.
    fake_graph.add_many(generate_users(220, seed=8))
    row_id = tenant.connect()
    config = write_config(tmp_path, db_url, BatchSize=20)
    fake_graph.fail_on_page(3)
    before = data_tables(halo)

    result = by_entity(run(config))

    assert result.status == "failed" and "HTTP 500" in result.error
    assert (result.fetched, result.created) == (0, 0)
    assert data_tables(halo) == before
    assert stored_cursor(halo, row_id) is None
    assert "HTTP 500" in connection_row(halo, row_id)["lasterror"]


def test_retry_budget_running_out_sets_last_error_and_writes_nothing(halo, db_url, tmp_path, tenant, fake_graph):
    row_id = tenant.connect()
    fake_graph.throttle(20, retry_after=0)  # more 429s than one run's budget of 8 retries

    report = run(write_config(tmp_path, db_url))

    result = by_entity(report)
    assert result.status == "failed" and report.exit_code == 1
    assert "throttled /v1.0/users/delta 9 times (HTTP 429); retry budget of 8 exhausted" in result.error
    assert halo_users(halo) == {} and stored_cursor(halo, row_id) is None
    stored = connection_row(halo, row_id)
    assert "retry budget of 8 exhausted" in stored["lasterror"] and stored["lastsync"] is None
    with halo.connect() as conn:
        assert "retry budget" in halo_settings.integration_state(conn, "AzureAD").last_error


def test_existing_halo_users_are_adopted_by_email(halo, db_url, tmp_path, tenant, fake_graph):
    with_mail = [p for p in tenant.people if p["mail"]][:2]
    with halo.begin() as conn:
        conn.execute(insert(users), [
            {"name": "Old name", "emailaddress": with_mail[0]["mail"].upper(), "site_id": tenant.site_id, "client_id": tenant.client_id},
            {"name": "Other", "emailaddress": f"  {with_mail[1]['mail']}", "site_id": tenant.site_id, "client_id": tenant.client_id},
        ])  # fmt: skip
    tenant.connect()

    result = by_entity(run(write_config(tmp_path, db_url)))

    assert (result.status, result.created, result.updated) == ("ok", N - 2, 2), result.error
    people = halo_users(halo)
    assert len(people) == N  # no duplicates
    assert people[with_mail[0]["id"]]["name"] == with_mail[0]["displayName"]
    assert people[with_mail[0]["id"]]["emailaddress"] == with_mail[0]["mail"]


def test_expired_delta_link_falls_back_to_a_full_read(halo, db_url, tmp_path, tenant, fake_graph):
    row_id = tenant.connect()
    config = write_config(tmp_path, db_url)
    run(config)
    cursor = stored_cursor(halo, row_id)
    fake_graph.update(tenant.people[0]["id"], department="Research")
    fake_graph.expire_delta_tokens(status=400)

    result = by_entity(run(config))

    assert (result.status, result.fetched, result.updated, result.complete) == ("ok", N, 1, True), result.error
    assert halo_users(halo)[tenant.people[0]["id"]]["department"] == "Research"
    assert stored_cursor(halo, row_id) not in (None, cursor)
    assert by_entity(run(config)).fetched == 0  # the new link works


def test_agents_into_uname(halo, db_url, tmp_path, tenant, fake_graph):
    tenant.connect()

    report = run(write_config(tmp_path, db_url, agents=True))

    result = by_entity(report, "Agents")
    assert (result.status, result.created) == ("ok", N), result.error
    with halo.connect() as conn:
        agents = {r["azureoid"]: dict(r) for r in conn.execute(select(*keyed(*uname.c)).where(uname.c.azureoid.is_not(None))).mappings()}
    assert len(agents) == N
    p = tenant.people[0]
    assert agents[p["id"]]["name"] == p["displayName"]
    assert agents[p["id"]]["email"] == (p["mail"] or p["userPrincipalName"])
    assert agents[p["id"]]["isdisabled"] is (not p["accountEnabled"])
    assert by_entity(report, "Users").created == N


def test_entity_excluded_in_halo_is_skipped(halo, db_url, tmp_path, tenant, fake_graph):
    tenant.connect(halo_integrator_import_list="users")

    report = run(write_config(tmp_path, db_url, agents=True))

    assert [e.entity for e in report.entities] == ["Users"]
    assert any(what == "AzureAD/Agents" for what, _ in report.skipped)
    with halo.connect() as conn:
        assert conn.execute(select(uname.c.id).where(uname.c.azureoid.is_not(None))).first() is None


def halo_tables(engine) -> dict[str, list[tuple]]:
    """Every row of every Halo table (not halodb's own), for before/after comparisons."""
    with engine.connect() as conn:
        return {
            table.name: sorted((tuple(row) for row in conn.execute(select(table))), key=repr)
            for table in halo_metadata.sorted_tables
        }


def data_tables(engine) -> dict[str, list[tuple]]:
    """``halo_tables`` without the two that hold Last Sync / Last Error."""
    return {name: rows for name, rows in halo_tables(engine).items() if name not in ("azureadconnection", "control")}


def test_cli_dry_run_shows_changes_and_writes_nothing(halo, db_url, tmp_path, tenant, fake_graph):
    group = fake_graph.add_group([tenant.people[0]["id"]])
    row_id = tenant.connect(mappings=[(group, tenant.other_site)], deactivate_users=True)
    config = write_config(tmp_path, db_url, agents=True)
    before = halo_tables(halo)

    result = CliRunner().invoke(main, ["run", "--config", str(config), "--integration", "AzureAD", "--dry-run"])

    assert result.exit_code == 0, result.output
    assert "DRY RUN" in result.output
    assert tenant.people[0]["displayName"] in result.output
    assert "60 created" in result.output  # 30 users and 30 agents
    assert fake_graph.token_requests >= 1  # it did read Graph
    assert halo_tables(halo) == before  # not one Halo row written: users, agents, audit, Last Sync
    assert sum(len(rows) for rows in before.values()) > 0
    assert stored_cursor(halo, row_id) is None and stored_cursor(halo, row_id, "Agents") is None

    # The same after a real first run: a dry-run delta with a change and a removal writes nothing.
    assert by_entity(run(config)).created == N
    fake_graph.update(tenant.people[1]["id"], jobTitle="Dry Runner")
    fake_graph.remove(tenant.people[2]["id"])
    cursor, before = stored_cursor(halo, row_id), halo_tables(halo)

    result = CliRunner().invoke(main, ["run", "--config", str(config), "--integration", "AzureAD", "--dry-run", "--json"])

    assert result.exit_code == 0, result.output
    users_report = next(e for e in json.loads(result.output)["entities"] if e["entity"] == "Users")
    assert (users_report["updated"], users_report["deactivated"], users_report["created"]) == (1, 1, 0)  # the title, the removal
    assert halo_tables(halo) == before
    assert stored_cursor(halo, row_id) == cursor


def test_connection_statements_are_valid_tsql(halo, db_url, tmp_path, tenant, fake_graph):
    """Every statement halodb.halo.azure sends, compiled for SQL Server and parsed as T-SQL."""
    if not db_url.startswith("sqlite"):
        pytest.skip("the statements are recorded once, on SQLite")
    from tests import tsql

    group = fake_graph.add_group([tenant.people[0]["id"]])
    tenant.connect(mappings=[(group, tenant.other_site)])
    tenant.connect(name="Broken", secret="wrong-secret-value")  # records a Last Error too
    with tsql.StatementRecorder(halo) as recorder:
        report = runner.run(load_settings(write_config(tmp_path, db_url)), runner.RunOptions(), engine=halo)
    assert [e.status for e in report.entities] == ["ok", "failed"]
    ours = [r for r in recorder.statements.values() if "halodb.halo.azure" in r.origins]
    assert len(ours) >= 4  # connections, mappings, Last Sync, Last Error
    for rec in ours:
        tsql.check_tsql(rec.element, rec.params, many=rec.many)


def test_one_failed_entity_keeps_the_connection_error(halo, db_url, tmp_path, tenant, fake_graph):
    row_id = tenant.connect()
    fake_graph.fail_on_page(1)  # the first listing (Users) fails; the Agents listing succeeds

    report = run(write_config(tmp_path, db_url, agents=True))

    assert [(e.entity, e.status) for e in report.entities] == [("Users", "failed"), ("Agents", "ok")]
    stored = connection_row(halo, row_id)
    assert "HTTP 500" in stored["lasterror"] and stored["lastsync"] is None
