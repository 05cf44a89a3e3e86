"""appsettings.json ``AzureAD.Secrets``: shape, environment overrides, and redaction everywhere the
database password is redacted (``Settings.secrets``, ``config show``, error messages, the log)."""

from __future__ import annotations

import json
import logging

import pytest
from click.testing import CliRunner

from halodb import logs
from halodb.cli import main
from halodb.config import ConfigError, display_lines, load_settings, masked_dict, set_value

SECRET = "Az~Secret.0123456789-abcdef"
OTHER = "0therS3cret~value.9876"


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / "appsettings.json"
    data = {
        "Database": {"Url": "sqlite:///halo.db"},
        "azuread": {"SECRETS": {"3": SECRET, " Contoso ": OTHER}},  # keys of any case
        "Logging": {"Folder": str(tmp_path / "logs")},
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_secrets_load_by_connection_id_or_name(cfg):
    settings = load_settings(cfg, env={})
    assert settings.azure_ad.secrets == {"3": SECRET, "Contoso": OTHER}
    assert set(settings.secrets()) == {SECRET, OTHER}


def test_environment_sets_or_overrides_one_secret(cfg):
    env = {"HALODB_AZUREAD__SECRETS__contoso": "from-env-1", "HALODB_AzureAD__Secrets__7": "from-env-7"}
    settings = load_settings(cfg, env=env)
    assert settings.azure_ad.secrets == {"3": SECRET, "Contoso": "from-env-1", "7": "from-env-7"}


def test_environment_naming_the_whole_section_is_refused(cfg):
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={"HALODB_AZUREAD__SECRETS": SECRET})
    assert str(err.value) == (
        "environment variable HALODB_AZUREAD__SECRETS: AzureAD.Secrets is a section, not a value "
        "(set one key, e.g. HALODB_AzureAD__Secrets__<connection id or name>)"
    )
    assert SECRET not in str(err.value)


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ({"3": 12345678}, "AzureAD.Secrets.3 must be a string"),
        ({"a": SECRET, "A": OTHER}, "AzureAD.Secrets has the connection 'A' twice (keys are case-insensitive)"),
        (SECRET, "AzureAD.Secrets must be an object"),
    ],
)
def test_a_bad_secret_is_reported_without_its_value(tmp_path, secrets, message):
    path = tmp_path / "appsettings.json"
    path.write_text(json.dumps({"Database": {"Url": "sqlite://"}, "AzureAD": {"Secrets": secrets}}))
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    assert str(err.value) == f"{path}: {message}"
    assert "12345678" not in str(err.value) and SECRET not in str(err.value)


def test_unknown_key_in_the_section_suggests_secrets(tmp_path):
    path = tmp_path / "appsettings.json"
    path.write_text(json.dumps({"Database": {"Url": "sqlite://"}, "AzureAD": {"Secret": {"3": SECRET}}}))
    with pytest.raises(ConfigError, match=r"unknown key 'AzureAD.Secret' \(did you mean 'AzureAD.Secrets'\?\)"):
        load_settings(path, env={})


def test_show_masks_every_secret(cfg):
    settings = load_settings(cfg, env={})
    assert masked_dict(settings)["AzureAD"] == {"Secrets": {"3": "********", "Contoso": "********"}}
    assert "AzureAD.Secrets.Contoso = ********" in display_lines(settings)
    new = "N3w~Secret.typed-on-the-command-line"
    for args in (["config", "show", "--config", str(cfg)], ["config", "show", "--json", "--config", str(cfg)],
                 ["config", "set", "AzureAD.Secrets.5", new, "--config", str(cfg)]):  # fmt: skip
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        assert "********" in result.output
        assert SECRET not in result.output and OTHER not in result.output and new not in result.output
    assert result.output == "AzureAD.Secrets.5 = ********\n"
    assert load_settings(cfg, env={}).azure_ad.secrets["5"] == new


def test_config_set_keeps_a_secret_as_typed_and_null_removes_it(cfg):
    set_value(cfg, "azuread.secrets.9", "123456")
    saved = json.loads(cfg.read_text())
    assert saved["AzureAD"]["Secrets"]["9"] == "123456"  # text, not the number 123456
    set_value(cfg, "AzureAD.Secrets.9", "null")
    assert "9" not in load_settings(cfg, env={}).azure_ad.secrets


def test_log_file_blanks_the_secrets(cfg, tmp_path):
    settings = load_settings(cfg, env={})
    path = logs.setup(settings, workdir=tmp_path)
    try:
        logging.getLogger("halodb.test").warning("token request sent %s and %s", SECRET, OTHER)
    finally:
        for handler in logging.getLogger("halodb").handlers:
            handler.flush()
    text = path.read_text(encoding="utf-8")
    assert "token request sent ******** and ********" in text
    assert SECRET not in text and OTHER not in text
