"""Deterministic, seeded generator of realistic CRM records, computed per index.

Record ``i`` of an object is a pure function of ``(seed, crm, object, i)``, so a sandbox of
1,000,000 contacts starts instantly and holds in memory only the records that were changed.
The same people and companies appear in several CRMs (shifted windows of one population),
with each CRM's own formatting, so identity resolution has real work to do.

A person's (or company's) facts are drawn once, from the seed and the person's index: name,
title, phone, lifecycle stage, opt-out (industry, country, phone). Every CRM holding the person
renders those same facts in its own fields, vocabulary and formatting (``(415) 555-0100`` vs
``+1 415 555 0100``, Salesforce ``Active`` vs HubSpot ``customer``), so the canonical model sees
agreement. A seeded share of shared people (``conflict_share``) carry one real conflict: one CRM
holds another title, phone or lifecycle stage. What each record adds on its own is noise the
canonical model absorbs or ignores: email case and padding, blank fields, duplicates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

from . import schema

# base records are stamped evenly between these instants (UTC, epoch ms)
BASE_START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
BASE_END_MS = 1_767_139_200_000  # 2025-12-31T00:00:00Z
DAY_MS = 86_400_000

FIRST_NAMES = (
    "Ada",
    "Alan",
    "Amara",
    "Ana",
    "Arjun",
    "Bea",
    "Bruno",
    "Carla",
    "Chen",
    "Chloe",
    "Dana",
    "Diego",
    "Elena",
    "Emil",
    "Fatima",
    "Felix",
    "Grace",
    "Hana",
    "Hugo",
    "Ines",
    "Ivan",
    "Jade",
    "Jonas",
    "Kai",
    "Kenji",
    "Lara",
    "Leo",
    "Lina",
    "Luca",
    "Maya",
    "Mateo",
    "Mei",
    "Nadia",
    "Nico",
    "Noor",
    "Olga",
    "Omar",
    "Paula",
    "Priya",
    "Quinn",
    "Rafael",
    "Rosa",
    "Sami",
    "Sara",
    "Sofia",
    "Tariq",
    "Tessa",
    "Theo",
    "Uma",
    "Vera",
    "Victor",
    "Wei",
    "Yara",
    "Yusuf",
    "Zoe",
    "Zain",
    "Ines",
    "Marta",
    "Pavel",
    "Ruth",
)
LAST_NAMES = (
    "Adams",
    "Almeida",
    "Berg",
    "Brown",
    "Castro",
    "Chen",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Gupta",
    "Haddad",
    "Hansen",
    "Ito",
    "Jensen",
    "Kim",
    "Kowalski",
    "Larsen",
    "Lee",
    "Lopez",
    "Martin",
    "Meyer",
    "Moreau",
    "Nakamura",
    "Novak",
    "Okafor",
    "Olsen",
    "Patel",
    "Pereira",
    "Quist",
    "Rossi",
    "Sato",
    "Schmidt",
    "Silva",
    "Singh",
    "Smith",
    "Suzuki",
    "Tanaka",
    "Torres",
    "Ueda",
    "Varga",
    "Wagner",
    "Walsh",
    "Weber",
    "Wong",
    "Xu",
    "Yamada",
    "Young",
    "Zhang",
)
COMPANY_WORDS = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Cyberdyne",
    "Tyrell",
    "Wonka",
    "Aperture",
    "Oscorp",
    "Gringotts",
    "Monarch",
    "Pied Piper",
)
COMPANY_SUFFIXES = ("Inc", "Ltd", "GmbH", "Labs", "Group", "Systems", "Partners", "Holdings")
TITLES = (
    "CEO",
    "CTO",
    "VP Sales",
    "Head of Support",
    "Data Engineer",
    "RevOps Manager",
    "Account Executive",
    "Support Engineer",
    "Marketing Lead",
    "Procurement Officer",
)
COUNTRIES = ("US", "GB", "DE", "FR", "NL", "ES", "JP", "BR", "IN", "CA")
CASE_SUBJECTS = (
    "Cannot log in",
    "Invoice question",
    "Data export failing",
    "Feature request",
    "Sync delayed",
    "Password reset",
    "API rate limit",
    "Billing address change",
    "Integration error",
    "Slow dashboard",
)
OWNERS = 8

# how far into the shared population each CRM's window of people starts (fraction of N)
PERSON_OFFSET = {"salesforce": 0.0, "hubspot": 0.25, "dynamics": 0.5}
CRM_SALT = {"salesforce": 11, "hubspot": 23, "dynamics": 37}
CRM_ORDER = ("salesforce", "hubspot", "dynamics")

# a person's lifecycle stage, in canonical terms, and how often each occurs
STAGE_WEIGHTS = (("lead", 20), ("prospect", 30), ("customer", 35), ("churned", 10), ("other", 5))
# the stages each CRM can express (Dynamics contacts have no lifecycle field: any stage will do)
CRM_STAGES = {
    "salesforce": frozenset({"prospect", "customer", "churned", "other"}),  # no "lead": those are Leads
    "hubspot": frozenset({"lead", "prospect", "customer", "other"}),  # no "churned" stage
    "dynamics": frozenset(name for name, _ in STAGE_WEIGHTS),
}
# each CRM's vocabulary for a stage (several values: the CRM's synonyms, which its mapping folds)
SF_STATUS = {
    "prospect": ("Prospect",),
    "customer": ("Active",),
    "churned": ("Churned", "Former"),
    "other": (None,),
}
HS_STAGE = {
    "lead": ("subscriber", "lead", "marketingqualifiedlead"),
    "prospect": ("salesqualifiedlead", "opportunity"),
    "customer": ("customer", "customer", "customer", "evangelist"),
    "other": ("other",),
}
# the fields a conflict can touch, per CRM (Dynamics contacts have no lifecycle field)
CONFLICT_FIELDS = {
    "salesforce": ("title", "phone", "stage"),
    "hubspot": ("title", "phone", "stage"),
    "dynamics": ("title", "phone"),
}
ACCOUNT_CONFLICT_FIELDS = ("industry", "country", "phone")
# each record leaves a fact blank this often on its own (blank is not a conflict)
BLANK_TITLE, BLANK_PHONE = 0.08, 0.05


class Draws:
    """Deterministic draws from a key's BLAKE2b digest: several times cheaper than seeding ``random.Random``.

    Each draw consumes part of a 512-bit integer; when it runs low, the digest is extended with a
    counter, so any number of draws stays a pure function of the key.
    """

    __slots__ = ("_key", "_pool", "_left", "_round")

    def __init__(self, key: int) -> None:
        self._key = key.to_bytes(16, "little", signed=True)
        self._round = 0
        self._refill()

    def _refill(self) -> None:
        digest = hashlib.blake2b(self._key + self._round.to_bytes(4, "little"), digest_size=64).digest()
        self._pool = int.from_bytes(digest, "little")
        self._left = 512
        self._round += 1

    def randrange(self, n: int) -> int:
        if self._left < 40:
            self._refill()
        value = self._pool % n
        self._pool //= n
        self._left -= n.bit_length()
        return value

    def random(self) -> float:
        return self.randrange(1 << 24) / float(1 << 24)

    def randint(self, a: int, b: int) -> int:
        return a + self.randrange(b - a + 1)

    def choice(self, seq: Sequence):
        return seq[self.randrange(len(seq))]


def object_counts(contacts: int) -> dict[str, int]:
    """How many records each role gets for a sandbox of ``contacts`` contacts per CRM."""
    return {"contact": contacts, "account": max(1, contacts // 10), "interaction": max(1, contacts // 2)}


Phone = tuple[int, int, int, bool]  # (area or city code, exchange, line, international)


@dataclass(frozen=True)
class Person:
    first: str
    last: str
    email_local: str
    company: int
    title: str | None
    phone: Phone | None
    stage: str  # canonical lifecycle stage, one every CRM holding the person can express
    opted_out: bool
    conflict: tuple[str, str, int] | None  # (crm, field, draw) when one CRM holds another value


@dataclass(frozen=True)
class Company:
    industry: str
    country: str
    phone: Phone | None
    conflict: tuple[str, str, int] | None


class RecordGenerator:
    """Builds base record ``i`` of one CRM object; pure and cheap (~10-15 µs a record)."""

    def __init__(
        self,
        seed: int,
        crm: str,
        obj: schema.ObjectSpec,
        role: str,
        counts: dict[str, int],
        conflict_share: float = 0.0,
    ):
        self.seed = seed
        self.conflict_share = conflict_share
        self.crm = crm
        self.spec = obj
        self.role = role
        self.counts = counts
        self.count = counts[role]
        self.step_ms = max(1, (BASE_END_MS - BASE_START_MS) // max(1, self.count))
        self._salt = (seed * 1_000_003 + CRM_SALT[crm] * 7_919 + hash_role(role)) * 10_000_019
        self._person_offset = int(PERSON_OFFSET[crm] * counts["contact"])
        self._windows = tuple((c, int(PERSON_OFFSET[c] * counts["contact"])) for c in CRM_ORDER)
        self._n = counts["contact"]
        self._roles = schema.ROLES[crm]
        self._objects = schema.OBJECTS[crm]

    # -- timestamps are monotonic in the index, so a cursor lower bound is one division
    def base_stamp(self, i: int) -> int:
        return BASE_START_MS + (i + 1) * self.step_ms

    def first_index_at_or_after(self, stamp_ms: int) -> int:
        if stamp_ms <= BASE_START_MS:
            return 0
        return max(0, -(-(stamp_ms - BASE_START_MS) // self.step_ms) - 1)

    def _rng(self, i: int) -> Draws:
        return Draws(self._salt + i)

    def holders(self, p: int) -> tuple[str, ...]:
        """The CRMs whose window of the population holds person ``p``."""
        return tuple(c for c, start in self._windows if start <= p < start + self._n)

    def _person(self, p: int) -> Person:
        """Person ``p``'s facts, the same in every CRM: a pure function of ``(seed, p)``."""
        r = Draws(self.seed * 7_777_777 + p)
        first = r.choice(FIRST_NAMES)
        last = r.choice(LAST_NAMES)
        title = r.choice(TITLES) if r.random() > 0.15 else None
        phone = _phone_draw(r)
        holders = self.holders(p)
        stage = _weighted(r, _stages_for(holders))
        opted_out = r.random() < 0.05
        conflict = None
        if r.random() < self.conflict_share and len(holders) > 1:
            crm = r.choice(holders)
            conflict = (crm, r.choice(CONFLICT_FIELDS[crm]), r.randrange(1 << 20))
            if conflict[1] == "title" and title is None:
                title = r.choice(TITLES)  # a conflict needs a value on both sides
            if conflict[1] == "phone" and phone is None:
                phone = _phone_draw(r, blank=0.0)
        return Person(
            first,
            last,
            f"{first}.{last}{p}".lower(),
            company=self._company_of(p),
            title=title,
            phone=phone,
            stage=stage,
            opted_out=opted_out,
            conflict=conflict,
        )

    def _company_of(self, p: int) -> int:
        """The company person ``p`` works for."""
        return (p * 7_919) % self.counts["account"]

    def _company(self, j: int) -> Company:
        """Company ``j``'s facts, the same in every CRM (every CRM holds every company)."""
        return _company_facts(self.seed, j, self.conflict_share)

    def company_name(self, j: int) -> str:
        return _company_name(self.seed, j)

    def company_domain(self, j: int) -> str:
        return _company_domain(self.seed, j)

    def ref_id(self, role: str, index: int) -> str:
        return self._objects[self._roles[role]].format_id(index)

    def owner(self, k: int) -> str:
        if self.crm == "salesforce":
            return f"005Sb{k:010d}AAA"
        if self.crm == "hubspot":
            return str(1001 + k)
        return f"{k:08x}-0008-4000-8000-5a4e0b0c5d1e"

    def phone(self, number: Phone | None) -> str | None:
        """A number as this CRM's users type it: the digits agree, the formatting does not."""
        if number is None:
            return None
        area, mid, end, international = number
        if international:  # a London number
            if self.crm == "salesforce":
                return f"+44 20 {area}{mid} {end:04d}"
            if self.crm == "hubspot":
                return f"+4420{area}{mid}{end:04d}"
            return f"+44-20-{area}{mid}-{end:04d}"
        if self.crm == "salesforce":
            return f"({area}) {mid}-{end:04d}"
        if self.crm == "hubspot":
            return f"+1 {area} {mid} {end:04d}"
        return f"{area}.{mid}.{end:04d}"

    def _conflicting(self, conflict: tuple[str, str, int] | None, name: str) -> int | None:
        """The conflict's draw when this CRM holds the other value of ``name``, else None."""
        if conflict is not None and conflict[0] == self.crm and conflict[1] == name:
            return conflict[2]
        return None

    # ---------------------------------------------------------------- records
    def record(self, i: int) -> dict:
        r = self._rng(i)
        stamp = self.base_stamp(i)
        created = stamp - r.randint(0, min(90 * DAY_MS, i * self.step_ms))
        builder = getattr(self, f"_{self.role}")
        rec = builder(i, r, created)
        spec = self.spec
        rec[spec.id_field] = spec.format_id(i)
        rec[spec.created_field] = created
        rec[spec.system_stamp] = stamp
        if spec.user_stamp:
            rec[spec.user_stamp] = stamp
        if self.crm == "salesforce":
            rec["IsDeleted"] = False
            rec["OwnerId"] = self.owner(r.randrange(OWNERS))
        elif self.crm == "dynamics":
            rec["versionnumber"] = 1000 + i
            rec["_ownerid_value"] = self.owner(r.randrange(OWNERS))
        else:
            rec["hubspot_owner_id"] = self.owner(r.randrange(OWNERS))
        return rec

    def _email(self, i: int, r: Draws, person: Person) -> str | None:
        roll = r.random()
        if roll < 0.04:
            return None
        owner = person
        if roll < 0.07 and i > 0:  # another person's address already in this CRM (a shared inbox), re-cased
            owner = self._person(self._person_offset + max(0, i - 1 - r.randrange(50)))
        email = f"{owner.email_local}@{self.company_domain(owner.company)}"
        if roll > 0.995:  # a business-rule violation: not an email address
            return email.replace("@", " at ")
        if r.random() < 0.1:
            email = email.title()
        if r.random() < 0.02:
            email = f"  {email} "
        return email

    def _contact(self, i: int, r: Draws, created: int) -> dict:
        person = self._person(self._person_offset + i)
        email = self._email(i, r, person)
        first = person.first if r.random() > 0.03 else None
        conflict = person.conflict
        title, phone, stage = person.title, person.phone, person.stage
        other = self._conflicting(conflict, "title")
        if other is not None:
            title = _other(TITLES, title, other)
        elif r.random() < BLANK_TITLE:
            title = None
        other = self._conflicting(conflict, "phone")
        if other is not None:
            phone = _other_phone(phone, other)
        elif r.random() < BLANK_PHONE:
            phone = None
        other = self._conflicting(conflict, "stage")
        if other is not None:
            stage = _other(sorted(CRM_STAGES[self.crm]), stage, other)
        account = self.ref_id("account", person.company)
        if self.crm == "salesforce":
            return {
                "FirstName": first,
                "LastName": person.last,
                "Email": email,
                "Phone": self.phone(phone),
                "Title": title,
                "AccountId": account,
                "LeadSource": r.choice(schema.SF_LEAD_SOURCES),
                "Customer_Status__c": r.choice(SF_STATUS[stage]),
                "HasOptedOutOfEmail": person.opted_out,
                "External_Id__c": None,
            }
        if self.crm == "hubspot":
            return {
                "hs_object_id": None,
                "email": email,
                "firstname": first,
                "lastname": person.last,
                "phone": self.phone(phone),
                "jobtitle": title,
                "company": self.company_name(person.company),
                "associatedcompanyid": account,
                "lifecyclestage": r.choice(HS_STAGE[stage]),
                "hs_email_optout": person.opted_out,
            }
        return {
            "firstname": first,
            "lastname": person.last,
            "fullname": f"{first} {person.last}" if first else person.last,
            "emailaddress1": email,
            "telephone1": self.phone(phone),
            "jobtitle": title,
            "_parentcustomerid_value": account,
            "donotemail": person.opted_out,
            "externalid": None,
            # an inactive contact: most churned customers, a few others
            "statecode": 1 if r.random() < (0.5 if stage == "churned" else 0.05) else 0,
        }

    def _account(self, j: int, r: Draws, created: int) -> dict:
        name, domain = self.company_name(j), self.company_domain(j)
        company = self._company(j)
        industry, country, phone = company.industry, company.country, company.phone
        other = self._conflicting(company.conflict, "industry")
        if other is not None:
            industry = _other(schema.INDUSTRIES, industry, other)
        other = self._conflicting(company.conflict, "country")
        if other is not None:
            country = _other(COUNTRIES, country, other)
        other = self._conflicting(company.conflict, "phone")
        if other is not None:
            phone = _other_phone(phone, other)
        elif r.random() < BLANK_PHONE:
            phone = None
        if self.crm == "salesforce":
            return {
                "Name": name,
                "Website": f"https://www.{domain}",
                "Industry": industry,
                "Phone": self.phone(phone),
                "BillingCountry": country,
                "External_Id__c": None,
            }
        if self.crm == "hubspot":
            return {
                "hs_object_id": None,
                "name": name,
                "domain": domain,
                "industry": industry,
                "phone": self.phone(phone),
                "country": country,
            }
        return {
            "name": name,
            "accountnumber": f"ACC-{j:07d}",
            "websiteurl": f"https://{domain}",
            "telephone1": self.phone(phone),
            "address1_country": country,
            "statecode": 0,
        }

    def _interaction(self, k: int, r: Draws, created: int) -> dict:
        contact = (k * 2_654_435_761) % self.counts["contact"]
        account = self._company_of(self._person_offset + contact)
        closed = r.random() < 0.6
        # a few closed cases without a close date: a business rule the quality gates must catch
        closed_at = created + r.randint(3_600_000, 20 * DAY_MS) if closed and r.random() > 0.005 else None
        subject = r.choice(CASE_SUBJECTS)
        if self.crm == "salesforce":
            return {
                "CaseNumber": f"{k + 1:08d}",
                "Subject": subject,
                "Description": f"{subject} (ref {k})",
                "Status": "Closed" if closed else r.choice(schema.SF_CASE_STATUS[:3]),
                "Priority": r.choice(schema.SF_CASE_PRIORITY),
                "Origin": r.choice(schema.SF_CASE_ORIGIN),
                "ContactId": self.ref_id("contact", contact),
                "AccountId": self.ref_id("account", account),
                "IsClosed": closed,
                "ClosedDate": closed_at,
                "External_Id__c": None,
            }
        if self.crm == "hubspot":
            return {
                "hs_object_id": None,
                "subject": subject,
                "content": f"{subject} (ref {k})",
                "hs_pipeline": "0",
                "hs_pipeline_stage": "4" if closed else r.choice(("1", "2", "3")),
                "hs_ticket_priority": r.choice(schema.HS_TICKET_PRIORITY),
                "closed_date": closed_at,
                "hs_contact_id": self.ref_id("contact", contact),
            }
        return {
            "title": subject,
            "ticketnumber": f"CAS-{k + 1:05d}-X1Y2Z3",
            "description": f"{subject} (ref {k})",
            "prioritycode": r.choice((1, 2, 3)),
            "statuscode": 5 if closed else r.choice((1, 2, 3)),
            "_customerid_value": self.ref_id("account", account),
            "_primarycontactid_value": self.ref_id("contact", contact),
            "resolvedon": closed_at,
            "statecode": 1 if closed else 0,
        }


