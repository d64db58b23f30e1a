"""CRM writers: one :class:`Write` per record in, one :class:`WriteResult` per record out.

Each writer sends through the sources' own HTTP client (``ingest.connections.crm_client``), so
write-back follows the same retries, 429 backoff, token refresh and budget reserve as ingestion:

- Salesforce: sObject Collections, 200 records a call: updates by ``Id`` through
  ``PATCH /composite/sobjects``, upserts through ``PATCH /composite/sobjects/{obj}/{ExternalIdField}``
  (``allOrNone: false``: a refused record fails alone);
- HubSpot: ``batch/update`` and ``batch/upsert`` (``idProperty``), 100 inputs a call; a 207's
  errors name their inputs by id; a batch refused whole for an invalid value (a 400) is sent again
  one record at a time, so the good ones land and each bad one gets its own reason;
- Dynamics: one ``PATCH`` per record (no ``$batch``): by GUID with ``If-Match: *`` (an update
  never creates), or by alternate key without it (a true upsert).

A record the CRM refuses (a 4xx for it) is a result with ``ok=False`` and the CRM's reason; a
failure of a whole call that survives the retries raises ``CrmRequestError``. Field values never
reach a message, log line or repr; record ids and the CRM's error codes and messages do.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from sync_platform.core.config import CrmSyncConfig
from sync_platform.core.errors import CrmRequestError, ErrorKind
from sync_platform.ingest.sources.dynamics.helpers import guid
from sync_platform.ingest.sources.dynamics.settings import OBJECTS as DYNAMICS_OBJECTS
from sync_platform.ingest.sources.http import CrmHttpClient, RequestStats
from sync_platform.ingest.sources.salesforce.settings import API_VERSION
from sync_platform.outbound.writes import CrmWriter, Write, WriteResult

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # sObject, field, entity set and column names
_HUBSPOT_OBJECT = re.compile(r"^[A-Za-z0-9_-]+$")  # "contacts", "0-1", "p_custom"
_ENTITY_ID = re.compile(r"\(([0-9a-fA-F-]{36})\)\s*$")  # the GUID ending an OData-EntityId
_UNADDRESSABLE = re.compile(r"[/<>*%&:\\?+#]")  # Dataverse refuses these in a key value in the URL
_DYNAMICS_KEYS = {entity_set: pk for entity_set, pk, _ in DYNAMICS_OBJECTS.values()}


def _refused(write: Write, error: str, status: int | None = None, **details: Any) -> WriteResult:
    return WriteResult(write.ref, False, write.record_id, False, status, error, details)


def _shape_problem(write: Write, object_name: re.Pattern[str]) -> str | None:
    """Why ``write`` cannot be sent at all (before any call), or None."""
    if (write.record_id is None) == (write.upsert_key is None):
        return "a write needs exactly one of record_id (update) and upsert_key (create or update)"
    if not object_name.fullmatch(write.crm_object or ""):
        return f"not a valid object name: {write.crm_object!r}"
    if write.upsert_key is not None:
        key_field, value = write.upsert_key
        if not _NAME.fullmatch(key_field or ""):
            return f"not a valid unique field name: {key_field!r}"
        if not isinstance(value, str) or not value:
            return "the upsert key has no value"
    elif not isinstance(write.record_id, str) or not write.record_id:
        return "the record id is empty"
    return None


def _screened(
    writes: Sequence[Write], object_name: re.Pattern[str]
) -> tuple[dict[int, WriteResult], list[Write]]:
    """(the refusals of writes that cannot be sent, the writes that can)."""
    refused: dict[int, WriteResult] = {}
    sendable = []
    for w in writes:
        problem = _shape_problem(w, object_name)
        if problem:
            refused[id(w)] = _refused(w, problem)
        else:
            sendable.append(w)
    return refused, sendable


def _chunks(items: Sequence[Write], size: int, key: Callable[[Write], str]) -> Iterator[list[Write]]:
    """Consecutive runs of at most ``size`` writes, none naming the same record twice (a CRM refuses
    a batch with a repeated id; the later write then lands in a later call, after the earlier one)."""
    chunk: list[Write] = []
    seen: set[str] = set()
    for write in items:
        k = key(write)
        if len(chunk) == size or k in seen:
            yield chunk
            chunk, seen = [], set()
        chunk.append(write)
        seen.add(k)
    if chunk:
        yield chunk


def _grouped(writes: Sequence[Write]) -> dict[tuple[str, str | None], list[Write]]:
    """Writes by (object, unique field): updates under ``None``, upserts under their key field."""
    groups: dict[tuple[str, str | None], list[Write]] = {}
    for write in writes:
        field = write.upsert_key[0] if write.upsert_key else None
        groups.setdefault((write.crm_object, field), []).append(write)
    return groups


def _distinct(writes: Sequence[Write]) -> list[Write]:
    """The writes as distinct objects: results are matched by object, and a caller may pass one twice."""
    return [replace(w) for w in writes]


def _in_order(writes: Sequence[Write], results: dict[int, WriteResult]) -> list[WriteResult]:
    return [results[id(w)] for w in writes]


# ---------------------------------------------------------------------------------- Salesforce
class SalesforceWriter:
    crm = "salesforce"
    batch_size = 200  # sObject Collections: 200 records per call

    def __init__(self, client: CrmHttpClient, base: str, api_version: str = API_VERSION) -> None:
        self.client = client
        self.url = f"{base.rstrip('/')}/services/data/v{api_version}/composite/sobjects"

    def write(self, writes: Sequence[Write]) -> list[WriteResult]:
        writes = _distinct(writes)
        results, sendable = _screened(writes, _NAME)
        for (sobject, ext_field), group in _grouped(sendable).items():
            if ext_field is None:
                for chunk in _chunks(group, self.batch_size, lambda w: str(w.record_id)):
                    records = [
                        {**w.values, "attributes": {"type": sobject}, "Id": w.record_id} for w in chunk
                    ]
                    results.update(self._send(self.url, chunk, records))
            else:
                url = f"{self.url}/{sobject}/{ext_field}"
                for chunk in _chunks(group, self.batch_size, _upsert_value):
                    records = [
                        {**w.values, "attributes": {"type": sobject}, ext_field: w.upsert_key[1]}  # type: ignore[index]
                        for w in chunk
                    ]
                    results.update(self._send(url, chunk, records))
        return _in_order(writes, results)

    def _send(self, url: str, chunk: list[Write], records: list[dict]) -> dict[int, WriteResult]:
        try:
            response = self.client.request("PATCH", url, json={"allOrNone": False, "records": records})
        except CrmRequestError as exc:
            if exc.kind != ErrorKind.CLIENT_ERROR:
                raise
            return {id(w): _refused(w, exc.detail, exc.status) for w in chunk}  # the call refused them all
        answers = response.json()
        if (
            not isinstance(answers, list)
            or len(answers) != len(chunk)
            or not all(isinstance(a, dict) for a in answers)
        ):
            raise CrmRequestError(
                self.crm,
                ErrorKind.PARSE,
                f"sObject Collections answered {len(answers) if isinstance(answers, list) else 'no'} "
                f"result(s) for {len(chunk)} record(s)",
                method="PATCH",
                path=url.split("?", 1)[0],
                status=response.status_code,
            )
        out = {}
        for w, answer in zip(chunk, answers, strict=True):
            record_id = answer.get("id") or w.record_id
            if answer.get("success"):
                created = bool(answer.get("created", False))
                out[id(w)] = WriteResult(w.ref, True, record_id, created, response.status_code)
                continue
            errors = [
                {
                    "statusCode": e.get("statusCode"),
                    "message": e.get("message"),
                    "fields": e.get("fields", []),
                }
                for e in answer.get("errors") or []
                if isinstance(e, dict)
            ]
            reason = (
                "; ".join(f"{e['statusCode']}: {e['message']}" for e in errors) or "refused, no reason given"
            )
            out[id(w)] = WriteResult(
                w.ref, False, record_id, False, response.status_code, reason, {"errors": errors}
            )
        return out


def _upsert_value(write: Write) -> str:
    """How a CRM matches unique values (trimmed, case-insensitive): two in one call are the same record."""
    return write.upsert_key[1].strip().casefold() if write.upsert_key else ""


# ---------------------------------------------------------------------------------- HubSpot
def _property(value: Any) -> str:
    """HubSpot property values are strings; an empty one clears the property."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _validation_refusal(exc: CrmRequestError) -> bool:
    """A whole batch refused for what one of its inputs holds (HubSpot names no input): worth
    sending its records one by one."""
    return exc.kind == ErrorKind.CLIENT_ERROR and exc.status == 400 and "VALIDATION_ERROR" in exc.detail


