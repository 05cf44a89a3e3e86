"""Log files: ``logs/halodb-YYYY-MM-DD.log`` under the working directory, one per day, kept for
``Logging.RetainDays``, with every secret from the configuration blanked out."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from halodb.config import redact

#: .NET log level names (as in appsettings.json) to Python's.
LEVELS = {"Trace": logging.DEBUG, "Debug": logging.DEBUG, "Information": logging.INFO, "Warning": logging.WARNING,
          "Error": logging.ERROR, "Critical": logging.CRITICAL}  # fmt: skip
_FORMAT = "%(asctime)s %(levelname)-7s [%(process)d] %(name)s: %(message)s"


class RedactingFilter(logging.Filter):
    """Replaces every configured secret in a record's final message."""

    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def setup(settings, workdir: Path | None = None, today: dt.date | None = None) -> Path:
    """Send halodb's log to today's file; prune files older than the retention. Returns the file."""
    workdir = workdir or Path.cwd()
    today = today or dt.date.today()
    folder = Path(settings.logging.folder)
    folder = folder if folder.is_absolute() else workdir / folder
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"halodb-{today:%Y-%m-%d}.log"
    prune(folder, today, settings.logging.retain_days)
    root = logging.getLogger("halodb")
    for handler in [h for h in root.handlers if getattr(h, "_halodb", False)]:
        root.removeHandler(handler)
        handler.close()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler._halodb = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(RedactingFilter(settings.secrets()))
    root.addHandler(handler)
    root.setLevel(LEVELS.get(settings.logging.level, logging.INFO))
    return path


def prune(folder: Path, today: dt.date, retain_days: int) -> list[Path]:
    """Delete halodb log files older than ``retain_days``; return what was deleted."""
    removed = []
    for path in folder.glob("halodb-*.log"):
        try:
            day = dt.date.fromisoformat(path.stem.removeprefix("halodb-"))
        except ValueError:
            continue
        if (today - day).days > retain_days:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