def hash_role(role: str) -> int:
    return {"contact": 1, "account": 2, "interaction": 3}[role]


def _phone_draw(r: Draws, blank: float = 0.1) -> Phone | None:
    if r.random() < blank:
        return None
    area, mid, end = r.randint(201, 989), r.randint(200, 999), r.randint(0, 9999)
    if r.random() < 0.1:  # some international numbers: London, 20 + eight digits
        return (r.choice((3, 7, 8)), r.randint(100, 999), end, True)
    return (area, mid, end, False)


@cache
def _stages_for(holders: tuple[str, ...]) -> tuple[tuple[tuple[str, int], ...], int]:
    """The stages every CRM in ``holders`` can express, with their weights, and the total weight."""
    stages = tuple((s, w) for s, w in STAGE_WEIGHTS if all(s in CRM_STAGES[c] for c in holders))
    return stages, sum(w for _, w in stages)


def _weighted(r: Draws, table: tuple[Sequence[tuple[str, int]], int]) -> str:
    weights, total = table
    roll = r.randrange(total)
    for value, weight in weights:
        if roll < weight:
            return value
        roll -= weight
    raise AssertionError("unreachable: the roll is below the total weight")


def _other(values: Sequence, current, draw: int):
    """A value of ``values`` other than ``current``, picked by ``draw``."""
    choices = [v for v in values if v != current]
    return choices[draw % len(choices)]


