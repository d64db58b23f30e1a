"""Check mappings against the live CRM: does every field a mapping reads exist there, and is it readable?

The load-time check (``loader``) knows only the columns our sources ask for; an org can still lack
one (a custom field not installed, a HubSpot property deleted) or hide it (field-level security).
This asks each CRM's own metadata API, through the sources' HTTP client and token providers:

- Salesforce ``GET /services/data/vXX.X/sobjects/{Object}/describe``: ``fields[].name``; a field the
  integration user may not read is absent from describe; writable = ``updateable`` or ``createable``;
- HubSpot ``GET /crm/v3/properties/{object}``: ``results[].name``; writable = not
  ``modificationMetadata.readOnlyValue``;
- Dynamics ``EntityDefinitions(LogicalName='contact')/Attributes``: ``LogicalName``,
  ``IsValidForRead``, ``IsValidForUpdate``; a Web API lookup column ``_x_value`` is attribute ``x``.

Writability is reported (``CrmField.writable``) for the write-back issue; only readability fails a
check today.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from collections.abc import Mapping as MappingOf
from dataclasses import dataclass
from typing import Any

from sync_platform.canonical.mapping.loader import Mapping
from sync_platform.core.errors import CrmRequestError
from sync_platform.ingest.raw_schema import RawTable, raw_column, raw_table
from sync_platform.ingest.sources.auth import OAuthToken, StaticToken
from sync_platform.ingest.sources.dynamics.settings import LOGICAL_NAMES
from sync_platform.ingest.sources.http import CrmHttpClient, HttpPolicy
from sync_platform.ingest.sources.salesforce.settings import API_VERSION

CRM_LABELS = {"salesforce": "Salesforce", "hubspot": "HubSpot", "dynamics": "Dynamics"}
_LOOKUP_VALUE = re.compile(r"^_(\w+)_value$")


@dataclass(frozen=True)
class CrmField:
    name: str
    readable: bool
    writable: bool


@dataclass(frozen=True)
class LiveProblem:
    file: str
    key: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.problem}"


@dataclass
class LiveReport:
    problems: list[LiveProblem]
    checked: dict[str, int]  # crm -> source fields checked
    skipped: dict[str, str]  # crm -> why it was not checked


class MetadataReader:
    """One CRM's field metadata, fetched once per object."""

    def __init__(self, crm: str, client: CrmHttpClient, base: str) -> None:
        self.crm, self.client, self.base = crm, client, base.rstrip("/")
        self._cache: dict[str, dict[str, CrmField]] = {}

    def fields(self, crm_object: str) -> dict[str, CrmField]:
        if crm_object not in self._cache:
            self._cache[crm_object] = getattr(self, f"_{self.crm}")(crm_object)
        return self._cache[crm_object]

    def _salesforce(self, sobject: str) -> dict[str, CrmField]:
        body = self.client.get_json(f"{self.base}/services/data/v{API_VERSION}/sobjects/{sobject}/describe")
        return {
            f["name"]: CrmField(f["name"], True, bool(f.get("updateable") or f.get("createable")))
            for f in body.get("fields", [])
        }

    def _hubspot(self, object_type: str) -> dict[str, CrmField]:
        body = self.client.get_json(f"{self.base}/crm/v3/properties/{object_type}")
        return {
            p["name"]: CrmField(
                p["name"],
                not p.get("archived", False),
                not (p.get("modificationMetadata") or {}).get("readOnlyValue", False),
            )
            for p in body.get("results", [])
        }

    def _dynamics(self, entity_set: str) -> dict[str, CrmField]:
        logical = LOGICAL_NAMES[entity_set]
        body = self.client.get_json(
            f"{self.base}/EntityDefinitions(LogicalName='{logical}')/Attributes",
            params={"$select": "LogicalName,IsValidForRead,IsValidForUpdate,IsValidForCreate"},
        )
        return {
            a["LogicalName"]: CrmField(
                a["LogicalName"],
                bool(a.get("IsValidForRead")),
                bool(a.get("IsValidForUpdate") or a.get("IsValidForCreate")),
            )
            for a in body.get("value", [])
        }

    def lookup(self, crm_object: str, crm_field: str) -> CrmField | None:
        fields = self.fields(crm_object)
        if self.crm == "dynamics":
            match = _LOOKUP_VALUE.match(crm_field)
            return fields.get(match.group(1) if match else crm_field)
        return fields.get(crm_field)


