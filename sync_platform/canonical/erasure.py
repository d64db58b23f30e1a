"""Erasure requests: remove a person from the canonical data, mask them elsewhere, keep them out.

``sync-platform erase --email ADDRESS`` (or ``--source SYSTEM --id ID``) resolves the request to a
person: every canonical contact with that email, or that record, widened to every record sharing
its golden ``customer_id`` (the same person in the other CRMs). Then, in this order:

1. the request goes to ``ops.erasure_requests`` and the person's suppression entries to
   ``ops.erasure_subjects``: record keys and a keyed hash (HMAC, :func:`lookup_hash`) of each
   email, **never the email itself**;
2. their rows leave ``canonical.contacts`` and ``canonical.contacts_shareable``; cases that named
   them keep existing but lose the link (``contact_source_id``/``customer_id`` set to null); their
   duplicate group goes;
3. their values (emails, phones, full names, record and golden ids) are masked in the audit log's
   details, in quarantine values, and in dead-letter texts; their contact quarantine entries go.

The raw tables mirror the CRMs and are re-synced from them: erasing at the CRM is its owner's job.
What this module guarantees is that the person never comes back into canonical or shareable data:
every canonical build drops suppressed records, and also any *new* record carrying an erased email
(a re-import), which it then adds to the suppression list.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from sync_platform.canonical.history import HISTORY
from sync_platform.canonical.mapping.loader import load_mappings
from sync_platform.canonical.mapping.normalizers import NORMALIZERS
from sync_platform.canonical.protection import SHAREABLE_TABLE, read_table
from sync_platform.core.sql import Fragment, ident, idents, join, placeholders, quoted, sql
from sync_platform.core.warehouse import Warehouse
from sync_platform.ingest.history import SCHEMA as HISTORY_SCHEMA
from sync_platform.ingest.history import history_table
from sync_platform.ingest.raw_schema import RAW_TABLES
from sync_platform.security.encryption import FieldCipher, field_cipher, lookup_hash, lookup_key

log = logging.getLogger(__name__)

MASK = "[erased]"
ID_SUBSTRING_MIN = 8  # shorter ids could be part of any number
REQUESTS, SUBJECTS = "ops.erasure_requests", "ops.erasure_subjects"
_REQUESTS, _SUBJECTS = ident(*REQUESTS.split(".")), ident(*SUBJECTS.split("."))
_QUARANTINE = ident("ops", "quarantine")
_DDL = (
    "CREATE SCHEMA IF NOT EXISTS ops",
    f"""CREATE TABLE IF NOT EXISTS {REQUESTS} (
        id VARCHAR PRIMARY KEY,
        requested_at TIMESTAMP WITH TIME ZONE NOT NULL,
        subject VARCHAR NOT NULL,
        email_hash VARCHAR,
        source_system VARCHAR,
        source_id VARCHAR,
        records_erased INTEGER NOT NULL,
        interactions_unlinked INTEGER NOT NULL,
        audit_entries_masked INTEGER NOT NULL,
        quarantine_entries INTEGER NOT NULL,
        dead_letters_masked INTEGER NOT NULL
    )""",
    f"""CREATE TABLE IF NOT EXISTS {SUBJECTS} (
        request_id VARCHAR NOT NULL,
        source_system VARCHAR,
        source_id VARCHAR,
        email_hash VARCHAR,
        added_at TIMESTAMP WITH TIME ZONE NOT NULL
    )""",
)
_KEYS = {"source_system": pl.String, "source_id": pl.String}


def normalize_email(email: str) -> str | None:
    """The email as the mappings store it (``normalize: email``), so hashes match the data."""
    return pl.select(NORMALIZERS["email"](pl.lit(email, pl.String))).item()


def ensure_tables(warehouse: Warehouse) -> None:
    with warehouse.connect() as conn:
        cur = conn.cursor()
        for statement in _DDL:
            cur.execute(statement)


@dataclass
class ErasureList:
    """The suppression list, as a canonical build applies it."""

    records: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_KEYS))
    email_hashes: dict[str, str] = field(default_factory=dict)  # hash -> request id
    key: bytes | None = None
    caught: list[tuple[str, str, str, str]] = field(default_factory=list)  # request, system, id, hash

    @classmethod
    def load(cls, warehouse: Warehouse) -> ErasureList:
        if not warehouse.table_exists("ops", "erasure_subjects"):
            return cls()
        rows = warehouse.query(
            sql("SELECT request_id, source_system, source_id, email_hash FROM {table}", table=_SUBJECTS)
        )
        records = pl.DataFrame(
            [(s, i) for _, s, i, _ in rows if s is not None and i is not None], schema=_KEYS, orient="row"
        ).unique()
        hashes = {h: r for r, _, _, h in rows if h}
        return cls(records, hashes, lookup_key() if hashes else None)

    def __len__(self) -> int:
        return self.records.height + len(self.email_hashes)

    def exclude(self, entity: str, frame: pl.DataFrame) -> pl.DataFrame:
        """Contacts: drop erased records and any record with an erased email (remembered in
        :attr:`caught`). Interactions: keep the case, drop its link to an erased contact."""
        if not len(self) or frame.is_empty():
            return frame
        if entity == "contact":
            frame = frame.join(self.records, on=["source_system", "source_id"], how="anti")
            if self.email_hashes and "email" in frame.columns:
                key = self.key
                assert key is not None
                hashed = frame["email"].map_elements(lambda e: lookup_hash(e, key), return_dtype=pl.String)
                hit = hashed.is_in(list(self.email_hashes)).fill_null(False)
                for system, source_id, h in (
                    frame.select("source_system", "source_id")
                    .with_columns(hashed.alias("h"))
                    .filter(hit)
                    .iter_rows()
                ):
                    self.caught.append((self.email_hashes[h], system, source_id, h))
                frame = frame.filter(~hit)
            return frame
        if entity == "interaction" and "contact_source_id" in frame.columns:
            erased = self.records.select(
                "source_system",
                pl.col("source_id").alias("contact_source_id"),
                pl.lit(True).alias("__erased"),
            )
            frame = frame.join(
                erased, on=["source_system", "contact_source_id"], how="left", maintain_order="left"
            )
            return frame.with_columns(
                pl.when(pl.col("__erased"))
                .then(None)
                .otherwise(pl.col("contact_source_id"))
                .alias("contact_source_id")
            ).drop("__erased")
        return frame

    def remember_caught(self, warehouse: Warehouse) -> int:
        """Add re-created records that an erased email matched to the suppression list."""
        if not self.caught:
            return 0
        now = datetime.now(UTC)
        with warehouse.connect() as conn:
            conn.cursor().executemany(_insert_subjects(warehouse), [(*row, now) for row in self.caught])
        count, self.caught = len(self.caught), []
        log.info(
            "erasure: %d re-created contact record(s) matched an erased email and were suppressed", count
        )
        return count


@dataclass(frozen=True)
class ErasureOutcome:
    request_id: str
    records_erased: int
    interactions_unlinked: int
    audit_entries_masked: int
    quarantine_entries: int
    dead_letters_masked: int


def erase(
    warehouse: Warehouse,
    *,
    email: str | None = None,
    source_system: str | None = None,
    source_id: str | None = None,
    cipher: FieldCipher | None = None,
) -> ErasureOutcome:
    """Carry out one erasure request (see the module docstring). Needs the field key to find the
    person's rows, and the lookup key to hash emails."""
    if (email is None) == (source_id is None) or (source_id is not None and not source_system):
        raise ValueError("give an email, or a source system and a record id")
    started = datetime.now(UTC)
    key = lookup_key(create_if_missing=True)
    wanted = normalize_email(email) if email is not None else None
    if email is not None and not wanted:
        raise ValueError("the email is empty")
    rows = _person_rows(warehouse, wanted, source_system, source_id, cipher)
    keys = sorted(
        {(r["source_system"], r["source_id"]) for r in rows.iter_rows(named=True)}
        | ({(source_system, source_id)} if source_id is not None else set())
    )
    emails = {e for e in rows["email"].drop_nulls().to_list()} | ({wanted} if wanted else set())
    hashes = sorted({lookup_hash(e, key) for e in emails})
    golden = sorted(set(rows["customer_id"].drop_nulls().to_list())) if "customer_id" in rows.columns else []
    values = _values_to_mask(warehouse, rows, keys, emails, golden)

    request_id = str(uuid.uuid4())
    ensure_tables(warehouse)
    now = datetime.now(UTC)
    with warehouse.connect() as conn:
        cur = conn.cursor()
        subjects = [(request_id, s, i, None, now) for s, i in keys] + [
            (request_id, None, None, h, now) for h in hashes
        ]
        cur.executemany(_insert_subjects(warehouse), subjects)
    erased, unlinked = _remove_from_canonical(warehouse, keys, golden)
    _forget_raw_history(warehouse, keys)
    audit_masked = mask_audit_log(warehouse, values)
    quarantined = _scrub_quarantine(warehouse, keys, values)
    dead = _mask_columns(
        warehouse,
        "ops",
        "dead_letters",
        ("error", "request", "payload_ref"),
        values.substitutions(json=False),
        exact=values.short_ids,
    )
    dead += _forget_dead_letter_records(warehouse, keys)
    outcome = ErasureOutcome(request_id, erased, unlinked, audit_masked, quarantined, dead)
    warehouse.query(
        sql(
            "INSERT INTO {table} (id, requested_at, subject, email_hash, source_system, source_id, "
            "records_erased, interactions_unlinked, audit_entries_masked, quarantine_entries, "
            "dead_letters_masked) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            table=_REQUESTS,
        ),
        (
            request_id,
            started,
            "email" if email is not None else "record",
            lookup_hash(wanted, key) if wanted else None,
            source_system if source_id is not None else None,
            source_id,
            erased,
            unlinked,
            audit_masked,
            quarantined,
            dead,
        ),
    )
    _audit(warehouse, outcome, started, "email" if email is not None else "record")
    return outcome


