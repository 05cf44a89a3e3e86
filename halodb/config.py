"""The ``appsettings.json`` model: load, validate, override from the environment, save, redact.

The file is .NET style (PascalCase keys). Keys are matched case-insensitively on load and written
back in their canonical spelling. Every problem is raised as one :class:`~halodb.errors.ConfigError`
line that names the file (or environment variable) and the dotted field, e.g.::

    appsettings.json: unknown key 'Database.Pasword' (did you mean 'Database.Password'?)
    appsettings.json: Sync.BatchSize must be an integer (got "lots")

Secrets (the database password, a password inside a URL, ``AzureAD.Secrets``) never appear in those messages; use
:meth:`Settings.secrets`, :func:`redact` and :func:`masked_dict` for anything printed or logged.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_pascal
from pydantic_core import PydanticCustomError

from halodb.errors import ConfigError

DEFAULT_CONFIG_NAME = "appsettings.json"
ENV_PREFIX = "HALODB_"
MASK = "********"

#: Every integration halodb knows and the entities each can sync, in canonical spelling.
INTEGRATIONS: dict[str, tuple[str, ...]] = {
    "Spreadsheet": ("Clients", "Sites", "Users", "Assets"),
    "SqlImport": ("Users", "Assets", "Clients"),
    "AzureAD": ("Users", "Agents"),
    "LDAP": ("Users", "Agents"),
    "IncomingMail": ("Mailboxes",),
    "Pax8": ("Customers", "Subscriptions"),
}

#: .NET ``LogLevel`` names accepted for ``Logging.Level`` (``None`` is left out on purpose).
LOG_LEVELS: tuple[str, ...] = ("Trace", "Debug", "Information", "Warning", "Error", "Critical")

#: ODBC ``Encrypt`` values (Driver 18 also accepts mandatory/optional as synonyms).
ENCRYPT_VALUES: tuple[str, ...] = ("yes", "no", "strict", "mandatory", "optional")

# Fields whose value is never shown in an error message, even when it is the offending one.
_SECRET_FIELDS = frozenset({"Database.Password", "Database.Url"})

# The user:password@ part of a URL, same shape SQLAlchemy's own parser accepts.
_URL_PASSWORD = re.compile(r"^(?P<head>[\w+.\-]+://[^:/@]*:)(?P<password>[^@]*)(?=@)")
# PWD=... inside an ODBC connection string carried in the query (mssql+pyodbc:///?odbc_connect=).
# The separators may be percent-encoded (%3B is ";", %3D is "=") or not.
_ODBC_PASSWORD = re.compile(
    r"(?i)(?P<head>(?:^|[;?&]|%3B)\s*(?:pwd|password)\s*(?:=|%3D))(?P<password>(?:(?!%3B)[^;&])*)"
)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


def _field_error(message: str) -> PydanticCustomError:
    """A validation error whose text follows the dotted field name (``Sync.X must be ...``)."""
    return PydanticCustomError("halodb_field", message)


def _model_error(message: str) -> PydanticCustomError:
    """A validation error whose text is already the whole sentence."""
    return PydanticCustomError("halodb_model", message)


def _blank_to_none(value: Any) -> Any:
    # An empty string in the file or an empty environment variable means "not set".
    if isinstance(value, str) and not value.strip():
        return None
    return value


class _Section(BaseModel):
    """Common configuration: PascalCase aliases, unknown keys rejected."""

    model_config = ConfigDict(
        alias_generator=to_pascal,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=True,
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # Pydantic's lax mode reads true as 1; "BatchSize": true is a mistake, not a number.
        if isinstance(value, bool) and info.field_name:
            annotation = cls.model_fields[info.field_name].annotation
            if annotation is int:
                raise _field_error(f"must be an integer (got {_show(value)})")
            if annotation is float:
                raise _field_error(f"must be a number (got {_show(value)})")
        return value


class DatabaseSettings(_Section):
    """``Database``: the Halo SQL Server database, or any SQLAlchemy URL via ``Url``."""

    server: str | None = None
    name: str | None = None
    username: str | None = None
    password: str | None = None
    url: str | None = None
    driver: str | None = None
    encrypt: str = "yes"
    trust_server_certificate: bool = False
    connect_timeout: int = Field(default=15, ge=0)

    @field_validator("url", "driver", mode="before")
    @classmethod
    def _optional_text(cls, value: Any) -> Any:
        return _blank_to_none(value)

    @field_validator("url")
    @classmethod
    def _parse_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from sqlalchemy.engine import make_url  # only needed when a URL is configured

        try:
            make_url(value)
        except Exception:
            # The value may hold a password, so it is not echoed back.
            raise _field_error(
                "is not a valid SQLAlchemy URL (e.g. sqlite:///halo.db or "
                "postgresql+psycopg://user:password@host/halo)"
            ) from None
        return value

    @field_validator("encrypt", mode="before")
    @classmethod
    def _encrypt(cls, value: Any) -> Any:
        # JSON true/false are accepted as yes/no because that is how people write booleans.
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, str):
            lowered = value.strip().lower()
            lowered = {"true": "yes", "false": "no"}.get(lowered, lowered)
            if lowered in ENCRYPT_VALUES:
                return lowered
        raise _field_error(f"must be one of {', '.join(ENCRYPT_VALUES)} (got {_show(value)})")


class LoggingSettings(_Section):
    """``Logging``: where run logs go, how verbose, how long they are kept."""

    folder: str = "logs"
    level: str = "Information"
    retain_days: int = Field(default=30, ge=0)

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        if isinstance(value, str):
            for level in LOG_LEVELS:
                if level.lower() == value.strip().lower():
                    return level
        raise _field_error(f"must be one of {', '.join(LOG_LEVELS)} (got {_show(value)})")


class SyncSettings(_Section):
    """``Sync``: batch size and the safety limits on deactivating records."""

    batch_size: int = Field(default=2000, ge=1, le=100_000)
    max_deactivations: int = Field(default=500, ge=0)
    max_deactivation_percent: float = Field(default=10.0, ge=0, le=100)
    deactivate_after_missed_runs: int = Field(default=2, ge=1)
    #: How long an entity lock outlives a run that stopped renewing it (a killed process).
    lock_lease_seconds: int = Field(default=600, ge=5)


class AzureADSettings(_Section):
    """``AzureAD``: what the Azure AD integration needs that Halo's database cannot give it.

    ``Secrets`` maps a connection - its id in Halo (``"3"``) or its name, any case - to the app
    registration's client secret, which Halo stores encrypted with a key halodb does not have::

        "AzureAD": { "Secrets": { "3": "<client secret>", "Contoso": "<client secret>" } }

    One can come from the environment instead: ``HALODB_AzureAD__Secrets__3``. The values are
    secrets: masked by ``config show``, blanked in logs and never echoed in an error message.
    """

    secrets: dict[str, str] = Field(default_factory=dict)

    @field_validator("secrets", mode="before")
    @classmethod
    def _secrets(cls, value: Any) -> Any:
        # null or blank means "no secret for this connection" (`config set ... null` removes one).
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            return value
        out: dict[Any, Any] = {}
        seen: set[str] = set()
        for key, secret in value.items():
            name = str(key).strip()
            if name.lower() in seen:
                raise _field_error(f"has the connection {name!r} twice (keys are case-insensitive)")
            seen.add(name.lower())
            if _blank_to_none(secret) is not None:
                out[name] = secret.strip() if isinstance(secret, str) else secret
        return out


def on_windows() -> bool:
    """Whether integrated authentication is possible here (a function, so tests can say yes)."""
    return os.name == "nt"


class Settings(_Section):
    """The whole ``appsettings.json``.

    ``source_path`` is the resolved path of the file it was loaded from (``None`` when built in
    code); it is not part of the file.
    """

    halo_url: str | None = None
    instance_name: str | None = None
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    integrations: dict[str, dict[str, bool]] = Field(default_factory=dict)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    azure_ad: AzureADSettings = Field(default_factory=AzureADSettings, alias="AzureAD")

    _source_path: Path | None = PrivateAttr(default=None)

    @property
    def source_path(self) -> Path | None:
        """Resolved path of the file these settings were loaded from or saved to."""
        return self._source_path

    @field_validator("halo_url", "instance_name", mode="before")
    @classmethod
    def _optional_text(cls, value: Any) -> Any:
        return _blank_to_none(value)

    @field_validator("halo_url")
    @classmethod
    def _halo_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value.lower().startswith(("http://", "https://")):
            raise _field_error(
                f"must start with http:// or https:// (got {_show(mask_url(value))})"
            )
        return value.rstrip("/")

    @field_validator("integrations", mode="before")
    @classmethod
    def _integration_names(cls, value: Any) -> Any:
        # Canonical spelling for settings built in code; files are canonicalised before this.
        if not isinstance(value, Mapping):
            return value
        try:
            return _canonicalise(value, ("Integrations",))
        except _UnknownKey as err:
            raise _model_error(str(err)) from None

    @model_validator(mode="after")
    def _required_unless_url(self) -> Settings:
        if self.database.url is None:
            required = [
                ("HaloUrl", self.halo_url),
                ("Database.Server", self.database.server),
                ("Database.Name", self.database.name),
            ]
            # On Windows an empty Database.Username means integrated authentication (the
            # account the scheduled task runs as), which needs no password either.
            if not on_windows() or (self.database.username or "").strip():
                required += [("Database.Username", self.database.username), ("Database.Password", self.database.password)]
            for dotted, value in required:
                if value is None or not value.strip():
                    raise _model_error(f"{dotted} is required (or set Database.Url)")
        return self

    # -- queries ----------------------------------------------------------------------------

    def enabled_entities(self, integration: str) -> list[str]:
        """Canonical names of the entities switched on for ``integration`` (catalogue order).

        ``integration`` is matched case-insensitively; an unknown name raises ``ConfigError``
        with a suggestion.
        """
        name = _resolve_or_raise(["Integrations", integration], where=None)[1]
        switches = self.integrations.get(name, {})
        return [entity for entity in INTEGRATIONS[name] if switches.get(entity)]

    def database_url_resolved(self) -> str | None:
        """``Database.Url`` with a relative SQLite path made absolute against the config folder.

        Absolute SQLite paths, in-memory databases and every other backend are returned as they
        are. ``None`` when no URL is configured.
        """
        if self.database.url is None:
            return None
        from sqlalchemy.engine import make_url

        url = make_url(self.database.url)
        database = url.database
        if (
            url.get_backend_name() != "sqlite"
            or not database
            or database == ":memory:"
            or database.startswith("file:")  # SQLite URI filenames are left to SQLite
            or Path(database).is_absolute()
        ):
            return self.database.url
        base = self.source_path.parent if self.source_path else Path.cwd()
        return url.set(database=str((base / database).resolve())).render_as_string(
            hide_password=False
        )

    def secrets(self) -> list[str]:
        """Every non-empty value that must never be printed, longest first.

        The database password, the password inside ``Database.Url`` / ``HaloUrl`` both as
        written (percent-encoded) and decoded, and every ``AzureAD.Secrets`` value.
        """
        found: set[str] = set(self.azure_ad.secrets.values())
        if self.database.password:
            found.add(self.database.password)
        for url in (self.database.url, self.halo_url):
            if url:
                found.update(_url_secrets(url))
        return sorted((s for s in found if s), key=lambda s: (-len(s), s))


# Sections of Settings that are models, by canonical key.
_SECTIONS: dict[str, type[_Section]] = {
    "Database": DatabaseSettings,
    "Logging": LoggingSettings,
    "Sync": SyncSettings,
    "AzureAD": AzureADSettings,
}

#: Sections whose keys are names the user chooses (not a schema), by canonical path, with the
#: placeholder messages show for such a key.
_FREE_FORM: dict[tuple[str, ...], str] = {("AzureAD", "Secrets"): "<connection id or name>"}


def _aliases(model: type[BaseModel]) -> list[str]:
    return [field.alias or to_pascal(name) for name, field in model.model_fields.items()]


# --------------------------------------------------------------------------------------------
# Key lookup: case-insensitive matching and "did you mean" suggestions
# --------------------------------------------------------------------------------------------


class _UnknownKey(Exception):
    """A key that does not exist at its level; str() is the user-facing sentence."""


def _children(path: tuple[str, ...]) -> list[str] | None:
    """Valid child keys under the canonical ``path``, or ``None`` when ``path`` is a value."""
    if not path:
        return _aliases(Settings)
    if path in _FREE_FORM:
        return [_FREE_FORM[path]]
    if len(path) == 1 and path[0] in _SECTIONS:
        return _aliases(_SECTIONS[path[0]])
    if path == ("Integrations",):
        return list(INTEGRATIONS)
    if len(path) == 2 and path[0] == "Integrations":
        return list(INTEGRATIONS[path[1]])
    return None


def _match(key: str, path: tuple[str, ...], valid: list[str]) -> str:
    """The canonical spelling of ``key`` among ``valid``, else raise ``_UnknownKey``."""
    lowered = {name.lower(): name for name in valid}
    if isinstance(key, str) and key.strip().lower() in lowered:
        return lowered[key.strip().lower()]
    prefix = "".join(f"{part}." for part in path)
    close = difflib.get_close_matches(str(key).lower(), list(lowered), n=1, cutoff=0.6)
    if close:
        raise _UnknownKey(
            f"unknown key '{prefix}{key}' (did you mean '{prefix}{lowered[close[0]]}'?)"
        )
    where = f" under {'.'.join(path)}" if path else ""
    raise _UnknownKey(f"unknown key '{prefix}{key}' (valid keys{where}: {', '.join(valid)})")


def _resolve(parts: list[str]) -> tuple[tuple[str, ...], bool]:
    """Canonical spelling of a dotted key; the flag says whether it names a section."""
    path: tuple[str, ...] = ()
    for part in parts:
        if path in _FREE_FORM:
            path = (*path, part.strip())  # a name the user chose: kept as written
            continue
        valid = _children(path)
        if valid is None:
            # Deeper than the schema goes: the previous part is a value, not a section.
            dotted = ".".join(path)
            raise _UnknownKey(f"unknown key '{dotted}.{part}' ({dotted} is a value)")
        path = (*path, _match(part, path, valid))
    return path, _children(path) is not None


def _resolve_or_raise(parts: list[str], where: str | None) -> tuple[str, ...]:
    try:
        return _resolve(parts)[0]
    except _UnknownKey as err:
        raise ConfigError(f"{where}: {err}" if where else str(err)) from None


def _canonicalise(data: Any, path: tuple[str, ...] = ()) -> Any:
    """Rename every key of ``data`` to its canonical spelling, recursively.

    Values of the wrong shape (a string where a section belongs) are left for the model to
    report, so that the message says what was expected.
    """
    if path in _FREE_FORM:
        return data  # the user's own names; the model checks them
    valid = _children(path)
    if valid is None or not isinstance(data, Mapping):
        return data
    out: dict[str, Any] = {}
    for key, value in data.items():
        canonical = _match(key, path, valid)
        if canonical in out:
            prefix = "".join(f"{part}." for part in path)
            raise _UnknownKey(f"duplicate key '{prefix}{canonical}' (keys are case-insensitive)")
        out[canonical] = _canonicalise(value, (*path, canonical))
    return out


# --------------------------------------------------------------------------------------------
# Reading the file
# --------------------------------------------------------------------------------------------


def _strip_comments(text: str) -> str:
    """Blank out // and /* */ comments and trailing commas, keeping every line and column.

    .NET's configuration reader accepts both, so existing appsettings.json files may use them;
    replacing them by spaces keeps json's error positions pointing at the user's text.
    """
    chars = list(text)
    i, n, in_string = 0, len(chars), False
    while i < n:
        c = chars[i]
        if in_string:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "/" and i + 1 < n and chars[i + 1] == "/":
            while i < n and chars[i] != "\n":
                chars[i] = " "
                i += 1
            continue
        elif c == "/" and i + 1 < n and chars[i + 1] == "*":
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            for j in range(i, end):
                if chars[j] != "\n":
                    chars[j] = " "
            i = end
            continue
        i += 1
    # Second pass, on comment-free text: a comma followed only by whitespace and } or ].
    out = "".join(chars)
    chars, in_string, i = list(out), False, 0
    while i < n:
        c = chars[i]
        if in_string:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == ",":
            j = i + 1
            while j < n and chars[j] in " \t\r\n":
                j += 1
            if j < n and chars[j] in "}]":
                chars[i] = " "
        i += 1
    return "".join(chars)


def _config_path(path: str | os.PathLike[str] | None) -> Path:
    """The file to use: ``path``, ``appsettings.json`` inside it if a folder, else the default."""
    if path is None:
        return Path(DEFAULT_CONFIG_NAME)
    path = Path(path)
    return path / DEFAULT_CONFIG_NAME if path.is_dir() else path


def _read_file(path: Path) -> dict[str, Any]:
    """The file's JSON object with canonical keys (no environment, no validation yet)."""
    where = str(path)
    try:
        # utf-8-sig: files saved by Windows tools often start with a BOM.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(
            f"appsettings.json not found: {where} (create one with 'halodb config init')"
        ) from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{where}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise ConfigError(f"{where}: cannot read: {err.strerror or err}") from None

    def reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ConfigError(f"{where}: duplicate key '{key}'")
            result[key] = value
        return result

    try:
        data = json.loads(_strip_comments(text), object_pairs_hook=reject_duplicates)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{where}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object at the top level (got {_kind(data)})")
    try:
        return _canonicalise(data)
    except _UnknownKey as err:
        raise ConfigError(f"{where}: {err}") from None


