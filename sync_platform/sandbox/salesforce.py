"""The Salesforce REST dialect: OAuth token, SOQL query/queryAll with server-side cursors,
describe, updated/deleted, record CRUD, upsert by external id and sObject Collections upsert.

Shapes follow CRM_APIS.md closely enough that simple-salesforce works unchanged. Every error
body is a JSON array of ``{message, errorCode}`` and every API response (errors included, the
token endpoint excepted) carries ``Sforce-Limit-Info``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from itertools import takewhile
from typing import Any, NoReturn

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import schema, soql
from .auth import AuthFailure, Token
from .clock import SandboxClock
from .dialect import Dialect, SandboxError, form_or_json
from .faults import Fault
from .formats import json_response, parse_datetime_ms, salesforce_datetime
from .limits import LimitDecision
from .schema import BOOLEAN, DATETIME, EMAIL, ID, INT, PHONE, REFERENCE, TEXT, FieldSpec, ObjectSpec
from .state import SandboxState
from .store import DELETED, DELETED_AT, ObjectStore

Handler = Callable[[Request], Awaitable[Response]]
Prepared = tuple[str, dict, int | None]  # external id value, record body, index of the match (None: create)

API_VERSIONS = (
    ("55.0", "Summer '22"),
    ("56.0", "Winter '23"),
    ("57.0", "Spring '23"),
    ("58.0", "Summer '23"),
    ("59.0", "Winter '24"),
    ("60.0", "Spring '24"),
    ("61.0", "Summer '24"),
    ("62.0", "Winter '25"),
)
DEFAULT_BATCH, MIN_BATCH, MAX_BATCH = 2_000, 200, 2_000
COLLECTION_LIMIT = 200
CURSOR_IDLE_SECONDS = 15 * 60  # Salesforce drops a query locator left unused for 15 minutes
MAX_OPEN_CURSORS = 10_000
UPDATED_WINDOW_DAYS, DELETED_WINDOW_DAYS = 30, 15
ORG_ID = "00DSb0000000001AAA"
INTEGRATION_USER = "005Sb0000000000AAA"  # owner of records created through the API
MINUTE_MS, DAY_MS = 60_000, 86_400_000
STRING_LENGTH = 255
NOT_FOUND = "The requested resource does not exist"

_VERSION = re.compile(r"^\d{2}\.0$")
_ID_SHAPE = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_BATCH_SIZE = re.compile(r"batchSize\s*=\s*(\d+)", re.IGNORECASE)
_SOAP_TYPES = {
    ID: "tns:ID",
    REFERENCE: "tns:ID",
    DATETIME: "xsd:dateTime",
    BOOLEAN: "xsd:boolean",
    INT: "xsd:int",
}
_LENGTHS = {ID: 18, REFERENCE: 18, EMAIL: 80, PHONE: 40, TEXT: 32_000, DATETIME: 0, BOOLEAN: 0, INT: 0}


class RecordError(Exception):
    """Why one record cannot be written: a 400 on single-record calls, one result in a collection."""

    def __init__(self, code: str, message: str, fields: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = list(fields)

    def as_sandbox_error(self) -> SandboxError:
        return SandboxError(400, self.message, self.code, fields=self.fields)

    def as_result(self) -> dict:
        return {
            "success": False,
            "errors": [{"statusCode": self.code, "message": self.message, "fields": self.fields}],
        }


ROLLED_BACK = RecordError(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using AllOrNone header",
)


# ------------------------------------------------------------------ query cursors
@dataclass
class QueryCursor:
    """A query locator: the bound query and a keyset position per row offset, never a live iterator.

    Keeping each page's start position lets a client fetch again a page whose response it lost.
    """

    query: soql.Query
    plan: soql.Plan
    all_rows: bool
    batch_size: int
    total: int
    positions: dict[int, soql.Position] = field(default_factory=dict)
    used_at: float = 0.0


class CursorStore:
    def __init__(self, clock: SandboxClock) -> None:
        self.clock = clock
        self._cursors: OrderedDict[str, QueryCursor] = OrderedDict()
        self._ids = itertools.count(1)

    def open(self, cursor: QueryCursor) -> str:
        locator = f"01gSb{next(self._ids):010d}"
        cursor.used_at = self.clock.now()
        self._cursors[locator] = cursor
        while len(self._cursors) > MAX_OPEN_CURSORS:
            self._cursors.popitem(last=False)
        return locator

    def get(self, locator: str) -> QueryCursor | None:
        cursor = self._cursors.get(locator)
        if cursor is None:
            return None
        now = self.clock.now()
        if now - cursor.used_at > CURSOR_IDLE_SECONDS:
            del self._cursors[locator]
            return None
        cursor.used_at = now
        self._cursors.move_to_end(locator)
        return cursor


# ------------------------------------------------------------------ describe
def describe_field(f: FieldSpec) -> dict:
    system = not f.updateable
    return {
        "name": f.name,
        "label": f.display_label,
        "type": f.type,
        "length": _LENGTHS.get(f.type, STRING_LENGTH),
        "soapType": _SOAP_TYPES.get(f.type, "xsd:string"),
        "nillable": not (f.required or system or f.type == BOOLEAN),
        "createable": f.updateable,
        "updateable": f.updateable,
        "externalId": f.external_id,
        "idLookup": f.type == ID or f.external_id,
        "unique": f.type == ID,
        "custom": f.name.endswith("__c"),
        "calculated": False,
        "filterable": True,
        "sortable": True,
        "defaultedOnCreate": system or f.type == BOOLEAN,
        "caseSensitive": False,
        "picklistValues": [
            {"value": v, "label": v, "active": True, "defaultValue": False, "validFor": None}
            for v in f.picklist
        ],
        "referenceTo": [f.reference_to] if f.reference_to else [],
        "relationshipName": f.name[:-2] if f.type == REFERENCE and f.name.endswith("Id") else None,
    }


def object_summary(spec: ObjectSpec, version: str) -> dict:
    url = f"/services/data/v{version}/sobjects/{spec.name}"
    verbs = (
        "queryable",
        "retrieveable",
        "searchable",
        "createable",
        "updateable",
        "deletable",
        "undeletable",
        "replicateable",
        "triggerable",
    )
    return {
        "name": spec.name,
        "label": spec.label,
        "labelPlural": f"{spec.label}s",
        "keyPrefix": spec.key_prefix,
        "custom": False,
        **dict.fromkeys(verbs, True),
        "urls": {"sobject": url, "describe": f"{url}/describe", "rowTemplate": f"{url}/{{ID}}"},
    }


def describe_object(spec: ObjectSpec, version: str) -> dict:
    return {**object_summary(spec, version), "fields": [describe_field(f) for f in spec.fields]}


class RecordWriter:
    """Store record → Salesforce JSON: attributes first, then the fields, datetimes Salesforce's way."""

    def __init__(self, spec: ObjectSpec, fields: Iterable[str], version: str) -> None:
        self.spec = spec
        self.url = f"/services/data/v{version}/sobjects/{spec.name}/"
        self.fields = [(name, spec.by_name[name].type == DATETIME) for name in fields]

    def __call__(self, rec: dict) -> dict:
        record_id = rec[self.spec.id_field]
        out: dict[str, object] = {"attributes": {"type": self.spec.name, "url": self.url + record_id}}
        for name, is_datetime in self.fields:
            value = rec.get(name)
            out[name] = salesforce_datetime(value) if is_datetime else value
        return out