def _insert_subjects(warehouse: Warehouse) -> str:
    return sql(
        "INSERT INTO {table} (request_id, source_system, source_id, email_hash, added_at) VALUES ({values})",
        table=_SUBJECTS,
        values=placeholders(5, warehouse.placeholder),
    )


def _person_rows(
    warehouse: Warehouse,
    email: str | None,
    source_system: str | None,
    source_id: str | None,
    cipher: FieldCipher | None,
) -> pl.DataFrame:
    """The person's canonical contact rows, decrypted: the match, widened by golden id."""
    if not warehouse.table_exists("canonical", "contacts"):
        return pl.DataFrame(schema={**_KEYS, "email": pl.String, "customer_id": pl.String})
    contacts = read_table(warehouse, "contacts", decrypt=True, cipher=cipher or field_cipher())
    if email is not None:
        matched = contacts.filter(pl.col("email") == email)
    else:
        matched = contacts.filter(
            (pl.col("source_system") == source_system) & (pl.col("source_id") == source_id)
        )
    if "customer_id" in contacts.columns and matched.height:
        return contacts.filter(
            pl.col("customer_id").is_in(matched["customer_id"].drop_nulls().implode())
            | pl.struct("source_system", "source_id").is_in(
                matched.select(pl.struct("source_system", "source_id")).to_series().implode()
            )
        )
    return matched