# --------------------------------------------------------------------------------------------
# Environment overrides
# --------------------------------------------------------------------------------------------


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Apply ``HALODB_<Key>__<Key>`` variables to ``data`` in place.

    Returns dotted key -> variable name for every override applied, so that validation errors
    can name the variable. Other ``HALODB_*`` variables (``HALODB_REQUIRE_BACKENDS`` and the like)
    are not configuration and are ignored, unless they are a near-miss of a top-level key.
    """
    applied: dict[str, str] = {}
    top_level = [key.lower() for key in _aliases(Settings)]
    for var in sorted(env):
        if not var.upper().startswith(ENV_PREFIX):
            continue
        parts = var[len(ENV_PREFIX):].split("__")
        if len(parts) == 1 and parts[0].lower() not in top_level:
            if not difflib.get_close_matches(parts[0].lower(), top_level, n=1, cutoff=0.8):
                continue
        try:
            path, is_section = _resolve(parts)
        except _UnknownKey as err:
            raise ConfigError(f"environment variable {var}: {err}") from None
        dotted = ".".join(path)
        if is_section:
            example = f"{ENV_PREFIX}{'__'.join(path)}__{_children(path)[0]}"
            raise ConfigError(
                f"environment variable {var}: {dotted} is a section, not a value "
                f"(set one key, e.g. {example})"
            )
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break  # the file has the wrong shape here; validation reports it
            node = child
        else:
            # The raw string is handed to the model, which parses "500" as 500, "true" as True.
            key = path[-1]
            if path[:-1] in _FREE_FORM:  # replaces the file's entry for that name, in any case
                key = next((k for k in node if str(k).strip().lower() == key.lower()), key)
            node[key] = env[var]
            applied[dotted] = var
    return applied


# --------------------------------------------------------------------------------------------
# Validation and error messages
# --------------------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return _show(value)


def _show(value: Any, limit: int = 60) -> str:
    """A short JSON rendering of an offending value for an error message."""
    if isinstance(value, (dict, list)):
        return _kind(value)
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_EXPECTED = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "missing": "is required",
    "extra_forbidden": "is not a known key",
}

_BOUNDS = {
    "greater_than_equal": ("ge", "must be at least {}"),
    "less_than_equal": ("le", "must be at most {}"),
    "greater_than": ("gt", "must be greater than {}"),
    "less_than": ("lt", "must be less than {}"),
}


def _describe(error: Mapping[str, Any], overrides: Mapping[str, str]) -> str:
    """One pydantic error as ``Field.Name must be ... (got ...)``."""
    dotted = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "halodb_model":
        return error["msg"]
    subject = dotted
    if dotted in overrides:
        subject = f"{dotted} (from {overrides[dotted]})"
    if kind == "halodb_field":
        # The validator already wrote the "(got ...)" part, or left it out for secrets.
        return f"{subject} {error['msg']}"
    if kind in _BOUNDS:
        bound, template = _BOUNDS[kind]
        limit = error.get("ctx", {}).get(bound)
        if isinstance(limit, float) and limit.is_integer():
            limit = int(limit)  # "at most 100", not "at most 100.0"
        expected = template.format(limit)
    else:
        expected = _EXPECTED.get(kind, f"is invalid: {error['msg']}")
    if kind in ("missing", "extra_forbidden") or _is_secret_field(dotted):
        return f"{subject} {expected}"
    return f"{subject} {expected} (got {_show(error.get('input'))})"


def _raw_secrets(data: Mapping[str, Any]) -> list[str]:
    """Secrets in not-yet-validated data, to scrub error messages as a last line of defence."""
    found: list[str] = []
    database = data.get("Database")
    if isinstance(database, Mapping):
        if isinstance(database.get("Password"), str):
            found.append(database["Password"])
        if isinstance(database.get("Url"), str):
            found.extend(_url_secrets(database["Url"]))
    if isinstance(data.get("HaloUrl"), str):
        found.extend(_url_secrets(data["HaloUrl"]))
    azure = data.get("AzureAD")
    if isinstance(azure, Mapping) and isinstance(azure.get("Secrets"), Mapping):
        found.extend(str(s) for s in azure["Secrets"].values() if isinstance(s, (str, int, float)) and str(s))
    return found


def _is_secret_field(dotted: str) -> bool:
    """Whether the value at ``dotted`` must never be shown, not even when it is wrong."""
    return dotted in _SECRET_FIELDS or dotted == "AzureAD.Secrets" or dotted.startswith("AzureAD.Secrets.")


def _validate(
    data: dict[str, Any], where: str, overrides: Mapping[str, str] | None = None
) -> Settings:
    """Build :class:`Settings` from canonical ``data``; any problem becomes one ``ConfigError``."""
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        errors = err.errors(include_url=False)
        message = _describe(errors[0], overrides or {})
        if len(errors) > 1:
            more = len(errors) - 1
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise ConfigError(redact(f"{where}: {message}", _raw_secrets(data))) from None


# --------------------------------------------------------------------------------------------
# Public API: load, save, edit
# --------------------------------------------------------------------------------------------


def load_settings(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Load and validate ``appsettings.json``, then apply ``HALODB_*`` environment overrides.

    ``path`` defaults to ``./appsettings.json``; a folder means ``appsettings.json`` inside it.
    ``env`` defaults to ``os.environ``. Raises ``ConfigError`` (one line) for every problem.
    """
    config_path = _config_path(path)
    data = _read_file(config_path)
    overrides = _apply_env(data, os.environ if env is None else env)
    settings = _validate(data, str(config_path), overrides)
    settings._source_path = config_path.resolve()
    return settings


