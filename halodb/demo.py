"""The embedded demo: a small Halo in SQLite, a spreadsheet import, an HR database for a SQL
import, and an appsettings.json that ties them together - everything a newcomer needs to watch
a real sync land in Halo's own tables without a SQL Server.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from openpyxl import Workbook
from sqlalchemy.engine import Engine

from halodb import migrate
from halodb.database import engine_for_url
from halodb.errors import UsageError
from halodb.halo import settings as halo_settings
from halodb.halo import fixture
from halodb.halo.fixture import create_halo_fixture

HALO_URL = "https://halo.demo.local"

CLIENTS = [("Contoso Ltd", "https://contoso.example", ["Head Office", "Warehouse"]), ("Fabrikam Inc", None, ["Main Site"])]
AGENTS = [("Alice Admin", "alice@msp.example"), ("Bob Engineer", "bob@msp.example"), ("Chloé Service Desk", "chloe@msp.example")]
ASSET_TYPES = {"Laptop": ["Serial Number", "Model", "Operating System"], "Printer": ["Serial Number", "Model"]}

# The spreadsheets: Halo API field names as headers, as in Halo's own imports.
SHEET_CLIENTS = [("name", "website"), ("Contoso Ltd", "https://contoso.example"), ("Northwind Traders", "https://northwind.example"), ("Tailspin Toys", None)]
SHEET_SITES = [
    ("client_name", "name", "phonenumber"),
    ("Contoso Ltd", "Warehouse", "+44 20 7946 0001"),
    ("Northwind Traders", "Head Office", "+1 206 555 0100"),
    ("Tailspin Toys", "Main Site", "+49 30 901820"),
]
SHEET_ASSETS = [("inventory_number", "assettype_name", "client_name", "site_name", "Serial Number", "Model", "Operating System")] + [
    (f"LT-{n:04d}", "Laptop", client, site_name, f"5CG{n:06d}", model, "Windows 11")
    for n, (client, site_name, model) in enumerate(
        [("Contoso Ltd", "Head Office", "EliteBook 840"), ("Contoso Ltd", "Head Office", "EliteBook 840"),
         ("Contoso Ltd", "Warehouse", "ThinkPad T14"), ("Northwind Traders", "Head Office", "Latitude 5440"),
         ("Northwind Traders", "Head Office", "Latitude 5440"), ("Tailspin Toys", "Main Site", "MacBook Air")],
        start=1,
    )
] + [("PR-0001", "Printer", "Contoso Ltd", "Head Office", "VNB3K12345", "LaserJet M404", None)]  # fmt: skip

# The HR system: employees with their office (a Halo site) and company (a Halo client).
EMPLOYEES = [
    ("E1001", "Ana", "Silva", "ana.silva@contoso.example", "Contoso Ltd", "Head Office", "Finance", "Accountant", 1),
    ("E1002", "Łukasz", "Nowak", "lukasz.nowak@contoso.example", "Contoso Ltd", "Head Office", "IT", "Engineer", 1),
    ("E1003", "Zoë", "Müller", "zoe.muller@contoso.example", "Contoso Ltd", "Warehouse", "Logistics", "Team Lead", 1),
    ("E1004", "José", "García", "jose.garcia@contoso.example", "Contoso Ltd", "Warehouse", "Logistics", "Picker", 1),
    ("E1005", "Mei", "Chen", "mei.chen@contoso.example", "Contoso Ltd", "Head Office", "Sales", "Account Manager", 0),
    ("E2001", "Olivia", "Brown", "olivia.brown@northwind.example", "Northwind Traders", "Head Office", "Operations", "Director", 1),
    ("E2002", "Noah", "Wilson", "noah.wilson@northwind.example", "Northwind Traders", "Head Office", "Sales", "Rep", 1),
    ("E2003", "Saoirse", "O'Neill", "saoirse.oneill@northwind.example", "Northwind Traders", "Head Office", "Support", "Analyst", 1),
    ("E3001", "Liam", "Smith", "liam.smith@tailspin.example", "Tailspin Toys", "Main Site", "Design", "Designer", 1),
    ("E3002", "Emma", "Jones", "emma.jones@tailspin.example", "Tailspin Toys", "Main Site", "Design", "Illustrator", 1),
    ("E3003", "Søren", "Kierkegaard", "soren.k@tailspin.example", "Tailspin Toys", "Main Site", "Finance", "Controller", 1),
    ("E4001", "Fatima", "Zahra", "fatima.zahra@fabrikam.example", "Fabrikam Inc", "Main Site", "HR", "Partner", 1),
]  # fmt: skip
HR_QUERY = """SELECT email AS emailaddress, first_name AS firstname, last_name AS surname,
       company AS client_name, office AS site_name, department, job_title AS title,
       employee_no AS other1, CASE WHEN active = 1 THEN 0 ELSE 1 END AS inactive