# ------------------------------------------------------------------ request helpers
def _oauth_error(error: str, description: str) -> Response:
    return json_response({"error": error, "error_description": description}, 400)


def _basic_credentials(request: Request) -> tuple[str | None, str | None]:
    """Client id and secret from ``Authorization: Basic``, which RFC 6749 allows instead of form fields."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        client_id, _, secret = base64.b64decode(value).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    return client_id, secret


async def _json_body(request: Request) -> object:
    raw = await request.body()
    try:
        return orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise SandboxError(400, f"Unexpected character in request body: {exc}", "JSON_PARSER_ERROR") from None


def _batch_size(request: Request, default: int) -> int:
    """``Sforce-Query-Options: batchSize=N``, clamped to Salesforce's 200..2,000."""
    match = _BATCH_SIZE.search(request.headers.get("sforce-query-options", ""))
    return default if match is None else min(MAX_BATCH, max(MIN_BATCH, int(match.group(1))))


def _replication_ms(value: str | None, name: str) -> int:
    if not value:
        raise SandboxError(400, f"{name} is required", "MISSING_ARGUMENT")
    text = re.sub(r" (\d{2}:?\d{2})$", r"+\1", value.strip())  # an unencoded '+' arrives as a space
    try:
        return parse_datetime_ms(text)
    except ValueError:
        raise SandboxError(
            400, f"{name}: unable to parse '{value}' as a dateTime", "INVALID_REPLICATION_DATE"
        ) from None


def _collection_records(body: object) -> list:
    """The ``records`` of an sObject Collections body, at most ``COLLECTION_LIMIT`` of them."""
    records = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records, list):
        raise SandboxError(400, "The body must be an object with a records array", "JSON_PARSER_ERROR")
    if len(records) > COLLECTION_LIMIT:
        raise SandboxError(
            400,
            f"record limit reached. cannot submit more than {COLLECTION_LIMIT} records into this call",
            "EXCEEDED_ID_LIMIT",
        )
    return records


