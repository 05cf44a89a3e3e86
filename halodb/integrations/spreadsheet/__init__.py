"""Scheduled spreadsheet imports (.xlsx and .csv) of clients, sites, users and assets.

The files are listed in Halo's import configuration; the first row holds Halo API field names
as column headers (as in Halo's own imports); each row is matched on a configurable field.
A spreadsheet is a list of additions and corrections, not a full directory, so nothing missing
from it is ever deactivated. A file that has not changed since its last complete import is not
read again (its SHA-256 against the one stored with that import).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from sqlalchemy.engine import Connection

from halodb.errors import IntegrationFailed
from halodb.halo import imports
from halodb.integrations import fields
from halodb.integrations.base import check_columns, connection_entity
from halodb.integrations.spreadsheet.reader import check_kind, fingerprint, read_rows
from halodb.sync.entity import Entity, Excluded, ReadContext, SourceRecord

#: Halo's import types (``importcsv.type``) by halodb entity name.
TYPES = {"clients": "Clients", "sites": "Sites", "users": "Users", "assets": "Assets"}


class SpreadsheetIntegration:
    name = "Spreadsheet"

    def entities(self, conn: Connection, settings) -> list[Entity | Excluded]:
        out: list[Entity | Excluded] = []
        for row in imports.spreadsheet_imports(conn):
            entity = TYPES.get((row["type"] or "").strip().lower())
            label = f"spreadsheet '{row['name']}'"
            if entity is None:
                out.append(Excluded(self.name, str(row["type"]), label, f"unknown import type {row['type']!r}"))
                continue
            matching = row["matching_field"] or fields.DEFAULT_MATCHING[entity]
            out.append(
                connection_entity(
                    self.name, row["id"], entity, label,
                    read=_reader(Path(row["filepath"] or ""), entity, matching),
                    match_fields=fields.match_fields(entity, matching),
                    deactivate=False,
                    record_result=_recorder(row["id"]),
                )
            )
        return out


def _reader(path: Path, entity: str, matching: str):
    def read(ctx: ReadContext):
        if not path.is_file():
            raise IntegrationFailed(f"spreadsheet not found: {path}")
        check_kind(path)
        # The matching field decides every record's key: part of what the file stands for.
        settings = f"{entity}|{matching}|"
        if ctx.same_content(settings + fingerprint(path)):
            return
        digest = hashlib.sha256()
        rows = read_rows(path, digest)
        header = next(rows, None) or []
        if entity != "Assets":  # other columns of an asset sheet are the asset type's fields
            check_columns(path.name, header, fields.allowed_columns(entity))
        for number, values in enumerate(rows, start=2):
            record = {h: v for h, v in zip(header, values) if h}
            if all(v in (None, "") for v in record.values()):
                continue
            key = fields.source_key(entity, record, matching)
            if key is None:
                yield SourceRecord(f"{path.name}:row {number}", record, error=f"row {number}: {matching} is empty")
            else:
                yield SourceRecord(key, record)
        ctx.set_content(settings + digest.hexdigest())  # of the bytes parsed, should the file have changed since

    return read


def _recorder(row_id: int):
    def record(conn: Connection, when: dt.datetime | None, error: str | None) -> None:
        imports.record_spreadsheet_import(conn, row_id, when, error)

    return record


integration = SpreadsheetIntegration()
