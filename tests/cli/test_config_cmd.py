"""``halodb config``: init, show, set, enable/disable, and one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from halodb.cli import main

PASSWORD = "S3cret-Pa55word!"
URL_PASSWORD = "url-pw-7781"

VALID = {
    "HaloUrl": "https://halo.example.com",
    "Database": {"Server": "SQL01\\HALO", "Name": "Halo", "Username": "halo_integrator", "Password": PASSWORD},
    "Integrations": {"AzureAD": {"Users": False}},
}


@pytest.fixture(autouse=True)
def _no_halodb_env(monkeypatch):
    # Overrides from the developer's shell must not leak into these exact-output tests.
    import os

    for name in list(os.environ):
        if name.upper().startswith("HALODB_"):
            monkeypatch.delenv(name)


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(main, ["config", *args], input=input)


def write(path: Path, data: dict | str) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return write(tmp_path / "appsettings.json", VALID)


def assert_config_error(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == f"error: {message}\n"
    assert "Traceback" not in result.output


# -- init ------------------------------------------------------------------------------------


def test_init_with_all_options(tmp_path: Path):
    path = tmp_path / "appsettings.json"
    result = run(
        "init", "--config", str(path), "--halo-url", "https://halo.example.com",
        "--server", "SQL01", "--database", "Halo", "--username", "u", "--password", PASSWORD,
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {path.resolve()}\n"
    saved = json.loads(path.read_text())
    assert saved["Database"]["Password"] == PASSWORD
    assert saved["HaloUrl"] == "https://halo.example.com"


def test_init_prompts_for_missing_values_with_hidden_password(tmp_path: Path):
    path = tmp_path / "appsettings.json"
    result = run(
        "init", "--config", str(path), "--server", "SQL01",
        input=f"https://halo.example.com\nHalo\nhalo_integrator\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Halo URL: https://halo.example.com\n"
        "Database name: Halo\n"
        "Database username: halo_integrator\n"
        "Database password: \n"
        f"wrote {path.resolve()}\n"
    )
    saved = json.loads(path.read_text())
    assert (saved["Database"]["Server"], saved["Database"]["Password"]) == ("SQL01", PASSWORD)


def test_init_with_url_does_not_prompt(tmp_path: Path):
    path = tmp_path / "appsettings.json"
    result = run("init", "--config", str(path), "--url", "sqlite:///demo.db")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {path.resolve()}\n"
    assert json.loads(path.read_text())["Database"]["Url"] == "sqlite:///demo.db"


def test_init_refuses_to_overwrite_before_prompting(cfg: Path):
    before = cfg.read_text()
    assert_config_error(
        run("init", "--config", str(cfg)), f"{cfg} already exists (use --force to overwrite it)"
    )
    assert cfg.read_text() == before
    result = run("init", "--config", str(cfg), "--url", "sqlite:///x.db", "--force")
    assert result.exit_code == 0, result.output
    assert json.loads(cfg.read_text())["Database"]["Url"] == "sqlite:///x.db"


def test_init_rejects_a_bad_halo_url(tmp_path: Path):
    path = tmp_path / "appsettings.json"
    result = run(
        "init", "--config", str(path), "--halo-url", "halo.example.com", "--server", "s",
        "--database", "d", "--username", "u", "--password", PASSWORD,
    )
    assert_config_error(
        result, f'{path}: HaloUrl must start with http:// or https:// (got "halo.example.com")'
    )
    assert not path.exists()


def test_default_config_path_is_appsettings_json(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("init", "--url", "sqlite:///demo.db")
    assert result.stdout == f"wrote {(tmp_path / 'appsettings.json').resolve()}\n"
    assert run("show").exit_code == 0


# -- show ------------------------------------------------------------------------------------


def test_show_masks_the_password(cfg: Path):
    result = run("show", "--config", str(cfg))
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "HaloUrl = https://halo.example.com\n"
        "InstanceName = null\n"
        "Database.Server = SQL01\\HALO\n"
        "Database.Name = Halo\n"
        "Database.Username = halo_integrator\n"
        "Database.Password = ********\n"
        "Database.Url = null\n"
        "Database.Driver = null\n"
        "Database.Encrypt = yes\n"
        "Database.TrustServerCertificate = false\n"
        "Database.ConnectTimeout = 15\n"
        "Integrations.AzureAD.Users = false\n"
        "Logging.Folder = logs\n"
        "Logging.Level = Information\n"
        "Logging.RetainDays = 30\n"
        "Sync.BatchSize = 2000\n"
        "Sync.MaxDeactivations = 500\n"
        "Sync.MaxDeactivationPercent = 10.0\n"
        "Sync.DeactivateAfterMissedRuns = 2\n"
        "Sync.LockLeaseSeconds = 600\n"
        "AzureAD.Secrets = {}\n"
    )
    assert PASSWORD not in result.output


def test_show_json_masks_the_password(cfg: Path):
    result = run("show", "--config", str(cfg), "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["Database"]["Password"] == "********"
    assert shown["Database"]["Server"] == "SQL01\\HALO"
    assert PASSWORD not in result.output


def test_show_masks_a_password_inside_the_url(tmp_path: Path):
    url = f"postgresql+psycopg://halo:{URL_PASSWORD}@db.example.com/halo"
    path = write(tmp_path / "appsettings.json", {"Database": {"Url": url}})
    for extra in ([], ["--json"]):
        result = run("show", "--config", str(path), *extra)
        assert result.exit_code == 0, result.output
        assert URL_PASSWORD not in result.output
        assert "postgresql+psycopg://halo:********@db.example.com/halo" in result.stdout


def test_show_applies_and_masks_environment_overrides(cfg: Path):
    result = CliRunner().invoke(
        main,
        ["config", "show", "--config", str(cfg)],
        env={"HALODB_Database__Password": "env-secret-99", "HALODB_Sync__BatchSize": "750"},
    )
    assert result.exit_code == 0, result.output
    assert "Sync.BatchSize = 750\n" in result.stdout
    assert "env-secret-99" not in result.output


# -- errors through the CLI --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"HaloUrl": ', "invalid JSON at line 1 column 13: Expecting value"),
        ({**VALID, "Databse": {}}, "unknown key 'Databse' (did you mean 'Database'?)"),
        (
            {**VALID, "Database": {**VALID["Database"], "Pasword": "x"}},
            "unknown key 'Database.Pasword' (did you mean 'Database.Password'?)",
        ),
        (
            {**VALID, "Integrations": {"AzureAD": {"Userz": True}}},
            "unknown key 'Integrations.AzureAD.Userz' (did you mean 'Integrations.AzureAD.Users'?)",
        ),
        (
            {**VALID, "Integrations": {"Azure": {"Users": True}}},
            "unknown key 'Integrations.Azure' (did you mean 'Integrations.AzureAD'?)",
        ),
        (
            {**VALID, "Database": {k: v for k, v in VALID["Database"].items() if k != "Password"}},
            "Database.Password is required (or set Database.Url)",
        ),
        ({**VALID, "Sync": {"BatchSize": "lots"}}, 'Sync.BatchSize must be an integer (got "lots")'),
        (
            {**VALID, "Logging": {"RetainDays": True, "Level": "Loud"}},
            "Logging.Level must be one of Trace, Debug, Information, Warning, Error, Critical "
            '(got "Loud") (and 1 more problem)',
        ),
    ],
)
def test_config_errors_are_one_line_exit_2(tmp_path: Path, content, message: str):
    path = write(tmp_path / "appsettings.json", content)
    assert_config_error(run("show", "--config", str(path)), f"{path}: {message}")


def test_missing_file(tmp_path: Path):
    path = tmp_path / "appsettings.json"
    assert_config_error(
        run("show", "--config", str(path)),
        f"appsettings.json not found: {path} (create one with 'halodb config init')",
    )


def test_unknown_env_override(cfg: Path):
    result = CliRunner().invoke(
        main, ["config", "show", "--config", str(cfg)], env={"HALODB_Sync__BatchSise": "1"}
    )
    assert_config_error(
        result,
        "environment variable HALODB_Sync__BatchSise: unknown key 'Sync.BatchSise' "
        "(did you mean 'Sync.BatchSize'?)",
    )


def test_wrong_password_type_is_not_echoed(tmp_path: Path):
    path = write(
        tmp_path / "appsettings.json",
        {**VALID, "Database": {**VALID["Database"], "Password": 98765432}},
    )
    result = run("show", "--config", str(path))
    assert_config_error(result, f"{path}: Database.Password must be a string")
    assert "98765432" not in result.output


# -- set / enable / disable ------------------------------------------------------------------


def test_set_prints_the_canonical_key_and_value(cfg: Path):
    result = run("set", "sync.batchsize", "500", "--config", str(cfg))
    assert result.exit_code == 0, result.output
    assert result.stdout == "Sync.BatchSize = 500\n"
    assert json.loads(cfg.read_text())["Sync"]["BatchSize"] == 500

    result = run("set", "Database.Server", "SQL02\\HALO", "--config", str(cfg))
    assert result.stdout == "Database.Server = SQL02\\HALO\n"

    result = run("set", "Integrations.LDAP.Agents", "true", "--config", str(cfg))
    assert result.stdout == "Integrations.LDAP.Agents = true\n"


def test_set_password_is_masked(cfg: Path):
    result = run("set", "Database.Password", "new-Secret-42", "--config", str(cfg))
    assert result.exit_code == 0, result.output
    assert result.stdout == "Database.Password = ********\n"
    assert "new-Secret-42" not in result.output
    assert json.loads(cfg.read_text())["Database"]["Password"] == "new-Secret-42"


def test_set_url_with_password_is_masked(cfg: Path):
    url = f"postgresql+psycopg://halo:{URL_PASSWORD}@localhost/halo"
    result = run("set", "Database.Url", url, "--config", str(cfg))
    assert result.exit_code == 0, result.output
    assert result.stdout == "Database.Url = postgresql+psycopg://halo:********@localhost/halo\n"
    assert URL_PASSWORD not in result.output


def test_set_errors(cfg: Path):
    before = cfg.read_text()
    assert_config_error(
        run("set", "Sync.BatchSize", "lots", "--config", str(cfg)),
        f'{cfg}: Sync.BatchSize must be an integer (got "lots")',
    )
    assert_config_error(
        run("set", "Databse.Server", "x", "--config", str(cfg)),
        f"{cfg}: unknown key 'Databse' (did you mean 'Database'?)",
    )
    assert cfg.read_text() == before


def test_enable_and_disable(cfg: Path):
    result = run("enable", "azuread", "users", "--config", str(cfg))
    assert result.exit_code == 0, result.output
    assert result.stdout == "AzureAD.Users enabled\n"
    assert json.loads(cfg.read_text())["Integrations"]["AzureAD"]["Users"] is True

    result = run("disable", "AzureAD", "Users", "--config", str(cfg))
    assert result.stdout == "AzureAD.Users disabled\n"
    assert json.loads(cfg.read_text())["Integrations"]["AzureAD"]["Users"] is False

    result = run("enable", "IncomingMail", "mailboxes", "--config", str(cfg))
    assert result.stdout == "IncomingMail.Mailboxes enabled\n"


def test_enable_unknown_names(cfg: Path):
    assert_config_error(
        run("enable", "AzureAD", "Agent", "--config", str(cfg)),
        f"{cfg}: unknown key 'Integrations.AzureAD.Agent' "
        "(did you mean 'Integrations.AzureAD.Agents'?)",
    )
    assert_config_error(
        run("disable", "Nothing", "Users", "--config", str(cfg)),
        f"{cfg}: unknown key 'Integrations.Nothing' (valid keys under Integrations: "
        "Spreadsheet, SqlImport, AzureAD, LDAP, IncomingMail, Pax8)",
    )
