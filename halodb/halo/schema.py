"""The subset of Halo's SQL Server schema that halodb reads and writes, declared once.

Halo owns this schema: halodb never creates or alters these tables in a real Halo database.
The declarations serve three purposes: the built-in API's queries, the pre-flight check that
``halodb validate`` runs against the live database, and - for the demo and the tests only - a
realistic fixture database (``create_fixture_schema``).

Names are lower-case (SQL Server compares them case-insensitively; PostgreSQL folds unquoted
names) and every column has a readable Python key, which is the Halo API field name where one is
known (``users.c.emailaddress`` is the column ``uemail``). Halo's own spellings are kept.

Provenance, see ../shared/reference/halo-domain.md: [C] confirmed from report SQL or the API,
[I] inferred (the column name follows Halo's prefix pattern for a documented API field). When a
real Halo database disagrees with an [I] column, this module is the one place to change.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    Table,
    Unicode,
)

metadata = MetaData()


def _pk(name: str) -> Column:
    # Halo's primary ids are int identity columns [I: no DDL source confirms identity].
    return Column(name, Integer, primary_key=True, autoincrement=True, key="id")


def _text(name: str, key: str, length: int = 255) -> Column:
    return Column(name, Unicode(length), key=key)


def _flag(name: str, key: str) -> Column:
    return Column(name, Boolean, key=key, nullable=False, default=False, server_default="0")


# -- clients, sites, users, agents ------------------------------------------------------------

area = Table(
    "area",
    metadata,
    _pk("aarea"),  # [C]
    _text("aareadesc", "name"),  # [C]
    _flag("aisinactive", "inactive"),  # [C]
    Column("atreeid", Integer, key="toplevel_id"),  # [C]
    _text("awebsite", "website"),  # [C]
    Column("adatecreated", DateTime, key="datecreated"),  # [3P]
    Column("alastupdate", DateTime, key="lastupdate"),  # [I from API alastupdate]
    _flag("alocked", "locked"),  # [I from API alocked]
)

site = Table(
    "site",
    metadata,
    _pk("ssitenum"),  # [C]
    _text("sdesc", "name"),  # [C]
    Column("sarea", Integer, key="client_id", nullable=False),  # [C]
    _flag("sisinactive", "inactive"),  # [C]
    _flag("sisinvoicesite", "isinvoicesite"),  # [C]
    _text("sphonenumber", "phonenumber", 50),  # [3P]
    Column("slastupdate", DateTime, key="lastupdate"),  # [I from API slastupdate]
    _flag("slocked", "locked"),  # [I from API slocked]
)

users = Table(
    "users",
    metadata,
    _pk("uid"),  # [C]
    _text("uusername", "name"),  # [C]
    _text("ufirstname", "firstname", 100),  # [C]
    _text("ulastname", "surname", 100),  # [C]
    _text("uemail", "emailaddress"),  # [C]
    _text("uemail2", "email2"),  # [C]
    Column("usite", Integer, key="site_id"),  # [C]
    Column("uarea", Integer, key="client_id"),  # [3P]
    _flag("uinactive", "inactive"),  # [C]
    _flag("uisserviceaccount", "isserviceaccount"),  # [3P]
    _text("uextn", "phonenumber", 50),  # [C]
    _text("umobile", "mobilenumber", 50),  # [C]
    _text("utitle", "title", 100),  # [3P]
    _text("udepartment", "department", 100),  # [I from API department]
    _text("ulogin", "login"),  # [I from API login]
    _text("uazureoid", "azureoid", 64),  # [C]
    _text("uactguid", "activedirectory_guid", 64),  # [I]
    _text("uother1", "other1"),  # [C]
    Column("udatecreated", DateTime, key="datecreated"),  # [I]
    Column("ulastupdate", DateTime, key="lastupdate"),  # [I from API ulastupdate]
    _flag("ulocked", "locked"),  # [I from API locked]
)

uname = Table(
    "uname",
    metadata,
    _pk("unum"),  # [C] 1 = the "Unassigned" pseudo-agent
    _text("uname", "name"),  # [C]
    _text("uemail", "email"),  # [C]
    _flag("uisdisabled", "isdisabled"),  # [3P] sources disagree (uisdisabled / inactive)
    _flag("uisapiagent", "isapiagent"),  # [3P]
    _text("uazureoid", "azureoid", 64),  # [I]
    Column("ulastupdate", DateTime, key="lastupdate"),  # [I]
)

# -- assets and their field values -------------------------------------------------------------

device = Table(
    "device",
    metadata,
    _pk("did"),  # [C]
    Column("dsite", Integer, key="site_id", nullable=False),  # [C]
    Column("ddevnum", Integer, key="devnum", nullable=False),  # [C] number within the site
    _text("dinvno", "inventory_number", 100),  # [C]
    Column("dtype", Integer, key="assettype_id", nullable=False),  # [C]
    _flag("dinactive", "inactive"),  # [C]
    Column("dlastupdate", DateTime, key="lastupdate"),  # [I from API dlastupdate]
)

generic = Table(
    "generic",
    metadata,
    Column("ggeneric", Integer, primary_key=True, autoincrement=True, key="id"),  # [C]
    _text("gdesc", "name"),  # [C]
)

xtype = Table(
    "xtype",
    metadata,
    Column("ttypenum", Integer, primary_key=True, autoincrement=True, key="id"),  # [C]
    _text("tdesc", "name"),  # [C]
    Column("tgeneric", Integer, key="assetgroup_id"),  # [C]
)

field = Table(
    "field",
    metadata,
    Column("yseq", Integer, primary_key=True, autoincrement=True, key="id"),  # [C]
    Column("ykind", Unicode(1), key="kind"),  # [C] 'T' = asset field
    _text("yname", "name"),  # [C]
)

typeinfo = Table(
    "typeinfo",
    metadata,
    Column("xnum", Integer, primary_key=True, key="assettype_id"),  # [C] FK xtype
    Column("xseq", Integer, primary_key=True, key="seq"),  # [C] slot on the type
    Column("xfieldnos", Integer, key="field_id", nullable=False),  # [C] FK field.yseq
    Column("xkind", Unicode(1), key="kind"),  # [C]
)

info = Table(
    "info",
    metadata,
    Column("ikind", Unicode(1), primary_key=True, key="kind"),  # [C] 'd' = device
    Column("isite", Integer, primary_key=True, key="site_id"),  # [C] = device.dsite
    Column("inum", Integer, primary_key=True, key="devnum"),  # [C] = device.ddevnum
    Column("iseq", Integer, primary_key=True, key="seq"),  # [C] = typeinfo.xseq
    Column("idata", Unicode(4000), key="value"),  # [C]
)

# -- history ------------------------------------------------------------------------------------

audit = Table(
    "audit",
    metadata,
    Column("aid", Integer, primary_key=True, autoincrement=True, key="id"),  # [I] API Audit.id
    _text("atablename", "table_name", 50),  # [3P]
    Column("afaultid", Integer, key="ticket_id"),  # [3P]
    Column("apkid1", Integer, key="id1"),  # [3P]
    Column("apkid2", Integer, key="id2"),  # [3P]
    _text("avalue", "value", 100),  # [3P] the field that changed
    Column("afrom", Unicode(4000), key="from_value"),  # [3P]
    Column("ato", Unicode(4000), key="to_value"),  # [3P]
    Column("adate", DateTime, key="date"),  # [3P]
    Column("aunum", Integer, key="agent_id"),  # [3P]
)

# -- settings: the one-row control table and per-connection import configuration -------------
# Table names here are inferred from API object names [I]; column names are the API's [C-api].

# Integrations whose enabled / Last Sync / Last Error triple lives on `control`, by the name
# halodb uses for them in appsettings.json. Halo spells the family names in lower case.
CONTROL_INTEGRATIONS = {
    "Spreadsheet": "xlsimports",  # [C-api] halointegrator_xlsimports
    "SqlImport": "sqlimport",  # [I] per-connection triple on sqlimport is [C-api]
    "AzureAD": "azuread",  # [I] per-connection triple on azureadconnection is [C-api]
    "LDAP": "ldap",  # [I] per-connection triple on ldapconnection is [C-api]
    "IncomingMail": "exchange",  # [I]
    "Pax8": "pax8",  # [C-api]
}


def _control_columns() -> list[Column]:
    cols: list[Column] = []
    for family in CONTROL_INTEGRATIONS.values():
        base = f"halointegrator_{family}"
        cols.append(Column(base, Boolean, nullable=False, default=False, server_default="0"))
        cols.append(Column(f"{base}_lastsync", DateTime))
        cols.append(Column(f"{base}_lasterror", Unicode(4000)))
    return cols


control = Table(
    "control",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # [I] one row
    Column("loginas_halointegrator", Integer),  # [C-api] the integrator agent (uname.unum)
    Column("halourl", Unicode(255), key="halo_url"),  # [I] the URL Halo has of itself
    Column("_dbintegrator_success", Boolean, key="dbintegrator_success"),  # [C-api]
    *_control_columns(),
)

sqlimport = Table(
    "sqlimport",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # [C-api]
    _text("name", "name"),  # [I]
    _text("table", "table", 50),  # [C-api] the Halo entity: users, device or area
    Column("sql", Unicode(), key="sql"),  # [C-api] NVARCHAR(max)
    _text("keyfield", "keyfield", 100),  # [C-api]
    Column("defaultsite", Integer, key="defaultsite"),  # [C-api]
    _flag("updateonly", "updateonly"),  # [C-api]
    _flag("dontremoveusers", "dontremoveusers"),  # [C-api]
    _flag("dontupdatesite", "dontupdatesite"),  # [C-api]
    _text("sqlserver", "sqlserver"),  # [C-api] server name, or a full SQLAlchemy URL
    _text("sqldatabase", "sqldatabase"),  # [C-api]
    _text("sqlusername", "sqlusername"),  # [C-api]
    _text("sql_driver", "sql_driver"),  # [C-api]
    Column("sql_timeout", Integer, key="sql_timeout"),  # [C-api]
    _flag("integrator_enabled", "integrator_enabled"),  # [C-api]
    Column("halointegrator_lastsync", DateTime, key="lastsync"),  # [C-api]
    Column("halointegrator_lasterror", Unicode(4000), key="lasterror"),  # [C-api]
)

# Scheduled spreadsheet imports: Halo lists them under the xlsimports integration, but the
# stored shape is not public. [I] one row per file: what it imports, where it is, how it matches.
importcsv = Table(
    "importcsv",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # [C-api] ImportCsv.id
    _text("name", "name"),  # [C-api]
    _text("type", "type", 50),  # [C-api] clients, sites, users or assets
    _text("filepath", "filepath", 1000),  # [I]
    _text("matchingfield", "matching_field", 100),  # [I] as Device.matching_field [C-api]
    _flag("integrator_enabled", "integrator_enabled"),  # [I]
    Column("halointegrator_lastsync", DateTime, key="lastsync"),  # [I]
    Column("halointegrator_lasterror", Unicode(4000), key="lasterror"),  # [I]
)


# Azure AD (Entra ID) connections: one row per tenant, each with its own integrator triple.
# Table names are inferred [I]; column names follow the API's AzureADConnection [C-api].
azureadconnection = Table(
    "azureadconnection",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # [C-api]
    _text("name", "name"),  # [C-api]
    _text("directoryid", "directoryid", 64),  # [C-api] the tenant id
    _text("applicationid", "applicationid", 64),  # [C-api] the app registration's client id
    # [I] Halo stores the secret encrypted (the API takes new_client_secret); halodb cannot
    # decrypt it, never reads it, and takes AzureAD.Secrets from appsettings.json instead.
    _text("client_secret", "client_secret", 1000),
    _text("graph_host", "graph_host"),  # [C-api] empty = https://graph.microsoft.com
    # [I] empty = the national cloud's login host for graph_host, else login.microsoftonline.com
    _text("authority_host", "authority_host"),
    # [C-api] which of azureoid, email, upn adopt existing users / agents; empty = all, in that order
    _text("user_matching_fields", "user_matching_fields"),
    _text("agent_matching_fields", "agent_matching_fields"),
    _flag("halointegratorenabled", "halointegratorenabled"),  # [C-api]
    _text("halo_integrator_import_list", "halo_integrator_import_list", 1000),  # [C-api] "users,agents"
    _flag("createunmatchedusers", "createunmatchedusers"),  # [C-api]
    Column("unmatchedusersite", Integer, key="unmatchedusersite"),  # [C-api] site.ssitenum
    _flag("deactivate_users", "deactivate_users"),  # [C-api]
    _flag("accountenabled", "accountenabled"),  # [C-api] import enabled accounts only
    Column("halointegrator_lastsync", DateTime, key="lastsync"),  # [C-api]
    Column("halointegrator_lasterror", Unicode(4000), key="lasterror"),  # [C-api]
)

# Group-based site mapping (API AzureADMapping): members of group_id land on siteid; the
# lowest sequenceid wins for a user in several mapped groups.
azureadmapping = Table(
    "azureadmapping",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # [I]
    Column("connection_id", Integer, key="connection_id", nullable=False),  # [I] azureadconnection.id
    _text("group_id", "group_id", 64),  # [C-api]
    Column("siteid", Integer, key="siteid"),  # [C-api]
    Column("sequenceid", Integer, key="sequenceid"),  # [C-api]
)

# Azure tenant → client map (AREAAZURETENANT [3P]; API AreaAzureTenant [C-api]): the client a
# tenant's users belong to.
areaazuretenant = Table(
    "areaazuretenant",
    metadata,
    Column("aatid", Integer, primary_key=True, autoincrement=True, key="id"),  # [I]
    Column("aatareaid", Integer, key="client_id", nullable=False),  # [3P] area.aarea
    _text("aatazuretenantid", "azure_tenant_id", 64),  # [3P]
    _text("aatazuretenantname", "azure_tenant_name"),  # [3P]
    _text("aatazuretenantdomain", "azure_tenant_domain"),  # [3P]
)


def create_fixture_schema(bind) -> None:
    """Create the Halo subset in an empty database. For the demo and tests only, never Halo."""
    metadata.create_all(bind)