@dataclass(frozen=True)
class MaskValues:
    """What to mask: ``texts`` wherever they occur (emails, phones, names, long ids); ``short_ids``
    (HubSpot's numeric ids) only as whole values or JSON strings, never inside other numbers."""

    texts: tuple[str, ...]
    short_ids: tuple[str, ...]

    def substitutions(self, json: bool) -> list[tuple[str, str]]:
        pairs = [(t, MASK) for t in self.texts]
        if json:
            pairs += [(f'"{i}"', f'"{MASK}"') for i in self.short_ids]
        return pairs


def _values_to_mask(
    warehouse: Warehouse, rows: pl.DataFrame, keys: list[tuple[str, str]], emails: set[str], golden: list[str]
) -> MaskValues:
    """Every text by which the person could appear in operational tables: clear canonical values,
    the raw CRM spellings of email and phone, full names, record and golden ids."""
    texts = set(emails)
    if "phone" in rows.columns:
        texts |= set(rows["phone"].drop_nulls().to_list())
    if {"first_name", "last_name"} <= set(rows.columns):
        texts |= {
            f"{f} {last}" for f, last in rows.select("first_name", "last_name").iter_rows() if f and last
        }
    texts |= _raw_values(warehouse, keys)
    ids = {i for _, i in keys} | set(golden)
    texts = {t for t in texts if t and len(t) >= 5} | {i for i in ids if len(i) >= ID_SUBSTRING_MIN}
    short = {i for i in ids if i and len(i) < ID_SUBSTRING_MIN}
    # longest first, so a value is never half-masked by a shorter one inside it
    return MaskValues(tuple(sorted(texts, key=len, reverse=True)), tuple(sorted(short)))


