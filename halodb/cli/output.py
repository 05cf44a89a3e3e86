"""Plain-text rendering of reports: aligned columns that read well in a terminal, a log file or
a scheduler's history, and that tests can compare exactly."""

from __future__ import annotations

import json
from collections.abc import Sequence

from halodb.sync.report import RunReport
from halodb.validate import Validation


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(isinstance(row[i], int) for row in rows) and bool(rows) for i in range(len(headers))]
    lines = []
    for r in cells:
        parts = [c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def run_report(report: RunReport, *, show_changes: int = 0) -> str:
    """The run report as printed by ``halodb AUTO`` and ``halodb run``."""
    title = f"halodb run - instance {report.instance}" + (" - DRY RUN, nothing was written" if report.dry_run else "")
    out = [title]
    if report.entities:
        rows = [
            (e.integration, e.entity, e.label, e.fetched, e.created, e.updated, e.unchanged, e.deactivated,
             e.held_back, e.quarantined, e.status)
            for e in report.entities
        ]  # fmt: skip
        out.append(table(("integration", "entity", "source", "fetched", "created", "updated", "unchanged",
                          "deactivated", "held back", "quarantined", "status"), rows))  # fmt: skip
    else:
        out.append("nothing to run")
    for name, reason in report.skipped:
        out.append(f"skipped {name}: {reason}")
    for e in report.entities:
        if e.note:
            out.append(f"{e.label}: {e.note}")
        if e.error:
            out.append(f"{e.label}: {e.error}")
        for key, reason in e.quarantine[:10]:
            out.append(f"{e.label}: quarantined {key}: {reason}")
        if e.quarantined > 10:
            out.append(f"{e.label}: {e.quarantined - 10} more quarantined (halodb quarantine)")
    if show_changes:
        for e in report.entities:
            for c in e.changes[:show_changes]:
                what = f"{c.field}: {c.old!r} -> {c.new!r}" if c.field else (c.new or "")
                out.append(f"  {c.action:<10} {c.halo_table} {c.halo_id or '-'} ({c.source_key}) {what}".rstrip())
            if e.changes_total > show_changes:
                out.append(f"  ... {e.changes_total - min(show_changes, len(e.changes))} more changes in {e.label}")
    failed = sum(1 for e in report.entities if e.failed)
    out.append(
        f"total: {report.total('created')} created, {report.total('updated')} updated, "
        f"{report.total('deactivated')} deactivated, {report.total('quarantined')} quarantined, "
        f"{failed} failed"
    )
    return "\n".join(out)


def as_json(data: dict) -> str:
    return json.dumps(data, indent=2, default=str, ensure_ascii=False)


def integrations_table(validation: Validation) -> str:
    rows = [
        (r.name, "yes" if r.enabled_in_halo else "no", ", ".join(r.enabled_here) or "-",
         r.last_sync.isoformat(sep=" ") if r.last_sync else "never", r.last_error or "-")
        for r in validation.integrations
    ]  # fmt: skip
    return table(("integration", "enabled in Halo", "enabled here", "last sync (UTC)", "last error"), rows)


def validation_report(validation: Validation) -> str:
    out = [f"{'ok' if c.ok else 'FAIL':<4}  {c.name}: {c.detail}" for c in validation.checks]
    if validation.integrations:
        out.append("")
        out.append(integrations_table(validation))
    out.append("")
    out.append("validation passed" if validation.ok else f"validation failed (exit code {validation.exit_code})")
    return "\n".join(out)


def status_report(status) -> str:
    """``halodb status`` as text."""
    def when(value):
        return value.strftime("%Y-%m-%d %H:%M:%S") if value else "never"

    out = ["instances: " + (", ".join(f"{name} (last run {when(seen)})" for name, seen in status.instances) or "none yet")]
    if status.entities:
        rows = [(e.scope, e.instance, when(e.last_run), e.last_status, when(e.last_success), e.changed,
                 "STALE" if e.stale else "", e.last_error or "") for e in status.entities]  # fmt: skip
        out.append(table(("entity", "instance", "last run (UTC)", "status", "last success", "changed", "", "last error"), rows))
    out.append("locks held now: " + ("none" if not status.locks else ""))
    for held in status.locks:
        out.append(f"  {held['name']}: instance {held['instance']} ({held['owner']}) since {when(held['acquired'])}, lease until {when(held['expires'])}")
    if status.died:
        out.append("runs that died:")
        for d in status.died:
            out.append(f"  run {d['id']} {d['integration']}/{d['connection']}/{d['entity']} of instance {d['instance']} (pid {d['pid']}) started {when(d['started'])}")
    return "\n".join(out)
