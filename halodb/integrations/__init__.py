"""One package per integration. Each declares its entities; the sync engine runs the loop."""

from halodb.integrations.azuread import integration as azuread
from halodb.integrations.spreadsheet import integration as spreadsheet
from halodb.integrations.sqlimport import integration as sqlimport

#: Integrations this version runs, in the order a scheduled run takes them (clients and sites
#: from spreadsheets first, so users and assets can refer to them).
REGISTRY = {i.name: i for i in (spreadsheet, sqlimport, azuread)}
