"""Rows of an .xlsx or .csv file as lists of values, first row first, read as a stream."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from halodb.errors import IntegrationFailed


def read_rows(path: Path) -> Iterator[list[Any]]:
    """Yield each row; header cells come back as trimmed strings."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _csv_rows(path)
    if suffix in (".xlsx", ".xlsm"):
        return _xlsx_rows(path)
    raise IntegrationFailed(f"{path.name}: not a spreadsheet halodb reads (.xlsx or .csv)")


def _header(row: list[Any]) -> list[str]:
    return [str(c).strip() if c is not None else "" for c in row]


def _csv_rows(path: Path) -> Iterator[list[Any]]:
    # utf-8-sig: Excel writes a byte-order mark at the start of "CSV UTF-8" files.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        first = next(reader, None)
        if first is None:
            return
        yield _header(first)
        yield from reader


def _xlsx_rows(path: Path) -> Iterator[list[Any]]:
    from openpyxl import load_workbook  # imported here: only spreadsheet runs pay for it

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as err:  # noqa: BLE001 - openpyxl raises many kinds for a broken file
        raise IntegrationFailed(f"{path.name}: cannot read the workbook ({err})") from None
    try:
        rows = book.worksheets[0].iter_rows(values_only=True)
        first = next(rows, None)
        if first is None:
            return
        yield _header(list(first))
        for row in rows:
            yield list(row)
    finally:
        book.close()