def _other_phone(number: Phone | None, draw: int) -> Phone:
    """Another number: the same shape, another line (a second phone, or a typo that stuck)."""
    area, mid, end, international = number or (415, 555, 0, False)
    return (area, mid, (end + 1 + draw % 9_999) % 10_000, international)


@lru_cache(maxsize=200_000)
def _company_facts(seed: int, j: int, conflict_share: float) -> Company:
    r = Draws(seed * 4_444_447 + j)
    industry, country, phone = r.choice(schema.INDUSTRIES), r.choice(COUNTRIES), _phone_draw(r)
    conflict = None
    if r.random() < conflict_share:  # every CRM holds every company: each can disagree
        field = r.choice(ACCOUNT_CONFLICT_FIELDS)
        crm = r.choice(("salesforce", "hubspot") if field == "industry" else CRM_ORDER)
        conflict = (crm, field, r.randrange(1 << 20))
        if field == "phone" and phone is None:
            phone = _phone_draw(r, blank=0.0)
    return Company(industry, country, phone, conflict)


@lru_cache(maxsize=200_000)
def _company_name(seed: int, j: int) -> str:
    r = Draws(seed * 3_333_331 + j)
    return f"{r.choice(COMPANY_WORDS)} {r.choice(COMPANY_WORDS)} {j} {r.choice(COMPANY_SUFFIXES)}"


@lru_cache(maxsize=200_000)
def _company_domain(seed: int, j: int) -> str:
    return _company_name(seed, j).split(" ")[0].lower() + f"{j}.example.com"
