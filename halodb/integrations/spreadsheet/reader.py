"""Rows of an .xlsx or .csv file as lists of values, first row first, read as a stream; and the
file's fingerprint, so that a run can tell the file has not changed since its last import."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from halodb.errors import IntegrationFailed

SUFFIXES = (".csv", ".xlsx", ".xlsm")


def fingerprint(path: Path) -> str:
    """The SHA-256 of the file's bytes (about 20 ms for a 100,000-row CSV)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def check_kind(path: Path) -> None:
    """Refuse a file halodb does not read, by its suffix."""
    if path.suffix.lower() not in SUFFIXES:
        raise IntegrationFailed(f"{path.name}: not a spreadsheet halodb reads (.xlsx or .csv)")


def read_rows(path: Path, digest: Any = None) -> Iterator[list[Any]]:
    """Yield each row; header cells come back as trimmed strings. ``digest`` (a ``hashlib``
    object) is fed every byte parsed, so once the rows are read it holds the fingerprint of the
    file as it was read, even if the file was replaced meanwhile."""
    check_kind(path)
    digest = digest or hashlib.sha256()
    return _csv_rows(path, digest) if path.suffix.lower() == ".csv" else _xlsx_rows(path, digest)


def _header(row: list[Any]) -> list[str]:
    return [str(c).strip() if c is not None else "" for c in row]


class _Hashing(io.RawIOBase):
    """A binary file that feeds every byte read from it to a digest."""

    def __init__(self, raw, digest) -> None:
        self._raw, self._digest = raw, digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._raw.readinto(buffer)
        if n:
            self._digest.update(memoryview(buffer)[:n])
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _csv_rows(path: Path, digest) -> Iterator[list[Any]]:
    # utf-8-sig: Excel writes a byte-order mark at the start of "CSV UTF-8" files.
    with io.TextIOWrapper(io.BufferedReader(_Hashing(path.open("rb"), digest)), encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        first = next(reader, None)
        if first is None:
            return
        yield _header(first)
        yield from reader


def _xlsx_rows(path: Path, digest) -> Iterator[list[Any]]:
    from openpyxl import load_workbook  # imported here: only spreadsheet runs pay for it

    # A workbook is a zip read from its end, so it is hashed and parsed from one copy in memory
    # (compressed: a few MB for 100,000 rows).
    data = path.read_bytes()
    digest.update(data)
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
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