def to_dict(settings: Settings) -> dict[str, Any]:
    """The canonical JSON form of ``settings`` (PascalCase keys, every field, secrets included)."""
    return settings.model_dump(mode="json", by_alias=True)


def save_settings(settings: Settings, path: str | os.PathLike[str]) -> Path:
    """Write ``settings`` as canonical JSON (indent 2, every field, nulls included), atomically.

    The file is written to a temporary file in the same folder and moved into place, so a crash
    never leaves half a config. The new file is readable by its owner only (it holds a password).
    Comments in a previous version of the file are not kept. Returns the resolved path.
    """
    target = _config_path(path)
    text = json.dumps(to_dict(settings), indent=2, ensure_ascii=False) + "\n"
    folder = target.parent
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as err:
        raise ConfigError(f"cannot write {target}: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, target)
    except OSError as err:
        Path(temp_name).unlink(missing_ok=True)
        raise ConfigError(f"cannot write {target}: {err.strerror or err}") from None
    settings._source_path = target.resolve()
    return settings._source_path


def check_init_target(path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """The file ``init`` would write; ``ConfigError`` if it exists and ``force`` is not set."""
    target = _config_path(path)
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists (use --force to overwrite it)")
    return target


def init_settings(
    path: str | os.PathLike[str],
    *,
    halo_url: str | None,
    server: str | None,
    name: str | None,
    username: str | None,
    password: str | None,
    url: str | None = None,
    force: bool = False,
) -> Settings:
    """Create a new ``appsettings.json`` from the five required values (or a ``url``).

    Refuses to overwrite an existing file unless ``force``. Returns the saved settings.
    """
    target = check_init_target(path, force=force)
    data: dict[str, Any] = {
        "HaloUrl": halo_url,
        "Database": {
            "Server": server,
            "Name": name,
            "Username": username,
            "Password": password,
            "Url": url,
        },
    }
    settings = _validate(data, str(target))
    save_settings(settings, target)
    return settings


def _is_text_field(path: tuple[str, ...]) -> bool:
    """Whether the value at canonical ``path`` is a string field (not a number or switch)."""
    if path[:-1] in _FREE_FORM:
        return True  # a secret like 123456 stays that exact string
    if path[0] == "Integrations":
        return False
    model: type[BaseModel] = _SECTIONS[path[0]] if len(path) == 2 else Settings
    for name, field in model.model_fields.items():
        if (field.alias or to_pascal(name)) == path[-1]:
            return field.annotation in (str, str | None)
    return False


def _parse_cli_value(path: tuple[str, ...], raw: str) -> Any:
    """Turn a command-line value into JSON data for the field at ``path``.

    Text fields take the text as typed, so a password like 123456 or 1e3 stays that exact
    string; ``null`` clears them. Other fields take the value as JSON when it parses
    (500, 12.5, true), else as a string for the model to parse or reject.
    """
    if _is_text_field(path):
        return None if raw == "null" else raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def set_value(path: str | os.PathLike[str], key: str, raw_value: str) -> Settings:
    """Set one dotted ``key`` (e.g. ``Sync.BatchSize``) in the file to ``raw_value`` and save.

    Keys are case-insensitive; an unknown key raises the same "did you mean" error as loading.
    The result is validated before anything is written. Environment overrides are deliberately
    not applied, so a password given in the environment is never copied into the file.
    """
    target = _config_path(path)
    where = str(target)
    data = _read_file(target)
    try:
        canonical, is_section = _resolve(key.split("."))
    except _UnknownKey as err:
        raise ConfigError(f"{where}: {err}") from None
    if is_section:
        raise ConfigError(
            f"{where}: {'.'.join(canonical)} is a section, not a value "
            f"(set one key, e.g. {'.'.join(canonical)}.{_children(canonical)[0]})"
        )
    node = data
    for part in canonical[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[canonical[-1]] = _parse_cli_value(canonical, raw_value)
    settings = _validate(data, where)
    save_settings(settings, target)
    return settings


def entity_key(integration: str, entity: str) -> str:
    """Canonical ``Integration.Entity`` spelling (``ConfigError`` with a suggestion if unknown)."""
    return ".".join(_resolve_or_raise(["Integrations", integration, entity], where=None)[1:])


def set_entity(
    path: str | os.PathLike[str], integration: str, entity: str, enabled: bool
) -> Settings:
    """Switch one integration entity on or off in the file and save (names case-insensitive)."""
    target = _config_path(path)
    try:
        canonical, _ = _resolve(["Integrations", integration, entity])
    except _UnknownKey as err:
        raise ConfigError(f"{target}: {err}") from None
    return set_value(target, ".".join(canonical), "true" if enabled else "false")


# --------------------------------------------------------------------------------------------
# Redaction and display
# --------------------------------------------------------------------------------------------


def _url_secrets(url: str) -> list[str]:
    """The password parts of a URL, raw (as written) and percent-decoded."""
    from urllib.parse import unquote, unquote_plus

    found: list[str] = []
    match = _URL_PASSWORD.match(url)
    if match and match["password"]:
        found.append(match["password"])
    for odbc in _ODBC_PASSWORD.finditer(url):
        if odbc["password"]:
            found.append(odbc["password"])
    # Add decoded forms too: logs and drivers may show either.
    return [s for raw in found for s in {raw, unquote(raw), unquote_plus(raw)} if s]


def mask_url(url: str) -> str:
    """``url`` with its password parts replaced by the mask (``user:password@`` and ``PWD=`` /
    ``Password=`` inside an ``odbc_connect`` string, encoded or not); the rest stays readable."""
    return mask_odbc_password(_URL_PASSWORD.sub(lambda m: m["head"] + MASK, url, count=1))


def mask_odbc_password(text: str) -> str:
    """``text`` with the ``PWD=`` / ``Password=`` values of an ODBC connection string masked
    (``odbc_connect``, encoded or not), which SQLAlchemy's ``hide_password`` leaves alone."""
    return _ODBC_PASSWORD.sub(lambda m: m["head"] + MASK if m["password"] else m[0], text)


def redact(text: str, secrets: list[str] | tuple[str, ...]) -> str:
    """``text`` with every occurrence of every secret replaced by ``********``.

    Occurrences may overlap; every character that belongs to one is masked, and each run of
    masked characters becomes one mask. So a secret can only reappear if it is made of ``*``.
    """
    secrets = [s for s in secrets if s]
    if not secrets or not text:
        return text
    covered = [False] * len(text)
    for secret in secrets:
        start = text.find(secret)
        while start >= 0:
            for i in range(start, start + len(secret)):
                covered[i] = True
            start = text.find(secret, start + 1)  # +1: overlapping occurrences count too
    out: list[str] = []
    i = 0
    while i < len(text):
        if covered[i]:
            while i < len(text) and covered[i]:
                i += 1
            out.append(MASK)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def masked_dict(settings: Settings) -> dict[str, Any]:
    """The canonical JSON dict with the password and URL passwords replaced by ``********``."""
    data = to_dict(settings)
    database = data["Database"]
    if database.get("Password"):
        database["Password"] = MASK
    if database.get("Url"):
        database["Url"] = mask_url(database["Url"])
    if data.get("HaloUrl"):
        data["HaloUrl"] = mask_url(data["HaloUrl"])
    secrets = data["AzureAD"]["Secrets"]
    for name in secrets:
        secrets[name] = MASK
    return data


def _display(value: Any) -> str:
    # Text as typed, everything else as JSON (true, null, 12.5).
    return value if isinstance(value, str) else json.dumps(value)


def display_value(settings: Settings, key: str) -> str:
    """``"Sync.BatchSize = 500"`` for a dotted key, canonical spelling, secrets masked."""
    try:
        canonical, _ = _resolve(key.split("."))
    except _UnknownKey as err:
        raise ConfigError(str(err)) from None
    value: Any = masked_dict(settings)
    for part in canonical:
        value = value.get(part) if isinstance(value, dict) else None
    return f"{'.'.join(canonical)} = {_display(value)}"


def display_lines(settings: Settings) -> list[str]:
    """Every setting as ``Dotted.Key = value`` lines, in file order, secrets masked."""
    lines: list[str] = []

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else key, value)
        else:
            lines.append(f"{prefix} = {_display(node)}")

    walk("", masked_dict(settings))
    return lines
