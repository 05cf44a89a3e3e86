"""One run: which integrations and entities, Last Sync / Last Error in Halo, the exit code.

An integration runs only when it is enabled for the integrator in Halo *and* at least one of
its entities is enabled in this instance's appsettings.json; entities Halo excludes are skipped.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from halodb import migrate
from halodb.database import connect_check, engine_from_settings, is_transient
from halodb.errors import HalodbError, IntegrationFailed, SchemaMismatch, UsageError
from halodb.halo import settings as halo_settings
from halodb.halo.preflight import missing_schema
from halodb.integrations import REGISTRY
from halodb.state import runs as run_log
from halodb.state.locks import EntityLock, new_owner
from halodb.sync.engine import Limits, Progress, SyncEngine, one_line, utcnow
from halodb.sync.entity import Excluded
from halodb.sync.report import EntityReport, RunReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    integration: str | None = None
    entity: str | None = None
    dry_run: bool = False
    confirm_deactivations: bool = False
    #: Wait this many seconds for an entity another instance holds; None = skip it at once.
    wait: float | None = None


def instance_name(settings) -> str:
    """``InstanceName`` from appsettings.json, else the config file's folder name ("5min")."""
    if settings.instance_name:
        return settings.instance_name
    if settings.source_path is not None:
        return settings.source_path.resolve().parent.name or "default"
    return "default"


def limits_from(settings) -> Limits:
    s = settings.sync
    return Limits(
        batch_size=s.batch_size,
        max_deactivations=s.max_deactivations,
        max_deactivation_percent=s.max_deactivation_percent,
        deactivate_after_missed_runs=s.deactivate_after_missed_runs,
    )


def check_database(engine: Engine, integrations: list[str] | None = None) -> None:
    """Reach the database and check Halo's schema (for ``integrations``; None: all), changing
    nothing: what a read-only command needs."""
    connect_check(engine)
    missing = missing_schema(engine, integrations)
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise SchemaMismatch(f"the database lacks Halo tables/columns halodb needs: {shown}", hint="is this a Halo database of a supported version?")


def prepare_database(engine: Engine, integrations: list[str] | None = None) -> None:
    """``check_database``, then bring halodb's own tables up to date."""
    check_database(engine, integrations)
    before, after = migrate.upgrade(engine)
    if before != after:
        log.info("halodb tables migrated from %s to %s", before or "nothing", after)


def enabled_integrations(settings, chosen: str | None = None) -> list[str]:
    """Integrations this appsettings.json enables at least one entity of (only ``chosen``)."""
    return [name for name in REGISTRY if settings.enabled_entities(name) and (chosen is None or name == chosen)]


def _resolve_integration(name: str | None) -> str | None:
    if name is None:
        return None
    for known in REGISTRY:
        if known.lower() == name.lower():
            return known
    raise UsageError(f"unknown integration {name!r}", hint=f"choose one of {', '.join(REGISTRY)}")


def run(settings, options: RunOptions = RunOptions(), *, progress: Progress | None = None, engine: Engine | None = None) -> RunReport:
    """Run every integration due for this instance; return the report (never raises for a
    failed integration - that is in the report and its exit code)."""
    chosen = _resolve_integration(options.integration)
    own_engine = engine is None
    engine = engine or engine_from_settings(settings)
    try:
        prepare_database(engine, enabled_integrations(settings, chosen))
        report = RunReport(instance=instance_name(settings), started=utcnow(), dry_run=options.dry_run)
        with engine.connect() as conn:
            agent = halo_settings.integrator_agent(conn)
        if agent is None:
            log.warning("Halo names no integrator agent (control.loginas_halointegrator); changes are unattributed")
        sync = SyncEngine(
            engine, instance=report.instance, agent_id=agent.id if agent else None, limits=limits_from(settings),
            dry_run=options.dry_run, confirm_deactivations=options.confirm_deactivations, progress=progress,
            is_transient=is_transient,
        )  # fmt: skip
        lease_ttl = dt.timedelta(seconds=settings.sync.lock_lease_seconds)
        for name, integration in REGISTRY.items():
            if chosen and name != chosen:
                continue
            wanted = settings.enabled_entities(name)
            if options.entity:
                wanted = [e for e in wanted if e.lower() == options.entity.lower()]
            if not wanted:
                if chosen:
                    report.skipped.append((name, "no entity enabled in appsettings.json" if not options.entity else f"entity {options.entity} not enabled in appsettings.json"))
                continue
            _run_integration(engine, sync, integration, settings, wanted, report, options, lease_ttl)
        report.finished = utcnow()
        log.info("run finished: %d created, %d updated, %d deactivated, %d quarantined, exit code %d",
                 report.total("created"), report.total("updated"), report.total("deactivated"),
                 report.total("quarantined"), report.exit_code)  # fmt: skip
        return report
    finally:
        if own_engine:
            engine.dispose()