def _raw_values(warehouse: Warehouse, keys: list[tuple[str, str]]) -> set[str]:
    found: set[str] = set()
    for crm, mapping in load_mappings().items():
        ids = [i for s, i in keys if s == crm]
        spec = mapping.entities.get("contact")
        if not ids or spec is None or not warehouse.table_exists(f"raw_{crm}", spec.table):
            continue
        columns = [
            spec.fields[f].source for f in ("email", "phone") if f in spec.fields and spec.fields[f].source
        ]
        if not columns:
            continue
        statement = sql(
            "SELECT {columns} FROM {table} WHERE {key} IN ({marks})",
            columns=idents(columns),
            table=ident(f"raw_{crm}", spec.table),
            key=ident(spec.source_id),
            marks=placeholders(len(ids)),
        )
        for row in warehouse.query(statement, ids):
            found |= {str(v).strip() for v in row if v is not None and str(v).strip()}
    return found


def _remove_from_canonical(
    warehouse: Warehouse, keys: list[tuple[str, str]], golden: list[str]
) -> tuple[int, int]:
    """Delete the person's rows from the canonical tables and the kept builds (a restore must not
    bring them back), and unlink the cases that named them."""
    erased = unlinked = 0
    p = placeholders(1, warehouse.placeholder)
    with warehouse.connect() as conn:
        cur = conn.cursor()
        for schema, table in (
            ("canonical", "contacts"),
            ("canonical", SHAREABLE_TABLE),
            (HISTORY, "contacts"),
        ):
            if _exists(cur, p, schema, table) and keys:
                target = ident(schema, table)
                before = _count(cur, target)
                cur.executemany(
                    sql(
                        "DELETE FROM {table} WHERE source_system = {p} AND source_id = {p}", table=target, p=p
                    ),
                    keys,
                )
                removed = before - _count(cur, target)
                erased = removed if (schema, table) == ("canonical", "contacts") else erased
        for schema in ("canonical", HISTORY):
            if not (_exists(cur, p, schema, "interactions") and keys):
                continue
            target = ident(schema, "interactions")
            if schema == "canonical":
                for system, source_id in keys:
                    cur.execute(
                        sql(
                            "SELECT count(*) FROM {table} WHERE source_system = {p} "
                            "AND contact_source_id = {p}",
                            table=target,
                            p=p,
                        ),
                        (system, source_id),
                    )
                    unlinked += cur.fetchone()[0]
            cur.executemany(
                sql(
                    "UPDATE {table} SET contact_source_id = NULL, "
                    "customer_id = NULL WHERE source_system = {p} AND contact_source_id = {p}",
                    table=target,
                    p=p,
                ),
                keys,
            )
        if _exists(cur, p, "canonical", "duplicate_groups") and golden:
            cur.executemany(
                sql(
                    "DELETE FROM canonical.duplicate_groups WHERE entity = 'contacts' AND golden_id = {p}",
                    p=p,
                ),
                [(g,) for g in golden],
            )
    return erased, unlinked