class HubSpotWriter:
    crm = "hubspot"
    batch_size = 100  # batch/update and batch/upsert: 100 inputs per call

    def __init__(self, client: CrmHttpClient, base: str) -> None:
        self.client = client
        self.base = f"{base.rstrip('/')}/crm/v3/objects"

    def write(self, writes: Sequence[Write]) -> list[WriteResult]:
        writes = _distinct(writes)
        results, sendable = _screened(writes, _HUBSPOT_OBJECT)
        for (obj, id_property), group in _grouped(sendable).items():
            key = _upsert_value if id_property else (lambda w: str(w.record_id).strip())
            for chunk in _chunks(group, self.batch_size, key):
                results.update(self._batch(obj, id_property, chunk))
        return _in_order(writes, results)

    # -- one call ------------------------------------------------------------------------
    def _input(self, w: Write) -> dict:
        properties = {name: _property(v) for name, v in w.values.items()}
        if w.upsert_key is None:
            return {"id": str(w.record_id).strip(), "properties": properties}
        field, value = w.upsert_key
        return {"id": value, "idProperty": field, "properties": properties}

    def _batch(self, obj: str, id_property: str | None, chunk: list[Write]) -> dict[int, WriteResult]:
        action = "upsert" if id_property else "update"
        url = f"{self.base}/{quote(obj, safe='')}/batch/{action}"
        try:
            response = self.client.request("POST", url, json={"inputs": [self._input(w) for w in chunk]})
        except CrmRequestError as exc:
            if _validation_refusal(exc) and len(chunk) > 1:
                return self._one_by_one(obj, id_property, chunk)
            if exc.kind != ErrorKind.CLIENT_ERROR:
                raise
            return {id(w): _refused(w, exc.detail, exc.status) for w in chunk}
        return self._answers(id_property, chunk, response.json(), response.status_code)

    def _one_by_one(self, obj: str, id_property: str | None, chunk: list[Write]) -> dict[int, WriteResult]:
        out: dict[int, WriteResult] = {}
        for w in chunk:
            if id_property:  # a batch of one: the single-record upsert
                out.update(self._batch(obj, id_property, [w]))
                continue
            url = f"{self.base}/{quote(obj, safe='')}/{quote(str(w.record_id).strip(), safe='')}"
            try:
                response = self.client.request(
                    "PATCH", url, json={"properties": self._input(w)["properties"]}
                )
            except CrmRequestError as exc:
                if exc.kind != ErrorKind.CLIENT_ERROR:
                    raise
                out[id(w)] = _refused(w, exc.detail, exc.status)
                continue
            body = response.json()
            out[id(w)] = WriteResult(
                w.ref, True, str(body.get("id") or w.record_id), False, response.status_code
            )
        return out

    def _answers(
        self, id_property: str | None, chunk: list[Write], body: dict, status: int
    ) -> dict[int, WriteResult]:
        """Results and errors of a 200/207 matched to their inputs: errors by the ids in their
        context, results by record id (updates) or unique value (upserts), else in input order."""
        out: dict[int, WriteResult] = {}
        key = _upsert_value if id_property else (lambda w: str(w.record_id).strip())
        by_key = {key(w): w for w in chunk}
        for error in body.get("errors") or []:
            category, message = error.get("category"), error.get("message")
            reason = f"{category}: {message}" if category else str(message)
            ids = (error.get("context") or {}).get("ids") or []
            for value in ids:
                norm = str(value).strip().casefold() if id_property else str(value).strip()
                w = by_key.get(norm)
                if w is not None and id(w) not in out:
                    out[id(w)] = _refused(w, reason, status, category=category)
        waiting = [w for w in chunk if id(w) not in out]
        unmatched = []
        for result in body.get("results") or []:
            if id_property:
                value = (result.get("properties") or {}).get(id_property)
                w = by_key.get(str(value).strip().casefold()) if value else None
            else:
                w = by_key.get(str(result.get("id")))
            if w is None or id(w) in out:
                unmatched.append(result)
                continue
            out[id(w)] = self._ok(w, result, status)
        rest = [w for w in waiting if id(w) not in out]
        for w, result in zip(rest, unmatched, strict=False):  # results carry no key: input order
            out[id(w)] = self._ok(w, result, status)
        for w in chunk:
            out.setdefault(
                id(w), _refused(w, "HubSpot answered neither a result nor an error for it", status)
            )
        return out

    @staticmethod
    def _ok(w: Write, result: dict, status: int) -> WriteResult:
        return WriteResult(w.ref, True, str(result.get("id") or w.record_id), bool(result.get("new")), status)