FROM employees"""


def create(folder: Path, database_url: str | None = None) -> Path:
    """Create the demo in ``folder``; return the path of its appsettings.json."""
    folder = folder.resolve()
    config_path = folder / "appsettings.json"
    if config_path.exists():
        raise UsageError(f"{folder} already holds a demo", hint="remove it or choose another folder")
    folder.mkdir(parents=True, exist_ok=True)
    url = database_url or f"sqlite:///{folder / 'halo.db'}"
    engine = engine_for_url(url)
    try:
        create_halo_fixture(engine, halo_url=HALO_URL)
        sheets = _write_spreadsheets(folder)
        hr_url = _write_hr_database(folder / "hr.db")
        _seed(engine, sheets, hr_url)
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    settings = {
        "HaloUrl": HALO_URL,
        "InstanceName": "demo",
        "Database": {"Url": database_url or "sqlite:///halo.db"},
        "Integrations": {
            "Spreadsheet": {"Clients": True, "Sites": True, "Users": False, "Assets": True},
            "SqlImport": {"Users": True},
        },
        "Logging": {"Folder": "logs", "Level": "Information", "RetainDays": 30},
        "Sync": {"BatchSize": 2000, "MaxDeactivations": 500, "MaxDeactivationPercent": 10, "DeactivateAfterMissedRuns": 2},
    }
    config_path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    return config_path


def _seed(engine: Engine, sheets: dict[str, Path], hr_url: str) -> None:
    with engine.begin() as conn:
        sites = fixture.add_clients(conn, CLIENTS)
        fixture.add_agents(conn, AGENTS)
        # A user who already exists in Halo: the SQL import adopts her by email, no duplicate.
        head_office, contoso = sites[("Contoso Ltd", "Head Office")]
        fixture.add_user(conn, name="Ana Silva", emailaddress="ana.silva@contoso.example", site_id=head_office, client_id=contoso)
        fixture.add_asset_types(conn, ASSET_TYPES)
        fixture.add_spreadsheet_imports(conn, {kind: str(path) for kind, path in sheets.items()})
        fixture.add_sql_import(
            conn, name="HR employees", table="users", sql=HR_QUERY, keyfield="emailaddress", defaultsite=head_office, sqlserver=hr_url
        )
        for integration in ("Spreadsheet", "SqlImport"):
            halo_settings.set_enabled(conn, integration, True)


def _write_spreadsheets(folder: Path) -> dict[str, Path]:
    out = {}
    for kind, rows in (("clients", SHEET_CLIENTS), ("sites", SHEET_SITES), ("assets", SHEET_ASSETS)):
        book = Workbook()
        sheet = book.active
        sheet.title = kind
        for row in rows:
            sheet.append(list(row))
        path = folder / f"{kind}.xlsx"
        book.save(path)
        out[kind] = path
    return out


def _write_hr_database(path: Path) -> str:
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE employees (employee_no TEXT PRIMARY KEY, first_name TEXT, last_name TEXT, email TEXT,"
            " company TEXT, office TEXT, department TEXT, job_title TEXT, active INTEGER)"
        )
        db.executemany("INSERT INTO employees VALUES (?,?,?,?,?,?,?,?,?)", EMPLOYEES)
    return f"sqlite:///{path}"