def _run_integration(
    engine: Engine, sync: SyncEngine, integration, settings, wanted: list[str], report: RunReport, options: RunOptions,
    lease_ttl: dt.timedelta,
) -> None:
    name = integration.name
    owner = new_owner(report.instance)
    with engine.connect() as conn:
        state = halo_settings.integration_state(conn, name)
        if not state.enabled:
            report.skipped.append((name, "not enabled for the integrator in Halo"))
            log.info("%s: not enabled for the integrator in Halo; skipped", name)
            return
        try:
            declared = integration.entities(conn, settings)
        except HalodbError as err:
            failed = EntityReport(name, "-", "-", name, status="failed", error=one_line(err))
            report.entities.append(failed)
            _record(engine, name, None, failed.error, options)
            return
    reports: list[EntityReport] = []
    blocked: str | None = None
    for item in declared:
        if item.name not in wanted:
            continue
        if isinstance(item, Excluded):
            report.skipped.append((f"{name}/{item.name}", f"{item.label}: {item.reason}"))
            continue
        lease = EntityLock(engine, str(item.scope), instance=report.instance, owner=owner, clock=utcnow, ttl=lease_ttl)
        if blocked:
            # Later entities of an integration build on earlier ones (sites on clients): the
            # instance holding the earlier one will run them too.
            report.skipped.append((item.label, f"after {blocked}, which another instance is running"))
            continue
        holder = _acquire(lease, options)
        if holder is not None:
            reason = f"locked by instance {holder.instance} since {holder.since:%Y-%m-%d %H:%M:%S} UTC"
            report.skipped.append((item.label, reason))
            blocked = item.label
            if options.wait is not None:
                report.lock_timeouts += 1
            log.info("%s: skipped, %s (%s)", item.label, reason, holder.owner)
            continue
        with engine.begin() as conn:  # we hold the lock: any run still "running" here is dead
            for dead in run_log.reap(conn, item.scope, utcnow(), f"the run stopped without finishing (killed or crashed); found by instance {report.instance}"):
                log.warning("%s: run %d of instance %s (pid %s) died; marked failed", item.label, dead["id"], dead["instance"], dead["pid"])
        log.info("%s: starting", item.label)
        try:
            result = sync.run(item, heartbeat=lambda: _renew(lease))
        finally:
            lease.release()
        log.info("%s: %s, %d fetched, %d created, %d updated, %d deactivated, %d quarantined in %.1fs",
                 item.label, result.status, result.fetched, result.created, result.updated,
                 result.deactivated, result.quarantined, result.seconds)  # fmt: skip
        reports.append(result)
        report.entities.append(result)
        if item.record_result and not options.dry_run:
            with engine.begin() as conn:
                item.record_result(conn, None if result.failed else utcnow(), result.error)
    if not reports:
        return
    errors = [r.error for r in reports if r.failed and r.error]
    _record(engine, name, None if errors else utcnow(), "; ".join(errors) if errors else None, options)


def _acquire(lease: EntityLock, options: "RunOptions"):
    """Take the lock, waiting up to ``options.wait`` seconds for it if asked to."""
    deadline = time.monotonic() + (options.wait or 0)
    while True:
        holder = lease.acquire()
        if holder is None or time.monotonic() >= deadline:
            return holder
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def _renew(lease: EntityLock) -> None:
    if not lease.renew():
        raise IntegrationFailed(f"lost the lock on {lease.name} (the lease expired and another instance took it)")


def _record(engine: Engine, integration: str, success_at: dt.datetime | None, error: str | None, options: RunOptions) -> None:
    """Last Sync (on success) and Last Error (set on failure, cleared on success) in Halo."""
    if options.dry_run:
        return
    with engine.begin() as conn:
        if error:
            halo_settings.record_error(conn, integration, error)
        else:
            halo_settings.record_success(conn, integration, success_at or utcnow())
