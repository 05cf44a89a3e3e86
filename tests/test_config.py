"""halodb.config: the appsettings.json model, its errors, env overrides, saving and redaction."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from halodb.config import (
    INTEGRATIONS,
    MASK,
    DatabaseSettings,
    Settings,
    display_value,
    entity_key,
    init_settings,
    load_settings,
    masked_dict,
    redact,
    save_settings,
    set_entity,
    set_value,
)
from halodb.errors import ConfigError

PASSWORD = "Tr0ub4dor&3-secret"

VALID = {
    "HaloUrl": "https://halo.example.com",
    "InstanceName": "5min",
    "Database": {
        "Server": "SQL01\\HALO",
        "Name": "Halo",
        "Username": "halo_integrator",
        "Password": PASSWORD,
    },
    "Integrations": {
        "Spreadsheet": {"Clients": True, "Sites": True, "Users": False, "Assets": True},
        "SqlImport": {"Users": True},
    },
    "Logging": {"Folder": "logs", "Level": "Information", "RetainDays": 30},
    "Sync": {"BatchSize": 2000, "MaxDeactivations": 500, "MaxDeactivationPercent": 10},
}


def write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def with_changes(**sections) -> dict:
    """VALID with some sections merged (a value of None deletes the key)."""
    data = json.loads(json.dumps(VALID))
    for key, value in sections.items():
        if value is None:
            data.pop(key, None)
        elif isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
            data[key] = {k: v for k, v in data[key].items() if v is not None}
        else:
            data[key] = value
    return data


def load_error(path: Path, env=None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={} if env is None else env)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return write(tmp_path / "appsettings.json", VALID)


# -- valid files -----------------------------------------------------------------------------


def test_loads_the_five_fields_and_defaults(cfg: Path):
    s = load_settings(cfg, env={})
    assert s.halo_url == "https://halo.example.com"
    assert s.instance_name == "5min"
    assert (s.database.server, s.database.name) == ("SQL01\\HALO", "Halo")
    assert (s.database.username, s.database.password) == ("halo_integrator", PASSWORD)
    assert s.database.url is None
    assert s.database.encrypt == "yes"
    assert s.database.trust_server_certificate is False
    assert s.database.connect_timeout == 15
    assert s.sync.batch_size == 2000
    assert s.sync.max_deactivation_percent == 10.0
    assert s.sync.deactivate_after_missed_runs == 2
    assert s.logging.level == "Information"
    assert s.source_path == cfg.resolve()
    assert s.enabled_entities("Spreadsheet") == ["Clients", "Sites", "Assets"]
    assert s.enabled_entities("sqlimport") == ["Users"]
    assert s.enabled_entities("AzureAD") == []
    assert s.database_url_resolved() is None


def test_default_path_is_appsettings_json_in_cwd(cfg: Path, monkeypatch):
    monkeypatch.chdir(cfg.parent)
    assert load_settings(env={}).database.name == "Halo"


def test_a_folder_means_appsettings_json_inside_it(cfg: Path):
    assert load_settings(cfg.parent, env={}).source_path == cfg.resolve()


def test_url_replaces_the_five_fields(tmp_path: Path):
    path = write(tmp_path / "appsettings.json", {"Database": {"Url": "sqlite:///halo.db"}})
    s = load_settings(path, env={})
    assert s.halo_url is None and s.database.password is None
    assert s.database.url == "sqlite:///halo.db"


def test_keys_are_case_insensitive_and_saved_canonically(tmp_path: Path):
    path = write(
        tmp_path / "appsettings.json",
        {
            "haloURL": "https://halo.example.com/",
            "DATABASE": {"server": "s", "NAME": "n", "userName": "u", "password": "p"},
            "integrations": {"azuread": {"USERS": True}, "incomingmail": {"mailboxes": "true"}},
            "logging": {"level": "warning"},
            "sync": {"batchsize": 10},
        },
    )
    s = load_settings(path, env={})
    assert s.halo_url == "https://halo.example.com"  # trailing slash dropped
    assert s.integrations == {"AzureAD": {"Users": True}, "IncomingMail": {"Mailboxes": True}}
    assert s.logging.level == "Warning"
    assert s.sync.batch_size == 10
    save_settings(s, path)
    saved = json.loads(path.read_text())
    assert list(saved) == ["HaloUrl", "InstanceName", "Database", "Integrations", "Logging", "Sync", "AzureAD"]
    assert saved["Database"]["Username"] == "u"
    assert saved["Integrations"]["AzureAD"] == {"Users": True}


def test_dotnet_comments_trailing_commas_and_bom_are_accepted(tmp_path: Path):
    text = """\ufeff{
      // the Halo web address
      "HaloUrl": "https://halo.example.com", /* inline */
      "Database": { "Server": "a//b", "Name": "/*n*/", "Username": "u", "Password": "p", },
    }"""
    path = tmp_path / "appsettings.json"
    path.write_text(text, encoding="utf-8")
    s = load_settings(path, env={})
    assert (s.database.server, s.database.name) == ("a//b", "/*n*/")


def test_relative_sqlite_url_resolves_against_the_config_folder(tmp_path: Path, monkeypatch):
    folder = tmp_path / "5min"
    folder.mkdir()
    path = write(folder / "appsettings.json", {"Database": {"Url": "sqlite:///data/halo.db"}})
    monkeypatch.chdir(tmp_path)  # cwd must not matter
    s = load_settings(path, env={})
    assert s.database_url_resolved() == f"sqlite:///{folder.resolve() / 'data' / 'halo.db'}"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////var/lib/halo.db",
        "sqlite://",
        "sqlite:///:memory:",
        "postgresql+psycopg://halo:pw@localhost:5432/halo",
        "mssql+pyodbc://halo:pw@SQL01/Halo?driver=ODBC+Driver+18+for+SQL+Server",
    ],
)
def test_other_urls_are_unchanged(tmp_path: Path, url: str):
    path = write(tmp_path / "appsettings.json", {"Database": {"Url": url}})
    assert load_settings(path, env={}).database_url_resolved() == url


# -- errors ------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path):
    path = tmp_path / "nope" / "appsettings.json"
    assert load_error(path) == (
        f"appsettings.json not found: {path} (create one with 'halodb config init')"
    )


def test_invalid_json_names_line_and_column(tmp_path: Path):
    path = write(tmp_path / "appsettings.json", '{\n  "HaloUrl": "https://x"\n  "Database": {}\n}')
    assert load_error(path) == (
        f"{path}: invalid JSON at line 3 column 3: Expecting ',' delimiter"
    )


def test_top_level_must_be_an_object(tmp_path: Path):
    path = write(tmp_path / "appsettings.json", "[1, 2]")
    assert load_error(path) == f"{path}: expected a JSON object at the top level (got a list)"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({**VALID, "Databse": {}}, "unknown key 'Databse' (did you mean 'Database'?)"),
        (
            with_changes(Database={"Pasword": "x"}),
            "unknown key 'Database.Pasword' (did you mean 'Database.Password'?)",
        ),
        (
            with_changes(Sync={"BatchSise": 1}),
            "unknown key 'Sync.BatchSise' (did you mean 'Sync.BatchSize'?)",
        ),
        (
            with_changes(Logging={"Lvl": "Debug"}),
            "unknown key 'Logging.Lvl' (did you mean 'Logging.Level'?)",
        ),
        (
            with_changes(Integrations={"AzureAd2": {"Users": True}}),
            "unknown key 'Integrations.AzureAd2' (did you mean 'Integrations.AzureAD'?)",
        ),
        (
            with_changes(Integrations={"AzureAD": {"User": True}}),
            "unknown key 'Integrations.AzureAD.User' (did you mean 'Integrations.AzureAD.Users'?)",
        ),
        (
            {**VALID, "Zzz": 1},
            "unknown key 'Zzz' (valid keys: HaloUrl, InstanceName, Database, Integrations, "
            "Logging, Sync, AzureAD)",
        ),
        (
            with_changes(Integrations={"Pax8": {"Qqq": True}}),
            "unknown key 'Integrations.Pax8.Qqq' (valid keys under Integrations.Pax8: "
            "Customers, Subscriptions)",
        ),
        (
            {**VALID, "halourl": "https://other"},
            "duplicate key 'HaloUrl' (keys are case-insensitive)",
        ),
    ],
)
def test_unknown_keys_suggest_the_nearest(tmp_path: Path, data: dict, expected: str):
    path = write(tmp_path / "appsettings.json", data)
    assert load_error(path) == f"{path}: {expected}"


@pytest.mark.parametrize(
    "field", ["HaloUrl", "Database.Server", "Database.Name", "Database.Username", "Database.Password"]
)
def test_each_required_field(tmp_path: Path, field: str):
    data = with_changes()
    if "." in field:
        data["Database"].pop(field.split(".")[1])
    else:
        data.pop(field)
    path = write(tmp_path / "appsettings.json", data)
    assert load_error(path) == f"{path}: {field} is required (or set Database.Url)"


def test_no_username_on_windows_means_integrated_authentication(tmp_path: Path, monkeypatch):
    data = with_changes()
    del data["Database"]["Username"], data["Database"]["Password"]
    path = write(tmp_path / "appsettings.json", data)
    assert load_error(path) == f"{path}: Database.Username is required (or set Database.Url)"  # not Windows
    monkeypatch.setattr("halodb.config.on_windows", lambda: True)
    settings = load_settings(path, env={})
    assert settings.database.username is None and settings.database.password is None


def test_empty_password_counts_as_missing(tmp_path: Path):
    path = write(tmp_path / "appsettings.json", with_changes(Database={"Password": ""}))
    assert load_error(path) == f"{path}: Database.Password is required (or set Database.Url)"


def test_no_database_section_at_all(tmp_path: Path):
    path = write(tmp_path / "appsettings.json", {"HaloUrl": "https://x"})
    assert load_error(path) == f"{path}: Database.Server is required (or set Database.Url)"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"Sync": {"BatchSize": "lots"}}, 'Sync.BatchSize must be an integer (got "lots")'),
        ({"Sync": {"BatchSize": 2.5}}, "Sync.BatchSize must be an integer (got 2.5)"),
        ({"Sync": {"BatchSize": 0}}, "Sync.BatchSize must be at least 1 (got 0)"),
        ({"Sync": {"BatchSize": 100001}}, "Sync.BatchSize must be at most 100000 (got 100001)"),
        ({"Sync": {"MaxDeactivations": -1}}, "Sync.MaxDeactivations must be at least 0 (got -1)"),
        (
            {"Sync": {"MaxDeactivationPercent": 150}},
            "Sync.MaxDeactivationPercent must be at most 100 (got 150)",
        ),
        (
            {"Sync": {"MaxDeactivationPercent": "ten"}},
            'Sync.MaxDeactivationPercent must be a number (got "ten")',
        ),
        (
            {"Sync": {"DeactivateAfterMissedRuns": 0}},
            "Sync.DeactivateAfterMissedRuns must be at least 1 (got 0)",
        ),
        ({"Sync": [1]}, "Sync must be an object (got a list)"),
        (
            {"Logging": {"Level": "Verbose"}},
            "Logging.Level must be one of Trace, Debug, Information, Warning, Error, Critical "
            '(got "Verbose")',
        ),
        ({"Logging": {"RetainDays": "x"}}, 'Logging.RetainDays must be an integer (got "x")'),
        ({"Logging": {"RetainDays": True}}, "Logging.RetainDays must be an integer (got true)"),
        (
            {"Sync": {"MaxDeactivationPercent": False}},
            "Sync.MaxDeactivationPercent must be a number (got false)",
        ),
        (
            {"Database": {"TrustServerCertificate": "perhaps"}},
            'Database.TrustServerCertificate must be true or false (got "perhaps")',
        ),
        (
            {"Database": {"Encrypt": "maybe"}},
            'Database.Encrypt must be one of yes, no, strict, mandatory, optional (got "maybe")',
        ),
        ({"Database": {"Server": 42}}, "Database.Server must be a string (got 42)"),
        (
            {"Integrations": {"AzureAD": {"Users": "maybe"}}},
            'Integrations.AzureAD.Users must be true or false (got "maybe")',
        ),
        ({"Integrations": {"LDAP": True}}, "Integrations.LDAP must be an object (got true)"),
        (
            {"HaloUrl": "halo.example.com"},
            'HaloUrl must start with http:// or https:// (got "halo.example.com")',
        ),
        (
            {"Sync": {"BatchSize": "lots", "MaxDeactivations": "many"}},
            'Sync.BatchSize must be an integer (got "lots") (and 1 more problem)',
        ),
    ],
)
def test_wrong_types_name_the_field_and_value(tmp_path: Path, changes: dict, expected: str):
    path = write(tmp_path / "appsettings.json", with_changes(**changes))
    assert load_error(path) == f"{path}: {expected}"


def test_password_and_url_values_are_never_shown(tmp_path: Path):
    path = write(tmp_path / "appsettings.json", with_changes(Database={"Password": 12345678}))
    message = load_error(path)
    assert message == f"{path}: Database.Password must be a string"
    assert "12345678" not in message

    bad_url = "not a url with :hunter2@ inside"
    path = write(tmp_path / "appsettings.json", {"Database": {"Url": bad_url}})
    message = load_error(path)
    assert message.startswith(f"{path}: Database.Url is not a valid SQLAlchemy URL")
    assert "hunter2" not in message


def test_halo_url_error_masks_embedded_credentials(tmp_path: Path):
    path = write(tmp_path / "appsettings.json", with_changes(HaloUrl="ftp://me:hunter2@halo"))
    message = load_error(path)
    assert "hunter2" not in message
    assert message == f'{path}: HaloUrl must start with http:// or https:// (got "ftp://me:{MASK}@halo")'


# -- environment overrides -------------------------------------------------------------------


def test_env_overrides_are_parsed_by_the_model(cfg: Path):
    s = load_settings(
        cfg,
        env={
            "HALODB_Database__Password": "from-env",
            "HALODB_SYNC__BATCHSIZE": "500",
            "HALODB_Sync__MaxDeactivationPercent": "2.5",
            "HALODB_HaloUrl": "https://env.example.com",
            "HALODB_Integrations__AzureAD__Users": "true",
            "HALODB_Database__TrustServerCertificate": "false",
            "HALODB_REQUIRE_BACKENDS": "sqlite",  # not configuration: ignored
            "PATH": "/usr/bin",
        },
    )
    assert s.database.password == "from-env"
    assert s.sync.batch_size == 500
    assert s.sync.max_deactivation_percent == 2.5
    assert s.halo_url == "https://env.example.com"
    assert s.enabled_entities("AzureAD") == ["Users"]


def test_env_defaults_to_os_environ(cfg: Path, monkeypatch):
    monkeypatch.setenv("HALODB_Sync__BatchSize", "42")
    assert load_settings(cfg).sync.batch_size == 42


def test_env_can_supply_a_missing_required_field(tmp_path: Path):
    data = with_changes()
    del data["Database"]["Password"]
    path = write(tmp_path / "appsettings.json", data)
    assert load_settings(path, env={"HALODB_Database__Password": "x"}).database.password == "x"


def test_empty_env_value_clears_an_optional_field(cfg: Path):
    assert load_settings(cfg, env={"HALODB_InstanceName": ""}).instance_name is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"HALODB_Database__Pasword": "x"},
            "environment variable HALODB_Database__Pasword: unknown key 'Database.Pasword' "
            "(did you mean 'Database.Password'?)",
        ),
        (
            {"HALODB_Databse__Password": "x"},
            "environment variable HALODB_Databse__Password: unknown key 'Databse' "
            "(did you mean 'Database'?)",
        ),
        (
            {"HALODB_HaloUr": "x"},
            "environment variable HALODB_HaloUr: unknown key 'HaloUr' (did you mean 'HaloUrl'?)",
        ),
        (
            {"HALODB_Sync": "x"},
            "environment variable HALODB_Sync: Sync is a section, not a value "
            "(set one key, e.g. HALODB_Sync__BatchSize)",
        ),
        ("type", None),
    ],
)
def test_bad_env_overrides_name_the_variable(cfg: Path, env, expected):
    if env == "type":
        env = {"HALODB_Sync__BatchSize": "lots"}
        expected = (
            f"{cfg}: Sync.BatchSize (from HALODB_Sync__BatchSize) must be an integer (got \"lots\")"
        )
    assert load_error(cfg, env=env) == expected


def test_env_password_error_does_not_show_the_password(cfg: Path):
    message = load_error(cfg, env={"HALODB_Database__Url": "postgresql+psycopg://u:pw-secret@h:x/db"})
    assert "pw-secret" not in message


# -- saving and editing ----------------------------------------------------------------------


def test_save_load_round_trip(cfg: Path, tmp_path: Path):
    original = load_settings(cfg, env={})
    out = tmp_path / "copy.json"
    assert save_settings(original, out) == out.resolve()
    again = load_settings(out, env={})
    assert again == original
    assert again.source_path == out.resolve()
    text = out.read_text()
    assert text.startswith('{\n  "HaloUrl": "https://halo.example.com",\n')
    assert text.endswith("}\n")
    # Atomic write leaves no temporary files behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["appsettings.json", "copy.json"]


def test_save_is_atomic_when_the_write_fails(cfg: Path, monkeypatch):
    before = cfg.read_text()
    s = load_settings(cfg, env={})

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(ConfigError, match="cannot write .*No space left on device"):
        save_settings(s, cfg)
    assert cfg.read_text() == before
    assert [p.name for p in cfg.parent.iterdir()] == ["appsettings.json"]


def test_init_writes_and_refuses_to_overwrite(tmp_path: Path):
    path = tmp_path / "appsettings.json"
    s = init_settings(
        path, halo_url="https://h", server="s", name="n", username="u", password="p"
    )
    assert s.source_path == path.resolve()
    assert load_settings(path, env={}) == s
    with pytest.raises(ConfigError) as caught:
        init_settings(path, halo_url="https://x", server="s", name="n", username="u", password="p")
    assert str(caught.value) == f"{path} already exists (use --force to overwrite it)"
    init_settings(
        path, halo_url=None, server=None, name=None, username=None, password=None,
        url="sqlite:///demo.db", force=True,
    )
    assert load_settings(path, env={}).database.url == "sqlite:///demo.db"


def test_init_validates_before_writing(tmp_path: Path):
    path = tmp_path / "appsettings.json"
    with pytest.raises(ConfigError) as caught:
        init_settings(path, halo_url="https://h", server="s", name="n", username="u", password=None)
    assert str(caught.value) == f"{path}: Database.Password is required (or set Database.Url)"
    assert not path.exists()


def test_set_value_parses_validates_and_saves(cfg: Path):
    assert set_value(cfg, "sync.batchsize", "500").sync.batch_size == 500
    assert load_settings(cfg, env={}).sync.batch_size == 500
    s = set_value(cfg, "Integrations.AzureAD.Users", "true")
    assert s.enabled_entities("AzureAD") == ["Users"]
    assert set_value(cfg, "Database.Server", "SQL02").database.server == "SQL02"
    # Text fields keep the text as typed, even when it looks like JSON.
    assert set_value(cfg, "Database.Password", "1e3").database.password == "1e3"
    assert set_value(cfg, "InstanceName", "null").instance_name is None
    assert display_value(s, "sync.BATCHSIZE") == "Sync.BatchSize = 500"


def test_set_value_errors_leave_the_file_alone(cfg: Path):
    before = cfg.read_text()
    for key, value, expected in [
        ("Sync.BatchSize", "lots", 'Sync.BatchSize must be an integer (got "lots")'),
        ("Sync.BatchSise", "1", "unknown key 'Sync.BatchSise' (did you mean 'Sync.BatchSize'?)"),
        ("Sync", "1", "Sync is a section, not a value (set one key, e.g. Sync.BatchSize)"),
        (
            "Integrations.AzureAD.Userz",
            "true",
            "unknown key 'Integrations.AzureAD.Userz' (did you mean 'Integrations.AzureAD.Users'?)",
        ),
    ]:
        with pytest.raises(ConfigError) as caught:
            set_value(cfg, key, value)
        assert str(caught.value) == f"{cfg}: {expected}"
    assert cfg.read_text() == before


def test_set_value_never_copies_env_overrides_into_the_file(cfg: Path, monkeypatch):
    monkeypatch.setenv("HALODB_Database__Password", "env-only-secret")
    set_value(cfg, "Sync.BatchSize", "7")
    assert "env-only-secret" not in cfg.read_text()


def test_set_entity(cfg: Path):
    s = set_entity(cfg, "azuread", "AGENTS", True)
    assert s.enabled_entities("AzureAD") == ["Agents"]
    s = set_entity(cfg, "Spreadsheet", "clients", False)
    assert s.enabled_entities("Spreadsheet") == ["Sites", "Assets"]
    assert load_settings(cfg, env={}).enabled_entities("Spreadsheet") == ["Sites", "Assets"]
    assert entity_key("ldap", "users") == "LDAP.Users"
    with pytest.raises(ConfigError) as caught:
        set_entity(cfg, "Azure", "Users", True)
    assert str(caught.value) == (
        f"{cfg}: unknown key 'Integrations.Azure' (did you mean 'Integrations.AzureAD'?)"
    )


def test_settings_built_in_code_are_validated_too():
    s = Settings(
        database=DatabaseSettings(url="sqlite://"), integrations={"pax8": {"customers": True}}
    )
    assert s.integrations == {"Pax8": {"Customers": True}}
    assert s.enabled_entities("PAX8") == ["Customers"]
    with pytest.raises(ValueError, match="Database.Password is required"):
        Settings(halo_url="https://h", database=DatabaseSettings(server="s", name="n", username="u"))
    with pytest.raises(ConfigError, match="did you mean 'Integrations.AzureAD'"):
        s.enabled_entities("AzureA")


def test_catalogue_integrity():
    for name, entities in INTEGRATIONS.items():
        assert entities and len(set(entities)) == len(entities), name


# -- redaction ---------------------------------------------------------------------------------


def test_secrets_and_masked_dict(cfg: Path):
    s = load_settings(cfg, env={})
    assert s.secrets() == [PASSWORD]
    masked = masked_dict(s)
    assert masked["Database"]["Password"] == MASK
    assert PASSWORD not in json.dumps(masked)
    assert display_value(s, "database.password") == f"Database.Password = {MASK}"


def test_url_passwords_are_secrets_raw_and_decoded(tmp_path: Path):
    url = "postgresql+psycopg://halo:p%40ss%2Fw0rd@db.example.com:5432/halo"
    path = write(tmp_path / "appsettings.json", {"Database": {"Url": url}})
    s = load_settings(path, env={})
    assert set(s.secrets()) == {"p%40ss%2Fw0rd", "p@ss/w0rd"}
    assert masked_dict(s)["Database"]["Url"] == (
        f"postgresql+psycopg://halo:{MASK}@db.example.com:5432/halo"
    )
    assert redact(f"connecting with {url} (p@ss/w0rd)", s.secrets()) == (
        f"connecting with postgresql+psycopg://halo:{MASK}@db.example.com:5432/halo ({MASK})"
    )


def test_odbc_connect_password_is_a_secret(tmp_path: Path):
    url = "mssql+pyodbc:///?odbc_connect=DRIVER%3D%7BODBC%7D%3BUID%3Du%3BPWD%3Dodbc-secret%3BAPP%3Dx"
    path = write(tmp_path / "appsettings.json", {"Database": {"Url": url}})
    s = load_settings(path, env={})
    assert "odbc-secret" in s.secrets()
    assert "odbc-secret" not in json.dumps(masked_dict(s))


def test_redact_overlapping_and_empty_secrets():
    assert redact("abcdef", ["bcd", "cde", ""]) == f"a{MASK}f"
    assert redact("no secrets here", []) == "no secrets here"
    assert redact("aaaa", ["aa"]) == MASK


@given(
    text=st.text(),
    secrets=st.lists(st.text(min_size=1).filter(lambda s: "*" not in s), min_size=1, max_size=4),
    data=st.data(),
)
def test_secrets_never_survive_redaction(text: str, secrets: list[str], data):
    # Splice each secret into the text somewhere, then check none is left.
    for secret in secrets:
        at = data.draw(st.integers(0, len(text)))
        text = text[:at] + secret + text[at:]
    out = redact(text, secrets)
    for secret in secrets:
        assert secret not in out