def _forget_raw_history(warehouse: Warehouse, keys: list[tuple[str, str]]) -> int:
    """Drop the person's prior raw versions: the raw table mirrors the CRM (its owner erases there),
    but the versions kept beside it are ours to forget. Returns rows deleted."""
    removed = 0
    mappings = load_mappings()
    for crm, source_id in keys:
        table = mappings[crm].entity("contact").table if crm in mappings else ""
        raw = RAW_TABLES.get(crm, {}).get(table)
        if raw is None or not warehouse.table_exists(HISTORY_SCHEMA, history_table(crm, raw.table)):
            continue
        target = ident(HISTORY_SCHEMA, history_table(crm, raw.table))
        before = warehouse.query(sql("SELECT count(*) FROM {table}", table=target))[0][0]
        warehouse.query(
            sql(
                "DELETE FROM {table} WHERE CAST({key} AS VARCHAR) = ?",
                table=target,
                key=quoted(raw.key_column),
            ),
            (source_id,),
        )
        removed += before - warehouse.query(sql("SELECT count(*) FROM {table}", table=target))[0][0]
    return removed


def mask_audit_log(warehouse: Warehouse, values: MaskValues) -> int:
    """Mask the person in ``ops.audit_log.details`` (JSON text); entries touched.

    Uses ``AuditLog.mask_subject`` when the audit module provides it (given the values that are
    safe to mask as substrings), else a guarded UPDATE of the table if it exists.
    """
    try:
        from sync_platform.ops.audit import AuditLog  # type: ignore[import-not-found]
    except ImportError:
        AuditLog = None
    if AuditLog is not None and hasattr(AuditLog, "mask_subject"):
        return int(AuditLog(warehouse).mask_subject(list(values.texts)) or 0)
    return _mask_columns(warehouse, "ops", "audit_log", ("details",), values.substitutions(json=True))


def _forget_dead_letter_records(warehouse: Warehouse, keys: list[tuple[str, str]]) -> int:
    """The person's record-level dead letters: their stored payloads go (masked PII, but the rest of
    the record, title, company, account, still describes them) and the entries keep no record id."""
    if not keys or not warehouse.table_exists("ops", "dead_letters"):
        return 0
    letters, payloads = ident("ops", "dead_letters"), ident("ops", "dead_letter_payloads")
    has_payloads = warehouse.table_exists("ops", "dead_letter_payloads")
    touched = 0
    with warehouse.connect() as conn:
        cur = conn.cursor()
        p = placeholders(1, warehouse.placeholder)
        for system, record_id in keys:
            if has_payloads:
                cur.execute(
                    sql("DELETE FROM {t} WHERE crm = {p} AND record_id = {p}", t=payloads, p=p),
                    (system, record_id),
                )
            cur.execute(
                sql("SELECT count(*) FROM {t} WHERE crm = {p} AND record_id = {p}", t=letters, p=p),
                (system, record_id),
            )
            found = int(cur.fetchone()[0])
            if found:
                cur.execute(
                    sql(
                        "UPDATE {t} SET record_id = {p}, payload_ref = NULL "
                        "WHERE crm = {p} AND record_id = {p}",
                        t=letters,
                        p=p,
                    ),
                    (MASK, system, record_id),
                )
            touched += found
    return touched