def metadata_reader(crm: str, settings: MappingOf[str, Any]) -> MetadataReader:
    """A reader over the sources' own client and token provider, built from ``connections.crm_settings``."""
    policy = HttpPolicy(max_attempts=3, timeout=30.0)
    if crm == "salesforce":
        verify = settings.get("ca_file") or True
        base = str(settings["instance_url"]).rstrip("/")
        auth = OAuthToken(
            "salesforce",
            settings.get("token_url") or f"{base}/services/oauth2/token",
            settings["client_id"],
            settings["client_secret"],
            verify=verify,
        )
        return MetadataReader(crm, CrmHttpClient(crm, auth, policy, verify=verify), base)
    if crm == "hubspot":
        return MetadataReader(
            crm,
            CrmHttpClient(crm, StaticToken(crm, settings["access_token"]), policy),
            settings.get("host") or "https://api.hubapi.com",
        )
    auth = OAuthToken(
        "dynamics",
        settings["token_url"],
        settings["client_id"],
        settings["client_secret"],
        scope=settings.get("scope"),
    )
    return MetadataReader(crm, CrmHttpClient(crm, auth, policy), settings["api_url"])


def _source_fields(mapping: Mapping) -> Iterator[tuple[str, str, RawTable, str]]:
    """(key path, raw column, raw table, CRM field) for every column the mapping reads from the CRM."""
    for entity, spec in mapping.entities.items():
        table = raw_table(mapping.crm, spec.table)
        if table is None:
            continue
        by_column = {raw_column(name): name for name in table.fields}
        at = f"entities.{entity}"
        keyed = [(f"{at}.source_id", spec.source_id), (f"{at}.deleted_at", spec.deleted_at)]
        keyed += [(f"{at}.fields.{name}.source", f.source) for name, f in spec.fields.items() if f.source]
        for key, column in keyed:
            if column in by_column:  # else a column the source adds itself (deleted_at, id, archived)
                yield key, column, table, by_column[column]


def check_mapping(mapping: Mapping, reader: MetadataReader) -> tuple[list[LiveProblem], int]:
    """Problems of one mapping against its CRM's metadata, and how many source fields were checked."""
    problems, checked = [], 0
    label = CRM_LABELS[mapping.crm]
    for key, column, table, crm_field in _source_fields(mapping):
        checked += 1
        try:
            found = reader.lookup(table.crm_object, crm_field)
        except CrmRequestError as exc:
            problems.append(
                LiveProblem(mapping.file, key, f"cannot read {label} metadata of {table.crm_object}: {exc}")
            )
            continue
        where = f"{label} {table.crm_object}"
        if found is None:
            problems.append(
                LiveProblem(
                    mapping.file,
                    key,
                    f"{where} has no field {crm_field!r} (raw column {column!r}): not in the CRM's metadata",
                )
            )
        elif not found.readable:
            problems.append(
                LiveProblem(
                    mapping.file, key, f"{where} field {crm_field!r} is not readable by the integration user"
                )
            )
    return problems, checked


def check_live(
    mappings: MappingOf[str, Mapping],
    settings_of: Callable[[str], MappingOf[str, Any] | None] | None = None,
    also: Callable[[Mapping, MetadataReader], list[LiveProblem]] | None = None,
) -> LiveReport:
    """Every mapping against its CRM; CRMs without settings are skipped (and say so). ``also``
    checks more against the same metadata (write-back's writability, from the layer above)."""
    if settings_of is None:
        from sync_platform.ingest.connections import crm_settings as settings_of
    report = LiveReport([], {}, {})
    for crm, mapping in sorted(mappings.items()):
        settings = settings_of(crm)
        if settings is None:
            report.skipped[crm] = "not configured (no sandbox URL or sources.<crm> credentials)"
            continue
        reader = metadata_reader(crm, settings)
        problems, checked = check_mapping(mapping, reader)
        report.problems += problems + (also(mapping, reader) if also else [])
        report.checked[crm] = checked
    return report