def _collection_response(body: dict, prepared: list, apply: Callable[[Any], dict]) -> Response:
    """A result per record of an sObject Collections call, in order: a refused record's errors, or
    what ``apply`` answers for a valid one; with ``allOrNone`` one refused record writes none."""
    if body.get("allOrNone") and any(isinstance(p, RecordError) for p in prepared):
        return json_response(
            [(p if isinstance(p, RecordError) else ROLLED_BACK).as_result() for p in prepared]
        )
    return json_response([p.as_result() if isinstance(p, RecordError) else apply(p) for p in prepared])


def _floor_minute(ms: int) -> int:
    return ms - ms % MINUTE_MS


def _refuse(f: FieldSpec, value: object, kind: str) -> NoReturn:
    raise RecordError(
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {kind} from value {value!r} for field {f.name}",
        [f.name],
    )


class SalesforceDialect(Dialect):
    crm = "salesforce"
    catch_all_prefix = "/services"

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        self.cursors = CursorStore(state.clock)

    @property
    def objects(self) -> dict[str, ObjectSpec]:
        return schema.OBJECTS["salesforce"]

    # ------------------------------------------------------------ pipeline hooks
    def error(self, status: int, message: str, code: str | None = None, **extra: object) -> Response:
        body = [{"message": message, "errorCode": code or "UNKNOWN_EXCEPTION", **extra}]
        return json_response(body, status, headers=self.state.limits_salesforce.headers())

    def auth_error(self, failure: AuthFailure) -> Response:
        headers = {**self.state.limits_salesforce.headers(), "WWW-Authenticate": "Token"}
        body = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
        return json_response(body, 401, headers=headers)

    def check_limits(self, request: Request) -> LimitDecision:
        return self.state.limits_salesforce.check()

    def limit_error(self, decision: LimitDecision) -> Response:
        body = [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}]
        return json_response(body, 403, headers=decision.headers or self.state.limits_salesforce.headers())

    def injected_limit(self, fault: Fault) -> LimitDecision:
        return LimitDecision(False, "REQUEST_LIMIT_EXCEEDED", 0.0, self.state.limits_salesforce.headers())

    def record_holders(self, body: object, field: str) -> list[dict]:
        records = body.get("records") if isinstance(body, dict) else None
        return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []

    # ------------------------------------------------------------ routes
    def routes(self) -> list[Route]:
        data = "/services/data/v{version}"
        sob = data + "/sobjects/{obj}"
        open_routes = [
            self.route(path, handler, methods, name=name, auth=False, limited=False)
            for path, handler, methods, name in (
                ("/services/oauth2/token", self._token, ["POST"], "token"),
                ("/services/data", self._versions, ["GET"], "versions"),
                ("/services/data/", self._versions, ["GET"], "versions"),
            )
        ]
        api = [  # order matters: fixed segments before the {record_id} and {ext_field}/{value} patterns
            (data, self._resources, "GET", "resources"),
            (data + "/limits", self._limits, "GET", "limits"),
            (data + "/query", self._query, "GET", "query"),
            (data + "/queryAll", self._query_all, "GET", "query_all"),
            (data + "/query/{locator}", self._query_more, "GET", "query_more"),
            (data + "/queryAll/{locator}", self._query_more, "GET", "query_more"),
            (data + "/sobjects", self._sobjects, "GET", "sobjects"),
            (data + "/composite/sobjects", self._composite_update, "PATCH", "composite_update"),
            (
                data + "/composite/sobjects/{obj}/{ext_field}",
                self._composite_upsert,
                "PATCH",
                "composite_upsert",
            ),
            (sob, self._metadata, "GET", "metadata"),
            (sob, self._create, "POST", "create"),
            (sob + "/describe", self._describe, "GET", "describe"),
            (sob + "/updated", self._updated, "GET", "updated"),
            (sob + "/deleted", self._deleted, "GET", "deleted"),
            (sob + "/{record_id}", self._get_record, "GET", "get_record"),
            (sob + "/{record_id}", self._update_record, "PATCH", "update_record"),
            (sob + "/{record_id}", self._delete_record, "DELETE", "delete_record"),
            (sob + "/{ext_field}/{value}", self._get_by_external_id, "GET", "get_by_external_id"),
            (sob + "/{ext_field}/{value}", self._upsert, "PATCH", "upsert"),
        ]
        return open_routes + [route for entry in api for route in self._api(*entry)]

    def _api(self, path: str, handler: Handler, method: str, name: str) -> list[Route]:
        """A versioned resource, with and without the trailing slash (simple-salesforce uses both)."""

        async def versioned(request: Request) -> Response:
            if not _VERSION.match(request.path_params["version"]):
                raise SandboxError(404, NOT_FOUND, "NOT_FOUND")
            return await handler(request)

        return [self.route(p, versioned, [method], name=name) for p in (path, path + "/")]

    # ------------------------------------------------------------ OAuth
    async def _token(self, request: Request) -> Response:
        form = await form_or_json(request)
        basic_id, basic_secret = _basic_credentials(request)
        client_id = form.get("client_id") or basic_id
        secret = form.get("client_secret") or basic_secret
        grant = form.get("grant_type")
        if grant == "client_credentials":
            if not self.tokens.check_client(client_id, secret):
                return _oauth_error("invalid_client", "invalid client credentials")
            return self._token_response(self.tokens.issue(client_id or ""))
        if grant == "refresh_token":
            if client_id != self.tokens.client_id or (
                secret is not None and not self.tokens.check_client(client_id, secret)
            ):
                return _oauth_error("invalid_client", "invalid client credentials")
            token = self.tokens.refresh(form.get("refresh_token") or "")
            if token is None:
                return _oauth_error("invalid_grant", "expired access/refresh token")
            return self._token_response(token, with_refresh=False)
        return _oauth_error("unsupported_grant_type", "grant type not supported")

    def _token_response(self, token: Token, with_refresh: bool = True) -> Response:
        identity = f"{self.state.base_url}/id/{ORG_ID}/{INTEGRATION_USER}"
        issued_at = str(self.state.clock.now_ms())
        signed = hmac.new(self.tokens.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256)
        body = {
            "access_token": token.access_token,
            "instance_url": self.state.base_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "scope": "api refresh_token",
            "signature": base64.b64encode(signed.digest()).decode(),
        }
        if with_refresh and token.refresh_token:
            body["refresh_token"] = token.refresh_token
        return json_response(body)

    # ------------------------------------------------------------ discovery
    async def _versions(self, request: Request) -> Response:
        return json_response(
            [{"label": label, "url": f"/services/data/v{v}", "version": v} for v, label in API_VERSIONS]
        )

    async def _resources(self, request: Request) -> Response:
        base = f"/services/data/v{request.path_params['version']}"
        return json_response(
            {name: f"{base}/{name}" for name in ("sobjects", "query", "queryAll", "limits", "composite")}
        )

    async def _limits(self, request: Request) -> Response:
        usage = self.state.limits_salesforce.headers()["Sforce-Limit-Info"].split("=", 1)[1]
        used, limit = (int(n) for n in usage.split("/"))
        return json_response({"DailyApiRequests": {"Max": limit, "Remaining": max(0, limit - used)}})

    async def _sobjects(self, request: Request) -> Response:
        version = request.path_params["version"]
        return json_response(
            {
                "encoding": "UTF-8",
                "maxBatchSize": COLLECTION_LIMIT,
                "sobjects": [object_summary(s, version) for s in self.objects.values()],
            }
        )

    async def _metadata(self, request: Request) -> Response:
        summary = object_summary(self._spec(request), request.path_params["version"])
        return json_response({"objectDescribe": summary, "recentItems": []})

    async def _describe(self, request: Request) -> Response:
        return json_response(describe_object(self._spec(request), request.path_params["version"]))

    # ------------------------------------------------------------ SOQL
    async def _query(self, request: Request) -> Response:
        return self._start_query(request, all_rows=False)

    async def _query_all(self, request: Request) -> Response:
        return self._start_query(request, all_rows=True)

    def _start_query(self, request: Request, all_rows: bool) -> Response:
        text = request.query_params.get("q")
        if not text:
            raise SandboxError(400, "A SOQL query must be given in the q parameter", "MALFORMED_QUERY")
        try:
            query = soql.compile_query(text, self.objects)
        except soql.SoqlError as exc:
            raise SandboxError(400, exc.message, exc.code) from None
        store = self._store(query.spec)
        plan = soql.plan(query, all_rows)
        if query.is_count:
            total = soql.window(soql.count_matches(store, query, plan), query)
            return json_response({"totalSize": total, "done": True, "records": []})
        batch = _batch_size(request, DEFAULT_BATCH)
        page, total = soql.first_page(store, query, plan, self._page_size(query, batch, 0))
        return self._page_response(request, QueryCursor(query, plan, all_rows, batch, total), None, 0, page)

    async def _query_more(self, request: Request) -> Response:
        locator, _, offset_text = request.path_params["locator"].rpartition("-")
        cursor = self.cursors.get(locator) if offset_text.isdigit() else None
        offset = int(offset_text) if cursor is not None else -1
        if cursor is None or offset not in cursor.positions:
            raise SandboxError(400, "invalid query locator", "INVALID_QUERY_LOCATOR")
        size = self._page_size(cursor.query, _batch_size(request, cursor.batch_size), offset)
        store = self._store(cursor.query.spec)
        page = soql.fetch_page(store, cursor.query, cursor.plan, cursor.positions[offset], size)
        return self._page_response(request, cursor, locator, offset, page)

    @staticmethod
    def _page_size(query: soql.Query, batch: int, offset: int) -> int:
        return batch if query.limit is None else max(0, min(batch, query.limit - offset))

    def _page_response(
        self, request: Request, cursor: QueryCursor, locator: str | None, offset: int, page: soql.Page
    ) -> Response:
        version = request.path_params["version"]
        end = offset + len(page.rows)
        limit = cursor.query.limit
        done = not page.more or (limit is not None and end >= limit)
        body: dict[str, object] = {"totalSize": cursor.total, "done": done}
        if not done and page.position is not None:
            cursor.positions[end] = page.position
            locator = locator or self.cursors.open(cursor)
            resource = "queryAll" if cursor.all_rows else "query"
            body["nextRecordsUrl"] = f"/services/data/v{version}/{resource}/{locator}-{end}"
        writer = RecordWriter(cursor.query.spec, cursor.query.fields, version)
        body["records"] = [writer(rec) for _i, rec in page.rows]
        return json_response(body)

    # ------------------------------------------------------------ updated / deleted
    def _replication_window(self, request: Request, days: int) -> tuple[int, int]:
        """``[start, covered)`` on whole minutes, as the replication API rounds; starts too far back fail."""
        start = _replication_ms(request.query_params.get("start"), "start")
        end = _replication_ms(request.query_params.get("end"), "end")
        if end <= start:
            raise SandboxError(
                400, "endDate must chronologically follow startDate", "INVALID_REPLICATION_DATE"
            )
        now = self.state.clock.now_ms()
        if start < now - days * DAY_MS:
            raise SandboxError(
                400, f"startDate cannot be more than {days} days ago", "INVALID_REPLICATION_DATE"
            )
        return _floor_minute(start), min(_floor_minute(end), _floor_minute(now))

    async def _updated(self, request: Request) -> Response:
        spec = self._spec(request)
        start, covered = self._replication_window(request, UPDATED_WINDOW_DAYS)
        stamp = spec.system_stamp
        rows = self._store(spec).iter_by_stamp(min_stamp=start)
        ids = [rec[spec.id_field] for _i, rec in takewhile(lambda pair: pair[1][stamp] < covered, rows)]
        return json_response({"ids": ids, "latestDateCovered": salesforce_datetime(covered)})

    async def _deleted(self, request: Request) -> Response:
        """Only overlay records can be deleted, so listing deletions never generates a base record."""
        spec = self._spec(request)
        start, covered = self._replication_window(request, DELETED_WINDOW_DAYS)
        gone = sorted(
            (rec[DELETED_AT], rec[spec.id_field])
            for rec in self._store(spec).overlay.values()
            if rec.get(DELETED) and start <= rec[DELETED_AT] < covered
        )
        earliest = _floor_minute(self.state.clock.now_ms() - DELETED_WINDOW_DAYS * DAY_MS)
        return json_response(
            {
                "deletedRecords": [{"id": rid, "deletedDate": salesforce_datetime(at)} for at, rid in gone],
                "earliestDateAvailable": salesforce_datetime(earliest),
                "latestDateCovered": salesforce_datetime(covered),
            }
        )

    # ------------------------------------------------------------ records
    async def _get_record(self, request: Request) -> Response:
        spec, _index, rec = self._live_record(request)
        wanted = request.query_params.get("fields")
        names = [self._field(spec, n).name for n in wanted.split(",")] if wanted else list(spec.by_name)
        return json_response(RecordWriter(spec, names, request.path_params["version"])(rec))

    async def _create(self, request: Request) -> Response:
        spec = self._spec(request)
        try:
            values = self._writable(spec, await _json_body(request), creating=True)
        except RecordError as exc:
            raise exc.as_sandbox_error() from None
        return json_response({"id": self._insert(spec, values), "success": True, "errors": []}, 201)

    async def _update_record(self, request: Request) -> Response:
        spec, index, _rec = self._live_record(request)
        try:
            values = self._writable(spec, await _json_body(request), creating=False)
        except RecordError as exc:
            raise exc.as_sandbox_error() from None
        self._store(spec).update(index, self._derived(spec, values), mode="user", client=True)
        return Response(status_code=204)

    async def _delete_record(self, request: Request) -> Response:
        spec, index, _rec = self._live_record(request)
        self._store(spec).delete(index, mode="user")
        return Response(status_code=204)

    async def _get_by_external_id(self, request: Request) -> Response:
        spec = self._spec(request)
        ext = self._external_field(spec, request.path_params["ext_field"], allow_id=True)
        matches = self._matches(spec, ext, request.path_params["value"])
        if len(matches) > 1:
            return self._several(request, spec, matches)
        if not matches:
            raise SandboxError(404, NOT_FOUND, "NOT_FOUND")
        rec = self._store(spec).get(matches[0])
        return json_response(RecordWriter(spec, spec.by_name, request.path_params["version"])(rec))

    async def _upsert(self, request: Request) -> Response:
        """Create or update by external id: 201 ``created: true``, 200 ``created: false``, 300 if several."""
        spec = self._spec(request)
        ext = self._external_field(spec, request.path_params["ext_field"], allow_id=True)
        value = request.path_params["value"]
        body = await _json_body(request)
        with self.state.lock:
            matches = self._matches(spec, ext, value)
            if len(matches) > 1:
                return self._several(request, spec, matches)
            if not matches and ext.type == ID:
                raise SandboxError(
                    404,
                    f"Provided external ID field does not exist or is not accessible: {value}",
                    "NOT_FOUND",
                )
            try:
                match = matches[0] if matches else None
                record_id, created = self._apply_upsert(spec, ext, value, body, match)
            except RecordError as exc:
                raise exc.as_sandbox_error() from None
        result = {"id": record_id, "success": True, "errors": [], "created": created}
        return json_response(result, 201 if created else 200)

    async def _composite_upsert(self, request: Request) -> Response:
        """sObject Collections upsert: a result per record; ``allOrNone`` writes all of them or none."""
        spec = self._spec(request)
        ext = self._external_field(spec, request.path_params["ext_field"], allow_id=False)
        body = await _json_body(request)
        records = _collection_records(body)

        def upsert(item: Prepared) -> dict:
            record_id, created = self._apply_upsert(spec, ext, *item)
            return {"id": record_id, "success": True, "errors": [], "created": created}

        with self.state.lock:
            return _collection_response(body, self._prepare_collection(spec, ext, records), upsert)

    async def _composite_update(self, request: Request) -> Response:
        """sObject Collections update: records of any type by ``Id``, a result per record in order;
        ``allOrNone`` writes all of them or none. An ``Id`` naming no live record fails its own
        record only (never a create)."""
        body = await _json_body(request)
        records = _collection_records(body)

        def update(item: tuple[ObjectSpec, int, dict]) -> dict:
            spec, index, values = item
            self._store(spec).update(index, self._derived(spec, values), mode="user", client=True)
            return {"id": spec.format_id(index), "success": True, "errors": []}

        with self.state.lock:
            prepared: list[RecordError | tuple[ObjectSpec, int, dict]] = []
            for rec in records:
                try:
                    prepared.append(self._prepare_update(rec))
                except RecordError as exc:
                    prepared.append(exc)
            return _collection_response(body, prepared, update)

    def _prepare_update(self, rec: object) -> tuple[ObjectSpec, int, dict]:
        """(object, index, values) of one record of a collection update, validated before any is written."""
        if not isinstance(rec, dict) or not isinstance(rec.get("attributes"), dict):
            raise RecordError("INVALID_TYPE", "Must send a concrete entity type.")
        declared = str(rec["attributes"].get("type"))
        spec = next((s for name, s in self.objects.items() if name.lower() == declared.lower()), None)
        if spec is None:
            raise RecordError("INVALID_TYPE", f"sObject type '{declared}' is not supported.")
        id_key = next((k for k in rec if k.lower() == "id"), None)
        record_id = rec.get(id_key) if id_key else None
        if not isinstance(record_id, str) or not record_id:
            raise RecordError("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
        if not _ID_SHAPE.match(record_id):
            raise RecordError("MALFORMED_ID", f"malformed id {record_id}", ["Id"])
        if spec.parse_id(record_id) is None:
            raise RecordError(
                "MALFORMED_ID", f"{spec.name} ID: id value of incorrect type: {record_id}", ["Id"]
            )
        found = self._store(spec).get_by_id(record_id)
        if found is None:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["Id"])
        index, current = found
        if current.get(DELETED):
            raise RecordError("ENTITY_IS_DELETED", "entity is deleted")
        values = self._writable(spec, {k: v for k, v in rec.items() if k != id_key}, creating=False)
        return spec, index, values

    def _prepare_collection(
        self, spec: ObjectSpec, ext: FieldSpec, records: list
    ) -> list[RecordError | Prepared]:
        """Validate every record before writing any, so ``allOrNone`` can refuse the lot."""
        existing = self._external_index(spec, ext.name)
        values = [r.get(ext.name) if isinstance(r, dict) else None for r in records]
        seen: dict[str, int] = {}
        for v in values:
            if isinstance(v, str):
                seen[v.casefold()] = seen.get(v.casefold(), 0) + 1
        prepared: list[RecordError | Prepared] = []
        for rec, value in zip(records, values, strict=True):
            try:
                prepared.append(self._prepare_one(spec, ext, rec, value, seen, existing))
            except RecordError as exc:
                prepared.append(exc)
        return prepared

    def _prepare_one(
        self,
        spec: ObjectSpec,
        ext: FieldSpec,
        rec: object,
        value: object,
        seen: dict[str, int],
        existing: dict[str, list[int]],
    ) -> Prepared:
        if not isinstance(rec, dict) or not isinstance(rec.get("attributes"), dict):
            raise RecordError("INVALID_TYPE", "Must send a concrete entity type.")
        declared = rec["attributes"].get("type")
        if str(declared).lower() != spec.name.lower():
            raise RecordError("INVALID_TYPE", f"Record type {declared!r} does not match {spec.name}")
        if not isinstance(value, str) or not value:
            raise RecordError("MISSING_ARGUMENT", f"{ext.name} not specified", [ext.name])
        if seen[value.casefold()] > 1:
            raise RecordError("DUPLICATE_VALUE", f"Duplicate external id specified: {value}", [ext.name])
        matches = existing.get(value.casefold(), [])
        if len(matches) > 1:
            ids = ", ".join(spec.format_id(i) for i in matches)
            raise RecordError(
                "DUPLICATE_EXTERNAL_ID",
                f"{ext.name}: more than one record found for external id field: [{ids}]",
                [ext.name],
            )
        index = matches[0] if matches else None
        self._writable(spec, rec, creating=index is None)  # validate now, write later
        return value, rec, index

    def _apply_upsert(
        self, spec: ObjectSpec, ext: FieldSpec, value: str, body: object, index: int | None
    ) -> tuple[str, bool]:
        """Write one upsert (the URL's external id wins over one in the body); returns (id, created)."""
        if index is None:
            values = self._writable(spec, body, creating=True)
            values[ext.name] = value
            return self._insert(spec, values), True
        values = self._writable(spec, body, creating=False)
        values.pop(ext.name, None)
        self._store(spec).update(index, self._derived(spec, values), mode="user", client=True)
        return spec.format_id(index), False

    # ------------------------------------------------------------ write validation
    def _writable(self, spec: ObjectSpec, body: object, creating: bool) -> dict:
        """Field values a create or update may write, coerced to the store's types (datetimes → epoch ms)."""
        if not isinstance(body, dict):
            raise RecordError("JSON_PARSER_ERROR", "The request body must be a JSON object of field values")
        values, readonly = {}, []
        for key, value in body.items():
            if key == "attributes":
                continue
            f = self._lookup(spec, key)
            if f is None:
                raise RecordError(
                    "INVALID_FIELD", f"No such column '{key}' on sobject of type {spec.name}", [key]
                )
            if not f.updateable:
                readonly.append(f.name)
                continue
            values[f.name] = self._coerce(f, value)
        if readonly:
            raise RecordError(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(readonly)}. Please check the "
                "security settings of this field and verify that it is read/write for your "
                "profile or permission set.",
                readonly,
            )
        missing = [
            name
            for name in spec.required_fields
            if (creating or name in values) and values.get(name) in (None, "")
        ]
        if missing:
            raise RecordError(
                "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
            )
        return values

    def _coerce(self, f: FieldSpec, value: object) -> object:
        if value is None:
            return False if f.type == BOOLEAN else None
        if f.type == DATETIME:
            if isinstance(value, str):
                try:
                    return parse_datetime_ms(value)
                except ValueError:
                    pass
            _refuse(f, value, "datetime")
        if f.type == BOOLEAN:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            _refuse(f, value, "boolean")
        if f.type in (ID, REFERENCE):
            return self._reference(f, value)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            _refuse(f, value, "string")
        text = str(value)
        limit = _LENGTHS.get(f.type, STRING_LENGTH)
        if len(text) > limit:
            raise RecordError(
                "STRING_TOO_LONG",
                f"{f.display_label}: data value too large: {text[:40]}... (max length={limit})",
                [f.name],
            )
        if f.type == EMAIL and not _EMAIL.match(text):
            raise RecordError(
                "INVALID_EMAIL_ADDRESS", f"{f.display_label}: invalid email address: {text}", [f.name]
            )
        return text

    def _reference(self, f: FieldSpec, value: object) -> str:
        """A well-formed id of a live record of the referenced object (user ids: by prefix only)."""
        if not isinstance(value, str) or not _ID_SHAPE.match(value):
            raise RecordError(
                "MALFORMED_ID", f"{f.display_label}: id value of incorrect type: {value}", [f.name]
            )
        record_id = value if len(value) == 18 else value + "AAA"  # sandbox ids all end in AAA
        target = self.objects.get(f.reference_to or "")
        if target is None:
            if f.reference_to == "User" and not record_id.startswith(INTEGRATION_USER[:3]):
                raise RecordError(
                    "INVALID_CROSS_REFERENCE_KEY",
                    f"{f.display_label}: id value of incorrect type: {value}",
                    [f.name],
                )
            return record_id
        found = self._store(target).get_by_id(record_id)
        if found is None or found[1].get(DELETED):
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [f.name])
        return record_id

    def _insert(self, spec: ObjectSpec, values: dict) -> str:
        """Create with Salesforce's defaults: false booleans, the API user as owner, a case number."""
        store = self._store(spec)
        with self.state.lock:
            fields: dict[str, object] = {
                f.name: False for f in spec.fields if f.type == BOOLEAN and f.updateable
            }
            if spec.field("OwnerId"):
                fields["OwnerId"] = INTEGRATION_USER
            if spec.field("CaseNumber"):
                fields["CaseNumber"] = f"{store.total + 1:08d}"
            fields.update(self._derived(spec, values))
            return store.create(fields, mode="user", client=True).record[spec.id_field]

    @staticmethod
    def _derived(spec: ObjectSpec, values: dict) -> dict:
        if spec.field("IsClosed") and "Status" in values:
            return {**values, "IsClosed": values["Status"] == "Closed"}
        return values

    # ------------------------------------------------------------ lookups
    def _spec(self, request: Request) -> ObjectSpec:
        name = request.path_params["obj"].lower()
        spec = next((s for key, s in self.objects.items() if key.lower() == name), None)
        if spec is None:
            raise SandboxError(404, NOT_FOUND, "NOT_FOUND")
        return spec

    def _store(self, spec: ObjectSpec) -> ObjectStore:
        return self.state.store("salesforce", spec.name)

    @staticmethod
    def _lookup(spec: ObjectSpec, name: str) -> FieldSpec | None:
        """Field names are case-insensitive in the REST API."""
        wanted = name.strip().lower()
        return next((f for f in spec.fields if f.name.lower() == wanted), None)

    def _field(self, spec: ObjectSpec, name: str) -> FieldSpec:
        f = self._lookup(spec, name)
        if f is None:
            raise SandboxError(
                400, f"No such column '{name.strip()}' on sobject of type {spec.name}", "INVALID_FIELD"
            )
        return f

    def _live_record(self, request: Request) -> tuple[ObjectSpec, int, dict]:
        spec = self._spec(request)
        found = self._store(spec).get_by_id(request.path_params["record_id"])
        if found is None:
            raise SandboxError(404, NOT_FOUND, "NOT_FOUND")
        index, rec = found
        if rec.get(DELETED):
            raise SandboxError(404, "entity is deleted", "ENTITY_IS_DELETED")
        return spec, index, rec

    def _external_field(self, spec: ObjectSpec, name: str, allow_id: bool) -> FieldSpec:
        f = self._lookup(spec, name)
        if f is None or not (f.external_id or (allow_id and f.type == ID)):
            raise SandboxError(
                404, f"Provided external ID field does not exist or is not accessible: {name}", "NOT_FOUND"
            )
        return f

    def _external_index(self, spec: ObjectSpec, name: str) -> dict[str, list[int]]:
        """Live records by external id (casefolded, as Salesforce matches them), from one overlay pass.

        The generator leaves external ids empty on base records, so only changed or created records
        can carry one: the scan never generates the base.
        """
        index: dict[str, list[int]] = {}
        for i, rec in sorted(self._store(spec).overlay.items()):
            value = rec.get(name)
            if isinstance(value, str) and not rec.get(DELETED):
                index.setdefault(value.casefold(), []).append(i)
        return index

    def _matches(self, spec: ObjectSpec, ext: FieldSpec, value: str) -> list[int]:
        if ext.type == ID:
            found = self._store(spec).get_by_id(value)
            return [found[0]] if found is not None and not found[1].get(DELETED) else []
        return self._external_index(spec, ext.name).get(value.casefold(), [])

    def _several(self, request: Request, spec: ObjectSpec, indices: list[int]) -> Response:
        """300 Multiple Choices: the URLs of every record the external id matched."""
        base = f"/services/data/v{request.path_params['version']}/sobjects/{spec.name}/"
        return json_response([base + spec.format_id(i) for i in indices], 300)
