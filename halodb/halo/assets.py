"""Assets (Halo table ``device``) and their field values (``xtype`` / ``typeinfo`` / ``field`` / ``info``).

An asset is identified by ``did`` and also by the pair (site, device number within the site);
its field values live in ``info`` rows keyed by that pair and by the slot (``typeinfo.xseq``) the
asset's type gives the field. In records, a field value is the key ``"field:<field name>"``, so a
spreadsheet column "Serial Number" becomes ``field:Serial Number``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection

from halodb.errors import RecordError
from halodb.halo import audit
from halodb.halo.repository import FieldChange, Repository, WriteContext, chunks, normalise_key
from halodb.halo.schema import area, device, field, info, site, typeinfo, xtype
from halodb.halo.sites import Known, resolve_site

FIELD_PREFIX = "field:"
_DEVICE_KIND = "d"  # info.ikind for asset values


class AssetRepository(Repository):
    table = device
    audit_name = "DEVICE"
    writable = ("inventory_number", "site_id", "assettype_id", "inactive")
    required = ("inventory_number", "site_id", "assettype_id")
    references = (  # resolve_site, asset types by name, their fields
        (site.c.id, site.c.name, site.c.client_id), (area.c.id, area.c.name), (xtype.c.id, xtype.c.name),
        (typeinfo.c.assettype_id, typeinfo.c.seq, typeinfo.c.field_id), (field.c.id, field.c.name),
    )  # fmt: skip
    locked_field = None

    # -- preparing -------------------------------------------------------------------------------

    def new_known(self) -> Known:
        return Known()

    def prepare(
        self, conn: Connection, records: Sequence[Mapping[str, Any]], *, default_site: int | None = None, known: Any = None
    ) -> list[dict | RecordError]:
        """Resolve site, asset type (by name) and field names for the whole batch. Sites are read
        once per run (``known``, from ``new_known``); asset types and their fields every batch."""
        type_names = {r["assettype_name"] for r in records if r.get("assettype_name")}
        types = self.type_ids(conn, type_names)
        resolved = resolve_site(conn, records, default_site, known)
        type_ids = {r.get("assettype_id") or types.get(normalise_key(r.get("assettype_name"))) for r in records}
        slots = self.slots(conn, [t for t in type_ids if t])

        def one(record: dict) -> dict:
            record.pop("client_id", None)  # assets belong to a site; the client follows from it
            type_name = record.pop("assettype_name", None)
            if type_name and not record.get("assettype_id"):
                record["assettype_id"] = types.get(normalise_key(type_name))
                if record["assettype_id"] is None:
                    raise RecordError(f"no asset type named {type_name!r}")
            values = {k: record.pop(k) for k in list(record) if k not in self.writable}
            row = self.coerce(record)
            type_slots = slots.get(row["assettype_id"], {})
            for name, value in values.items():
                name = name[len(FIELD_PREFIX) :] if name.startswith(FIELD_PREFIX) else name
                if normalise_key(name) not in type_slots:
                    if value in (None, ""):
                        continue  # a shared sheet leaves other types' columns empty
                    raise RecordError(f"asset type {row['assettype_id']} has no field {name!r}")
                canonical = type_slots[normalise_key(name)][1]
                text = None if value in (None, "") else str(value).strip()
                if isinstance(value, float) and value.is_integer():
                    text = str(int(value))
                row[FIELD_PREFIX + canonical] = text
            return row

        return [r if isinstance(r, RecordError) else self._try(one, r) for r in resolved]

    def type_ids(self, conn: Connection, names: Iterable[str]) -> dict[str, int]:
        """Asset type ids by normalised name."""
        wanted = {normalise_key(n) for n in names if n}
        if not wanted:
            return {}
        rows = conn.execute(select(xtype.c.id, xtype.c.name).where(func.lower(xtype.c.name).in_(sorted(wanted))))
        return {normalise_key(name): type_id for type_id, name in rows}

    def slots(self, conn: Connection, type_ids: Iterable[int]) -> dict[int, dict[str, tuple[int, str]]]:
        """Per asset type: normalised field name -> (info slot, field name as Halo spells it)."""
        out: dict[int, dict[str, tuple[int, str]]] = defaultdict(dict)
        for part in chunks(sorted(set(type_ids))):
            stmt = (
                select(typeinfo.c.assettype_id, typeinfo.c.seq, field.c.name)
                .join(field, field.c.id == typeinfo.c.field_id)
                .where(typeinfo.c.assettype_id.in_(part))
            )
            for type_id, seq, name in conn.execute(stmt):
                out[type_id][normalise_key(name)] = (seq, name)
        return out

    # -- reading ---------------------------------------------------------------------------------

    def current(self, conn: Connection, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Stored device columns plus every field value, as ``field:<name>`` keys."""
        out = super().current(conn, ids)
        for part in chunks(sorted(out)):
            stmt = (
                select(device.c.id, field.c.name, info.c.value)
                .join(info, and_(info.c.site_id == device.c.site_id, info.c.devnum == device.c.devnum))
                .join(typeinfo, and_(typeinfo.c.assettype_id == device.c.assettype_id, typeinfo.c.seq == info.c.seq))
                .join(field, field.c.id == typeinfo.c.field_id)
                .where(device.c.id.in_(part), info.c.kind == _DEVICE_KIND)
            )
            for device_id, name, value in conn.execute(stmt):
                out[device_id][FIELD_PREFIX + name] = value
        return out

    def _read_fields(self) -> list[str]:
        return [*super()._read_fields(), "devnum"]

    # -- writing ---------------------------------------------------------------------------------

    def insert(self, conn: Connection, rows: Sequence[Mapping[str, Any]], ctx: WriteContext) -> list[int]:
        """Insert devices with the next free device numbers of their sites, then their values."""
        if not rows:
            return []
        next_num = self._next_devnums(conn, {r["site_id"] for r in rows})
        base_rows, values = [], []
        for r in rows:
            num = next_num[r["site_id"]]
            next_num[r["site_id"]] += 1
            base_rows.append({**{k: v for k, v in r.items() if not k.startswith(FIELD_PREFIX)}, "devnum": num})
            values.append((r["site_id"], num, r["assettype_id"], _field_values(r)))
        ids = super().insert(conn, base_rows, ctx)
        self._write_values(conn, values, replace=False)
        return ids

    def update(self, conn: Connection, changes: Sequence[tuple[int, Sequence[FieldChange]]], ctx: WriteContext) -> int:
        """Update device columns (moving the asset to its new site's numbering when the site
        changes) and field values, with audit rows for every changed field."""
        stored = self.current(conn, [i for i, _ in changes])
        moved = [(i, next(c.new for c in cs if c.field == "site_id")) for i, cs in changes if any(c.field == "site_id" for c in cs)]
        if moved:
            self._move(conn, moved, stored, ctx.now)
        base = [(i, [c for c in cs if not c.field.startswith(FIELD_PREFIX) and c.field != "site_id"]) for i, cs in changes]
        super().update(conn, base, ctx)
        values = []
        for halo_id, cs in changes:
            fv = {c.field[len(FIELD_PREFIX) :]: c.new for c in cs if c.field.startswith(FIELD_PREFIX)}
            if fv:
                s = stored[halo_id]
                values.append((s["site_id"], s["devnum"], s["assettype_id"], fv))
        self._write_values(conn, values, replace=True)
        # Value-only changes update no device column; Halo's rule still wants the stamp.
        values_only = [i for i, cs in changes if cs and all(c.field.startswith(FIELD_PREFIX) for c in cs)]
        for part in chunks(values_only):
            conn.execute(update(device).where(device.c.id.in_(part)).values(lastupdate=ctx.now))
        audit.write(conn, [
            audit.row(self.audit_name, i, c.field, c.old, c.new, ctx)
            for i, cs in changes for c in cs if c.field.startswith(FIELD_PREFIX) or c.field == "site_id"
        ])  # fmt: skip
        return sum(1 for _, cs in changes if cs)

    def _next_devnums(self, conn: Connection, site_ids: Iterable[int]) -> dict[int, int]:
        site_ids = sorted(set(site_ids))
        out = dict.fromkeys(site_ids, 1)
        for part in chunks(site_ids):
            stmt = select(device.c.site_id, func.max(device.c.devnum)).where(device.c.site_id.in_(part)).group_by(device.c.site_id)
            # SQL Server: hold the key range until commit, so a technician adding a device to
            # the same site in Halo meanwhile waits instead of taking the same number.
            stmt = stmt.with_hint(device, "WITH (UPDLOCK, HOLDLOCK)", dialect_name="mssql")
            for site_id, top in conn.execute(stmt):
                out[site_id] = (top or 0) + 1
        return out

    def _move(self, conn: Connection, moved: list[tuple[int, int]], stored: dict[int, dict], now) -> None:
        # Field values are keyed by (site, device number): renumber the device in its new site
        # and carry its info rows along, so nothing is orphaned.
        next_num = self._next_devnums(conn, {site for _, site in moved})
        dev_params, info_params = [], []
        for halo_id, new_site in moved:
            num = next_num[new_site]
            next_num[new_site] += 1
            old = stored[halo_id]
            dev_params.append({"_id": halo_id, "_site": new_site, "_num": num})
            info_params.append({"_os": old["site_id"], "_on": old["devnum"], "_site": new_site, "_num": num})
            old["site_id"], old["devnum"] = new_site, num
        conn.execute(
            update(device).where(device.c.id == bindparam("_id")).values(site_id=bindparam("_site"), devnum=bindparam("_num"), lastupdate=now),
            dev_params,
        )
        conn.execute(
            update(info)
            .where(info.c.kind == _DEVICE_KIND, info.c.site_id == bindparam("_os"), info.c.devnum == bindparam("_on"))
            .values(site_id=bindparam("_site"), devnum=bindparam("_num")),
            info_params,
        )

    def _write_values(self, conn: Connection, values: list[tuple[int, int, int, dict]], *, replace: bool) -> None:
        slots = self.slots(conn, {v[2] for v in values})
        keys, rows = [], []
        for site_id, num, type_id, fields in values:
            for name, value in fields.items():
                seq = slots[type_id][normalise_key(name)][0]
                keys.append({"_s": site_id, "_n": num, "_q": seq})
                if value is not None:
                    rows.append({"kind": _DEVICE_KIND, "site_id": site_id, "devnum": num, "seq": seq, "value": value})
        if replace and keys:
            conn.execute(
                delete(info).where(
                    info.c.kind == _DEVICE_KIND,
                    info.c.site_id == bindparam("_s"),
                    info.c.devnum == bindparam("_n"),
                    info.c.seq == bindparam("_q"),
                ),
                keys,
            )
        if rows:
            conn.execute(insert(info), rows)


def _field_values(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k[len(FIELD_PREFIX) :]: v for k, v in row.items() if k.startswith(FIELD_PREFIX)}


assets = AssetRepository()