def _mask_columns(
    warehouse: Warehouse,
    schema: str,
    table: str,
    columns: Iterable[str],
    substitutions: list[tuple[str, str]],
    exact: Iterable[str] = (),
) -> int:
    """Replace each needle by its mask inside text ``columns``, and whole values equal to one of
    ``exact``; returns rows touched."""
    exact = list(exact)
    if not (substitutions or exact) or not warehouse.table_exists(schema, table):
        return 0
    p = placeholders(1, warehouse.placeholder)
    target = ident(schema, table)
    with warehouse.connect() as conn:
        cur = conn.cursor()
        present = set(_columns(cur, p, schema, table))
        columns = [ident(c) for c in columns if c in present]
        if not columns:
            return 0
        tests = [
            (sql("strpos({c}, {p}) > 0", c=c, p=p), needle) for c in columns for needle, _ in substitutions
        ]
        tests += [(sql("{c} = {p}", c=c, p=p), value) for c in columns for value in exact]
        cur.execute(
            sql(
                "SELECT count(*) FROM {table} WHERE {tests}",
                table=target,
                tests=join([t for t, _ in tests], " OR "),
            ),
            tuple(v for _, v in tests),
        )
        touched = int(cur.fetchone()[0])
        if touched:
            for c in columns:
                for needle, mask in substitutions:
                    cur.execute(
                        sql(
                            "UPDATE {table} SET {c} = replace({c}, {p}, {p}) WHERE strpos({c}, {p}) > 0",
                            table=target,
                            c=c,
                            p=p,
                        ),
                        (needle, mask, needle),
                    )
                for value in exact:
                    cur.execute(
                        sql("UPDATE {table} SET {c} = {p} WHERE {c} = {p}", table=target, c=c, p=p),
                        (MASK, value),
                    )
    return touched


def _scrub_quarantine(warehouse: Warehouse, keys: list[tuple[str, str]], values: MaskValues) -> int:
    """Drop the person's contact entries; mask their values wherever else they appear (e.g. the
    contact id in a case's broken-link entry)."""
    if not warehouse.table_exists("ops", "quarantine"):
        return 0
    p = placeholders(1, warehouse.placeholder)
    with warehouse.connect() as conn:
        cur = conn.cursor()
        before = _count(cur, _QUARANTINE)
        if keys:
            cur.executemany(
                sql(
                    "DELETE FROM {table} WHERE entity = 'contact' AND source_system = {p} "
                    "AND source_id = {p}",
                    table=_QUARANTINE,
                    p=p,
                ),
                keys,
            )
        removed = before - _count(cur, _QUARANTINE)
    return removed + _mask_columns(
        warehouse,
        "ops",
        "quarantine",
        ("value_masked",),
        values.substitutions(json=False),
        exact=values.short_ids,
    )


def _audit(warehouse: Warehouse, outcome: ErasureOutcome, started: datetime, subject: str) -> None:
    try:
        from sync_platform.ops.audit import AuditEntry, AuditLog  # type: ignore[import-not-found]
    except ImportError:
        return  # TODO(audit): the audit log lands with its own worker; record erasures there
    AuditLog(warehouse).record(
        AuditEntry(
            run_id=None,
            step="erasure",
            crm=None,
            entity="contact",
            started_at=started,
            ended_at=datetime.now(UTC),
            deleted=outcome.records_erased,
            updated=outcome.interactions_unlinked,
            details={
                "request_id": outcome.request_id,
                "subject": subject,
                "audit_entries_masked": outcome.audit_entries_masked,
                "quarantine_entries": outcome.quarantine_entries,
                "dead_letters_masked": outcome.dead_letters_masked,
            },
        )
    )


def _exists(cur, p: Fragment, schema: str, table: str) -> bool:
    cur.execute(
        sql(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = {p} AND table_name = {p}",
            p=p,
        ),
        (schema, table),
    )
    return bool(cur.fetchone()[0])


def _columns(cur, p: Fragment, schema: str, table: str) -> list[str]:
    cur.execute(
        sql(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = {p} "
            "AND table_name = {p}",
            p=p,
        ),
        (schema, table),
    )
    return [r[0] for r in cur.fetchall()]


def _count(cur, table: Fragment) -> int:
    cur.execute(sql("SELECT count(*) FROM {table}", table=table))
    return int(cur.fetchone()[0])
