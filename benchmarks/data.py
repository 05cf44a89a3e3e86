"""A deterministic synthetic directory: 20 clients, 60 sites and N users, generated lazily.

Every record comes from one seeded random stream walked in index order, so the same N always
gives the same records, and the W3 variant (1 % changed, 0.5 % removed) is the same stream with
some records altered or left out. Nothing is held in a list: memory stays flat in N.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator

from sqlalchemy import insert

from halodb.halo.schema import area, site
from halodb.sync.entity import SourceRecord

CLIENTS = 20
SITES = 60
SEED = 20261124

FIRST = [
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
    "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen",
    "Oliver", "Amelia", "Harry", "Isla", "George", "Ava", "Noah", "Mia", "Jack", "Sophia", "Leo", "Grace",
    "Priya", "Arjun", "Wei", "Mei", "Hiroshi", "Yuki", "Ahmed", "Fatima", "Carlos", "Lucia", "Pieter", "Anouk",
]  # fmt: skip
LAST = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Wilson", "Anderson", "Taylor", "Thomas", "Moore", "Jackson", "Martin", "Lee",
    "Thompson", "White", "Harris", "Clark", "Lewis", "Robinson", "Walker", "Young", "Allen", "King",
    "Patel", "Shah", "Chen", "Wang", "Tanaka", "Sato", "Khan", "Ali", "de Vries", "van den Berg", "O'Brien",
]  # fmt: skip
# ~5 % of users get one of these (the first name, the surname, or both).
FIRST_INTL = ["Zoë", "Jürgen", "Łukasz", "Søren", "José", "François", "Çağla", "Åsa", "Björn", "Dvořák", "Ines", "Renée", "Miłosz", "Øystein", "Ægir", "Ðorđe", "Jiří", "Ngọc", "Александр", "Σοφία"]  # fmt: skip
LAST_INTL = ["Müller", "Šimůnek", "Kowalczyk", "Nuñez", "Gonçalves", "Østergård", "Löfgren", "Çelik", "Đặng", "Dvořáková", "Wöhler", "Ibáñez", "Smirnov", "Παπαδόπουλος", "Żółkiewski"]  # fmt: skip
TITLES = [
    "Account Manager", "Senior Software Engineer", "Service Desk Analyst", "Finance Director", "HR Business Partner",
    "Office Manager", "Head of Operations", "Marketing Coordinator", "Chief Executive Officer", "Sales Executive",
    "Infrastructure Engineer", "Payroll Specialist", "Project Manager", "Legal Counsel", "Receptionist",
]  # fmt: skip
DEPARTMENTS = ["Finance", "IT", "Human Resources", "Sales", "Marketing", "Operations", "Legal", "Executive", "Customer Success", "Facilities"]  # fmt: skip


def client_of_site(site_id: int) -> int:
    """Sites 1..60 belong to clients 1..20 round-robin (the ids an empty fixture hands out)."""
    return (site_id - 1) % CLIENTS + 1


def create_directory_owners(conn) -> None:
    """The 20 clients and 60 sites the users belong to; ids 1..20 and 1..60 in an empty fixture."""
    client_ids = [conn.execute(insert(area).returning(area.c.id), {"name": f"Client {c:02d} Ltd"}).scalar_one() for c in range(1, CLIENTS + 1)]
    assert client_ids == list(range(1, CLIENTS + 1)), client_ids
    for s in range(1, SITES + 1):
        sid = conn.execute(insert(site).returning(site.c.id), {"name": f"Site {s:02d}", "client_id": client_of_site(s)}).scalar_one()
        assert sid == s, (sid, s)


def is_changed(i: int) -> bool:
    """W3: 1 % of users changed (their title)."""
    return i % 100 == 0


def is_removed(i: int) -> bool:
    """W3: 0.5 % of users gone from the directory (disjoint from the changed ones: odd indexes)."""
    return i % 200 == 101


def expected_w3(n: int) -> tuple[int, int]:
    """(updated, deactivated) that W3 must report for N users."""
    return sum(1 for i in range(n) if is_changed(i)), sum(1 for i in range(n) if is_removed(i))


def _phone(rng: random.Random) -> str:
    return f"+44 {rng.randint(1000, 9999)} {rng.randint(100000, 999999)}"


def user_fields(n: int, *, variant: str = "base") -> Iterator[tuple[int, dict]]:
    """(index, fields) for N users under Halo API field names; ``variant="w3"`` applies W3."""
    rng = random.Random(SEED)
    for i in range(n):
        roll = rng.random()
        first = rng.choice(FIRST_INTL) if roll < 0.035 else rng.choice(FIRST)
        last = rng.choice(LAST_INTL) if 0.02 < roll < 0.05 else rng.choice(LAST)
        oid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        site_id = rng.randint(1, SITES)
        domain = f"client{client_of_site(site_id):02d}.example.com"
        local = f"{first}.{last}".lower().replace(" ", "").replace("'", "")
        local = local.encode("ascii", "ignore").decode() or "user"
        upn = f"{local}.{i}@{domain}"
        fields = {
            "azureoid": oid,
            "firstname": first,
            "surname": last,
            "emailaddress": upn,
            "login": upn,
            "title": rng.choice(TITLES) if rng.random() < 0.9 else None,
            "department": rng.choice(DEPARTMENTS) if rng.random() < 0.85 else None,
            "phonenumber": _phone(rng) if rng.random() < 0.8 else None,
            "mobilenumber": _phone(rng) if rng.random() < 0.6 else None,
            "site_id": site_id,
        }
        if variant == "w3":
            if is_removed(i):
                continue
            if is_changed(i):
                fields["title"] = (fields["title"] or "Staff") + " (acting)"
        yield i, fields


def source_records(n: int, *, variant: str = "base") -> Iterator[SourceRecord]:
    """The directory as ``SourceRecord``s keyed by Azure object id - a generator."""
    for _, fields in user_fields(n, variant=variant):
        yield SourceRecord(fields["azureoid"], fields)


def tracked_read(n: int, *, variant: str = "base"):
    """The directory as a source that tracks its changes, the way Graph's ``/users/delta`` does
    for the Azure AD integration: a full read ends by leaving a change position (the entity's
    cursor, which halodb commits with the data), and a read from that position returns only what
    changed since, as a read that cannot see what is missing. The directory does not change
    between runs, so a read from the position that a full read of the same N and variant left
    returns nothing."""
    position = f"synthetic:{variant}:{n}"

    def read(ctx):
        if ctx.cursor == position:
            ctx.mark_incomplete("delta read")  # changes only: nothing is missing from it
            return
        yield from source_records(n, variant=variant)
        ctx.set_cursor(position)

    return read


HALO_COLUMNS = (
    "name", "firstname", "surname", "emailaddress", "login", "title", "department", "phonenumber",
    "mobilenumber", "azureoid", "site_id", "client_id", "inactive", "datecreated", "lastupdate",
)  # fmt: skip


def halo_rows(n: int, now: dt.datetime, *, variant: str = "base") -> Iterator[dict]:
    """The final Halo ``users`` rows halodb writes for the directory (readable keys), for baselines."""
    for _, f in user_fields(n, variant=variant):
        row = dict(f)
        row["name"] = f"{f['firstname']} {f['surname']}"
        row["client_id"] = client_of_site(f["site_id"])
        row["inactive"] = False
        row["datecreated"] = now
        row["lastupdate"] = now
        yield row