# ---------------------------------------------------------------------------------- Dynamics
class DynamicsWriter:
    crm = "dynamics"
    batch_size = 1  # one PATCH per record (the sandbox has no $batch)

    def __init__(self, client: CrmHttpClient, base: str) -> None:
        self.client = client
        self.base = base.rstrip("/")

    def write(self, writes: Sequence[Write]) -> list[WriteResult]:
        return [self._one(w) for w in writes]

    def _one(self, w: Write) -> WriteResult:
        problem = _shape_problem(w, _NAME)
        if problem:
            return _refused(w, problem)
        headers = {"Prefer": "return=representation"}
        if w.upsert_key is None:
            record = guid(str(w.record_id))
            if not record:
                return _refused(w, f"not a Dataverse GUID: {w.record_id!r}")
            segment, shown = f"({record})", f"({record})"
            headers["If-Match"] = "*"  # the record must exist: a 404, never a create
        else:
            field, value = w.upsert_key
            if _UNADDRESSABLE.search(value):
                return _refused(
                    w, "Dataverse cannot address an alternate key value holding / < > * % & : \\ ? + or #"
                )
            literal = quote(value.replace("'", "''"), safe="")  # OData doubles a quote inside a string
            segment = f"({field}='{literal}')"
            shown = f"({field}=<key>)"  # the key value may be personal: kept out of errors
        url = f"{self.base}/{w.crm_object}{segment}"
        pk = _DYNAMICS_KEYS.get(w.crm_object)
        params = {"$select": pk} if pk else None  # the representation tells created from updated
        try:
            response = self.client.request("PATCH", url, params=params, json=w.values, headers=headers)
        except CrmRequestError as exc:
            if exc.kind == ErrorKind.CLIENT_ERROR:
                return _refused(w, exc.detail, exc.status)
            raise CrmRequestError(
                exc.crm,
                exc.kind,
                exc.detail,
                method=exc.method,
                path=f"{exc.path.rsplit('/', 1)[0]}/{w.crm_object}{shown}",
                status=exc.status,
                attempts=exc.attempts,
                retry_after=exc.retry_after,
            ) from None
        found = _ENTITY_ID.search(response.headers.get("OData-EntityId", ""))
        record_id = found.group(1).lower() if found else w.record_id
        if record_id is None and pk and response.status_code != 204:
            record_id = response.json().get(pk)
        return WriteResult(w.ref, True, record_id, response.status_code == 201, response.status_code)


# ---------------------------------------------------------------------------------- factory
def make_writer(crm: str, cfg: CrmSyncConfig, stats: RequestStats | None = None) -> CrmWriter:
    """The writer of one CRM over the sources' client (``cfg``'s retries and throttling); ``stats``
    collects its request counters."""
    from sync_platform.ingest.connections import crm_client

    client, base = crm_client(crm, cfg, stats)
    if crm == "salesforce":
        return SalesforceWriter(client, base)
    if crm == "hubspot":
        return HubSpotWriter(client, base)
    return DynamicsWriter(client, base)
