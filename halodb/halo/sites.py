"""Sites (Halo table ``site``): every site belongs to one client."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from halodb.errors import RecordError
from halodb.halo import clients as client_api
from halodb.halo.repository import Repository, chunks, normalise_key
from halodb.halo.schema import area, site


class SiteRepository(Repository):
    table = site
    audit_name = "SITE"
    writable = ("name", "client_id", "phonenumber", "isinvoicesite", "inactive")
    required = ("name", "client_id")
    references = ((area.c.id, area.c.name),)  # clients by name

    def prepare(self, conn: Connection, records: Sequence[Mapping[str, Any]], *, known: Any = None) -> list[dict | RecordError]:
        """Resolve ``client_name`` to ``client_id`` for the whole batch, then coerce (every batch
        reads its clients: ``known`` is not kept)."""
        by_name = client_api.lookup(conn, {r["client_name"] for r in records if r.get("client_name")})

        def one(record: Mapping[str, Any]) -> dict:
            record = dict(record)
            client_name = record.pop("client_name", None)
            if client_name and not record.get("client_id"):
                record["client_id"] = by_name.get(normalise_key(client_name))
                if record["client_id"] is None:
                    raise RecordError(f"no client named {client_name!r}")
            return self.coerce(record)

        return [self._try(one, r) for r in records]

    def client_of(self, conn: Connection, site_ids: Iterable[int]) -> dict[int, int]:
        """The client id of each site."""
        out: dict[int, int] = {}
        for part in chunks(sorted(set(site_ids))):
            out.update(conn.execute(select(site.c.id, site.c.client_id).where(site.c.id.in_(part))).all())
        return out

    def ids_by_name(self, conn: Connection, names: Iterable[str]) -> dict[str, list[tuple[int, int]]]:
        """(site id, client id) pairs by normalised site name; site names repeat across clients."""
        wanted = sorted({normalise_key(n) for n in names if n})
        out: dict[str, list[tuple[int, int]]] = {}
        found = self.find(conn, ("name",), [(n,) for n in wanted])
        client_ids = self.client_of(conn, [i for ids in found.values() for i in ids])
        for (name,), ids in found.items():
            out[name] = [(i, client_ids[i]) for i in sorted(ids)]
        return out


sites = SiteRepository()


#: In ``Known.client_of_site``: no site has this id.
NO_SITE = object()


class Known:
    """The sites and clients a run has read from Halo so far, by how records name them.

    Each site id, site name and client name is read once per run, when the first batch naming it
    is prepared; later batches are prepared from memory, the engine even ahead of time, while
    the server stores the last batch. A miss is remembered too: a site or client created in Halo
    during the run is found by the next run (its records wait in quarantine until then). Changes
    during a run reach every record at the next run anyway: the run's record hashes take Halo's
    reference data as it was when the run started (``run_salt``)."""

    def __init__(self) -> None:
        self.client_of_site: dict[int, int | object] = {}  # site id -> its client, or NO_SITE
        self.sites_by_name: dict[str, list[tuple[int, int]]] = {}  # normalised name -> (site, client)
        self.clients_by_name: dict[str, int | None] = {}  # normalised name -> client; None: none


def _named(records: Sequence[Mapping[str, Any]], default_site: int | None) -> tuple[set[int], set[str], set[str]]:
    """The site ids, site names and client names (normalised) that ``records`` refer to."""
    site_ids = {number for r in records if (number := _site_number(r.get("site_id"))) is not None}
    if default_site:
        site_ids.add(default_site)
    site_names = {normalise_key(r["site_name"]) for r in records if r.get("site_name")}
    client_names = {normalise_key(r["client_name"]) for r in records if r.get("client_name")}
    return site_ids, site_names, client_names


def look_up_sites(conn: Connection, records: Sequence[Mapping[str, Any]], default_site: int | None, known: Known) -> None:
    """Read the sites and clients ``records`` name that ``known`` lacks: one query per kind."""
    site_ids, site_names, client_names = _named(records, default_site)
    site_names.difference_update(known.sites_by_name)
    if site_names:
        found = sites.ids_by_name(conn, site_names)
        known.sites_by_name.update({name: found.get(name, []) for name in site_names})
        known.client_of_site.update((i, c) for pairs in found.values() for i, c in pairs)
    client_names.difference_update(known.clients_by_name)
    if client_names:
        found = client_api.lookup(conn, client_names)
        known.clients_by_name.update({name: found.get(name) for name in client_names})
    site_ids.difference_update(known.client_of_site)
    if site_ids:
        found = sites.client_of(conn, site_ids)
        known.client_of_site.update({i: found.get(i, NO_SITE) for i in site_ids})


def resolve_known(records: Sequence[Mapping[str, Any]], default_site: int | None, known: Known) -> list[dict | RecordError] | None:
    """``resolve_site`` from what ``known`` holds, without the database; None if the records
    name a site or client it does not hold yet."""
    site_ids, site_names, client_names = _named(records, default_site)
    if not (site_ids.issubset(known.client_of_site) and site_names.issubset(known.sites_by_name) and client_names.issubset(known.clients_by_name)):
        return None
    client_of, by_site, by_client = known.client_of_site, known.sites_by_name, known.clients_by_name

    def one(record: Mapping[str, Any]) -> dict:
        record = dict(record)
        site_name = record.pop("site_name", None)
        client_name = record.pop("client_name", None)
        client_id = record.get("client_id")
        if client_name and not client_id:
            client_id = by_client[normalise_key(client_name)]
            if client_id is None:
                raise RecordError(f"no client named {client_name!r}")
        site_id = record.get("site_id")
        if site_id not in (None, ""):
            number = _site_number(site_id)
            client = client_of.get(number, NO_SITE) if number is not None else NO_SITE
            if client is NO_SITE:
                raise RecordError(f"no site with id {site_id!r}")
            site_id = number
        elif site_name:
            candidates = by_site[normalise_key(site_name)]
            if client_id:
                candidates = [c for c in candidates if c[1] == int(client_id)]
            if not candidates:
                where = f" of client {client_name or client_id}" if client_id else ""
                raise RecordError(f"no site named {site_name!r}{where}")
            if len(candidates) > 1:
                raise RecordError(f"site name {site_name!r} is ambiguous: give client_name or site_id")
            site_id, client = candidates[0]
        elif default_site:
            site_id = default_site
            client = client_of[site_id]
            if client is NO_SITE:
                raise RecordError(f"no site with id {site_id!r} (the default site)")
        else:
            raise RecordError("no site: give site_id or site_name, or configure a default site")
        record["site_id"] = site_id
        record["client_id"] = client
        return record

    return [Repository._try(one, r) for r in records]


def resolve_site(
    conn: Connection, records: Sequence[Mapping[str, Any]], default_site: int | None = None, known: Known | None = None
) -> list[dict | RecordError]:
    """Give each record a ``site_id`` and ``client_id`` from ``site_id`` / ``site_name`` /
    ``client_name`` / ``client_id``, or from ``default_site``; one query per kind for the batch,
    for what ``known`` (the run's lookups so far) does not hold yet."""
    known = Known() if known is None else known
    look_up_sites(conn, records, default_site, known)
    resolved = resolve_known(records, default_site, known)
    assert resolved is not None  # everything the records name was just looked up
    return resolved


def _site_number(value: Any) -> int | None:
    """A site id given as a whole number or as decimal digits (a spreadsheet cell, a CSV field),
    else None."""
    if type(value) is int:  # the common case, from a directory or a database: no text round trip
        return value if value >= 0 else None
    text = str(value or "").strip()
    return int(text) if text.isdecimal() else None  # not isdigit: "²" is a digit int() refuses
