"""The Dynamics 365 / Dataverse Web API dialect of the CRM sandbox.

Serves the Azure AD client-credentials token endpoint and ``/api/data/v9.2``: entity-set
queries (``$select/$filter/$orderby/$top/$count``, ``odata.maxpagesize`` paging through
opaque ``$skiptoken`` keyset positions), change tracking (``odata.track-changes``, delta
links, ``$deletedEntity`` rows), single-record reads and writes (PATCH upsert by id or
alternate key with ``If-Match``/``If-None-Match``, POST, DELETE, ``@odata.bind`` lookups), and
the metadata a client checks a mapping against (``EntityDefinitions(LogicalName='contact')`` and its
``/Attributes``, with ``$select``; the not-found message is unverified against a live org).

Decisions worth knowing (see also the module constants):
- the store assigns record ids: a client-supplied primary key in a POST body is ignored, and
  a PATCH upsert that creates through an unknown GUID creates a record with a store id,
  reported in ``OData-EntityId``;
- ``@odata.count`` stops at 5,000 and flags ``totalrecordcountlimitexceeded``, as Dataverse does;
- an invalid, expired (7 days) or foreign delta token is a 400 with ``0x80044352``
  (Dataverse's ExpiredVersionStamp): the client must re-initialize change tracking;
- change tracking is a per-table setting (admin API ``PUT /__sandbox/dynamics/<set>/change_tracking``);
  asking an untracked table for ``odata.track-changes`` is a 400 with ``0x80072491``
  (ChangeTrackingNotEnabledForEntity);
- the page size rides in the ``$skiptoken`` too, so a nextLink followed without the
  ``Prefer`` header keeps its page size.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import heapq
import hmac
import math
import re
import secrets
import uuid
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import groupby
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .auth import AuthFailure
from .dialect import Dialect, SandboxError, form_or_json
from .faults import Fault
from .formats import json_response, odata_datetime, parse_datetime_ms
from .limits import LimitDecision
from .odata import (
    Column,
    Compare,
    Literal,
    Node,
    ODataError,
    Predicate,
    Prop,
    QueryFunction,
    comparable,
    compile_filter,
    conjuncts,
    parse_filter,
    parse_key,
)
from .schema import (
    BOOLEAN,
    DATETIME,
    EMAIL,
    ID,
    INT,
    PHONE,
    PICKLIST,
    REFERENCE,
    STRING,
    TEXT,
    URL,
    FieldSpec,
    ObjectSpec,
)
from .state import SandboxState
from .store import DELETED, VERSION, ChangeResult, ObjectStore

API = "/api/data/v9.2"
MAX_PAGE_SIZE = 5_000  # Dataverse's default and maximum odata.maxpagesize
COUNT_LIMIT = 5_000  # @odata.count never reports more than this
DELTA_TOKEN_DAYS = 7  # change-tracking tokens expire after 7 days by default

# Dataverse error codes the dialect answers with
NOT_FOUND = "0x80040217"  # ObjectDoesNotExist
BAD_QUERY = "0x80060888"  # OData parse/validation errors, unknown segments and properties
REQUIRED = "0x80040200"
DUPLICATE_KEY = "0x80040237"  # a record with matching key values already exists
VERSION_MISMATCH = "0x80060882"  # If-Match row version is stale
BAD_PAYLOAD = "0x80048d19"
TRACKING_OPTION = "0x80048d0b"  # a query option change tracking cannot honour
EXPIRED_VERSION = "0x80044352"  # ExpiredVersionStamp: re-initialize change tracking
NOT_TRACKED = "0x80072491"  # ChangeTrackingNotEnabledForEntity: the table's "Track changes" is off
INVALID_ARGUMENT = "0x80040203"
RATE_LIMITED = "0x80072322"
UNEXPECTED = "0x80040216"
_STATUS_CODES = {
    400: INVALID_ARGUMENT,
    404: BAD_QUERY,
    405: BAD_QUERY,
    412: VERSION_MISMATCH,
    429: RATE_LIMITED,
}

EDM = {
    ID: "Edm.Guid",
    REFERENCE: "Edm.Guid",
    STRING: "Edm.String",
    EMAIL: "Edm.String",
    PHONE: "Edm.String",
    URL: "Edm.String",
    TEXT: "Edm.String",
    PICKLIST: "Edm.String",
    INT: "Edm.Int32",
    BOOLEAN: "Edm.Boolean",
    DATETIME: "Edm.DateTimeOffset",
}
# which JSON values a payload may carry for each column type (datetimes arrive as strings)
_ACCEPTS: dict[str, Callable[[Any], bool]] = {
    "Edm.String": lambda v: isinstance(v, str),
    "Edm.Boolean": lambda v: isinstance(v, bool),
    "Edm.Int32": lambda v: isinstance(v, int) and not isinstance(v, bool),
}
_SYSTEM_OPTIONS = {"$select", "$filter", "$orderby", "$top", "$count", "$skiptoken", "$deltatoken"}
_UNSUPPORTED_OPTIONS = {
    "$skip": "The query parameter $skip is not supported.",
    "fetchXml": "FetchXML queries are not supported by the sandbox.",
    "savedQuery": "Saved queries are not supported by the sandbox.",
    "userQuery": "User queries are not supported by the sandbox.",
}
_TRACKING_REJECTS = ("$filter", "$orderby", "$top", "$count")
_DELTA_TOKEN = re.compile(r"^(\d+)!(\d{2})/(\d{2})/(\d{4}) (\d{2}):(\d{2}):(\d{2})$")
_BIND = re.compile(r"^(?:.*?/)?(?P<set>[A-Za-z_]\w*)\((?P<key>.*)\)$")
_PREFERENCE = re.compile(r'\s*([^=,\s]+)\s*(?:=\s*("[^"]*"|[^,]*))?\s*(?:,|$)')
_ORG_IDS = {
    "BusinessUnitId": "00000001-0009-4000-8000-5a4e0b0c5d1e",
    "UserId": "00000000-0008-4000-8000-5a4e0b0c5d1e",
    "OrganizationId": "00000001-000a-4000-8000-5a4e0b0c5d1e",
}


@dataclass(frozen=True)
class EntitySet:
    name: str  # the entity set (URL) name, also the store's object name
    logical: str  # the entity's logical name
    binds: dict[str, tuple[str, str]]  # navigation property -> (lookup column, target entity set)

    @property
    def type_name(self) -> str:
        return f"Microsoft.Dynamics.CRM.{self.logical}"


_OWNER = {"ownerid": ("_ownerid_value", "systemusers")}
ENTITY_SETS = {
    "contacts": EntitySet(
        "contacts",
        "contact",
        {
            "parentcustomerid_account": ("_parentcustomerid_value", "accounts"),
            "parentcustomerid_contact": ("_parentcustomerid_value", "contacts"),
            **_OWNER,
        },
    ),
    "accounts": EntitySet("accounts", "account", dict(_OWNER)),
    "incidents": EntitySet(
        "incidents",
        "incident",
        {
            "customerid_account": ("_customerid_value", "accounts"),
            "customerid_contact": ("_customerid_value", "contacts"),
            "primarycontactid": ("_primarycontactid_value", "contacts"),
            **_OWNER,
        },
    ),
}


# ----------------------------------------------------------------------------- metadata
# sandbox field type -> (AttributeType, the AttributeMetadata subtype Dataverse reports)
_ATTRIBUTE_TYPES = {
    ID: ("Uniqueidentifier", "UniqueIdentifierAttributeMetadata"),
    STRING: ("String", "StringAttributeMetadata"),
    EMAIL: ("String", "StringAttributeMetadata"),
    PHONE: ("String", "StringAttributeMetadata"),
    URL: ("String", "StringAttributeMetadata"),
    TEXT: ("Memo", "MemoAttributeMetadata"),
    INT: ("Integer", "IntegerAttributeMetadata"),
    BOOLEAN: ("Boolean", "BooleanAttributeMetadata"),
    DATETIME: ("DateTime", "DateTimeAttributeMetadata"),
    PICKLIST: ("Picklist", "PicklistAttributeMetadata"),
    REFERENCE: ("Lookup", "LookupAttributeMetadata"),
}
# columns whose Dataverse type is more specific than the sandbox field type
_SPECIAL_TYPES = {
    "statecode": ("State", "StateAttributeMetadata"),
    "statuscode": ("Status", "StatusAttributeMetadata"),
    "prioritycode": ("Picklist", "PicklistAttributeMetadata"),
    "versionnumber": ("BigInt", "BigIntAttributeMetadata"),
    "_ownerid_value": ("Owner", "LookupAttributeMetadata"),
    "_parentcustomerid_value": ("Customer", "LookupAttributeMetadata"),
    "_customerid_value": ("Customer", "LookupAttributeMetadata"),
}
_LOOKUP_VALUE = re.compile(r"^_(\w+)_value$")


def attribute_name(column: str) -> str:
    """The attribute behind a Web API column: lookups read as ``_<attribute>_value``."""
    match = _LOOKUP_VALUE.match(column)
    return match.group(1) if match else column


def _metadata_id(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "sandbox-dataverse:" + ":".join(parts)))


def _label(text: str) -> dict:
    label = {"Label": text, "LanguageCode": 1033, "IsManaged": True}
    return {"LocalizedLabels": [label], "UserLocalizedLabel": label}


def _entity_metadata(es: EntitySet, spec: ObjectSpec) -> dict:
    return {
        "MetadataId": _metadata_id(es.logical),
        "LogicalName": es.logical,
        "SchemaName": es.logical.capitalize(),
        "EntitySetName": es.name,
        "LogicalCollectionName": es.name,
        "PrimaryIdAttribute": spec.id_field,
        "PrimaryNameAttribute": "fullname"
        if es.logical == "contact"
        else ("title" if es.logical == "incident" else "name"),
        "IsCustomEntity": False,
        "DisplayName": _label(spec.label),
    }


def _attribute_metadata(es: EntitySet, field: FieldSpec) -> dict:
    kind, subtype = _SPECIAL_TYPES.get(field.name) or _ATTRIBUTE_TYPES.get(
        field.type, _ATTRIBUTE_TYPES[STRING]
    )
    name = attribute_name(field.name)
    system = "SystemRequired" if field.type == ID else None
    return {
        "@odata.type": f"#Microsoft.Dynamics.CRM.{subtype}",
        "MetadataId": _metadata_id(es.logical, name),
        "LogicalName": name,
        "SchemaName": name.capitalize(),
        "EntityLogicalName": es.logical,
        "AttributeType": kind,
        "AttributeTypeName": {"Value": f"{kind}Type"},
        "AttributeOf": None,
        "IsPrimaryId": field.type == ID,
        "IsCustomAttribute": False,
        "IsValidForRead": True,
        "IsValidForCreate": field.updateable,
        "IsValidForUpdate": field.updateable,
        "RequiredLevel": {
            "Value": system or ("ApplicationRequired" if field.required else "None"),
            "CanBeChanged": system is None,
            "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
        },
        "DisplayName": _label(field.display_label),
        **(
            {
                "Targets": [
                    ENTITY_SETS[field.reference_to].logical
                    if field.reference_to in ENTITY_SETS
                    else field.reference_to.rstrip("s")
                ]
            }
            if field.type == REFERENCE and field.reference_to
            else {}
        ),
    }


# ----------------------------------------------------------------------------- small helpers
def _fail(status: int, message: str, code: str) -> SandboxError:
    return SandboxError(status, message, code)


def _live(rec: dict | None) -> bool:
    return rec is not None and not rec.get(DELETED)


def _fullname(rec: dict) -> str | None:
    """Dataverse derives fullname from the name parts; stored copies could be stale."""
    return " ".join(p for p in (rec.get("firstname"), rec.get("lastname")) if p) or None


def _getter(name: str) -> Callable[[dict], Any]:
    if name == "fullname":
        return _fullname
    return lambda rec: rec.get(name)


def _etag(rec: dict) -> str:
    return f'W/"{rec.get("versionnumber")}"'


def _etag_matches(header: str, rec: dict) -> bool:
    wanted = {t.strip() for t in header.split(",")}
    version = str(rec.get("versionnumber"))
    return "*" in wanted or any(t.removeprefix("W/").strip('"') == version for t in wanted)


def _preferences(request: Request) -> dict[str, str | None]:
    prefs: dict[str, str | None] = {}
    for header in request.headers.getlist("prefer"):
        for name, value in _PREFERENCE.findall(header):
            prefs[name.lower()] = value.strip().strip('"') or None
    return prefs


class _TokenCodec:
    """Opaque ``$skiptoken`` values: a keyset position as JSON, signed so that a token the
    sandbox did not issue (or one edited by hand) is a clean 400, never a confused scan."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(16)

    def _mac(self, payload: bytes) -> str:
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()[:16]

    def encode(self, data: dict) -> str:
        payload = base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=")
        return f"{payload.decode()}.{self._mac(payload)}"

    def decode(self, text: str) -> dict:
        payload, _, mac = text.encode().rpartition(b".")
        if not payload or not hmac.compare_digest(mac, self._mac(payload).encode()):
            raise _fail(
                400,
                "The $skiptoken is not valid; use the @odata.nextLink exactly as returned.",
                INVALID_ARGUMENT,
            )
        return orjson.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))


def _query_hash(*parts: str | None) -> str:
    return hashlib.sha1("\n".join(p or "" for p in parts).encode()).hexdigest()[:12]


def _delta_token(version: int, now_ms: int) -> str:
    stamp = datetime.fromtimestamp(now_ms / 1000, tz=UTC).strftime("%m/%d/%Y %H:%M:%S")
    return f"{version}!{stamp}"


def _norm_key(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _cmp_keys(directions: tuple[bool, ...], a: list, b: list) -> int:
    """Compare sort keys column by column; nulls sort first ascending (last descending), as in SQL Server."""
    for x, y, descending in zip(a, b, directions, strict=True):
        if x == y:
            continue
        r = -1 if x is None else 1 if y is None else (-1 if x < y else 1)
        return -r if descending else r
    return 0


# ----------------------------------------------------------------------------- alternate keys
class _KeyIndex:
    """Finds records by one alternate-key column without scanning the store per request.

    Base records never change, so their values are indexed once, on first use; changed and
    created records are caught up from the store's change log. Entries are verified on read,
    so a stale one (a key value since changed) costs only a check.
    """

    def __init__(self, store: ObjectStore, field: str) -> None:
        self.field = field
        self.base: dict[Any, int] = {}
        for i in range(store.base_count):
            value = store.gen.record(i).get(field)
            if value is not None:
                self.base.setdefault(_norm_key(value), i)
        self.changed: dict[Any, set[int]] = {}
        self.version = 0

    def find(self, store: ObjectStore, value: Any) -> int | None:
        norm = _norm_key(value)
        with store.lock:
            for i, rec in store.changes_since(self.version):
                if rec.get(self.field) is not None:
                    self.changed.setdefault(_norm_key(rec[self.field]), set()).add(i)
            self.version = store.version
            candidates = set(self.changed.get(norm, ()))
            if norm in self.base:
                candidates.add(self.base[norm])
            for i in sorted(candidates):
                rec = store.get(i)
                if _live(rec) and _norm_key(rec.get(self.field)) == norm:
                    return i
        return None


class _AlternateKeys:
    def __init__(self) -> None:
        self._indexes: weakref.WeakKeyDictionary[ObjectStore, dict[str, _KeyIndex]] = (
            weakref.WeakKeyDictionary()
        )

    def find(self, store: ObjectStore, field: str, value: Any) -> int | None:
        per_store = self._indexes.setdefault(store, {})
        if field not in per_store:
            per_store[field] = _KeyIndex(store, field)
        return per_store[field].find(store, value)


# ----------------------------------------------------------------------------- query plans
@dataclass(frozen=True)
class Scan:
    """How a query reads the store: its order, and the bounds its filter lets it skip to.

    ``order``: ``lookup`` (primary key equality), ``lookups`` (primary key ``In(...)``, in
    GUID order), ``index`` (GUID order), ``stamp`` (modifiedon at whole seconds, then GUID) or
    ``sort`` (anything else: a full scan).
    """

    order: str
    descending: bool = False
    keys: tuple[tuple[str, bool], ...] = ()
    min_stamp: int | None = None  # stored stamps below it cannot match
    stop_stamp: int | None = None  # stored stamps at or above it cannot match
    lookup: str | None = None
    lookups: tuple[str, ...] = ()


def _pk_in(term: Node, pk: str) -> tuple[str, ...] | None:
    """The ids of a ``Microsoft.Dynamics.CRM.In(PropertyName='<pk>', PropertyValues=[...])`` term."""
    if not (isinstance(term, QueryFunction) and term.name == "Microsoft.Dynamics.CRM.In"):
        return None
    params = dict(term.params)
    name, values = params.get("PropertyName"), params.get("PropertyValues")
    if not (isinstance(name, Literal) and name.value == pk and isinstance(values, tuple)):
        return None
    return tuple(str(v.value) for v in values)


def _ceil_second(ms: int) -> int:
    return -(-ms // 1000) * 1000


def _stamp_bounds(terms: list[Node], stamp: str) -> tuple[int | None, int | None]:
    """Translate ``modifiedon`` comparisons (whole-second semantics) into stored-ms bounds."""
    low: int | None = None
    stop: int | None = None
    for term in terms:
        if not (
            isinstance(term, Compare)
            and isinstance(term.left, Prop)
            and term.left.name == stamp
            and isinstance(term.right, Literal)
            and term.right.kind in ("datetime", "date")
        ):
            continue
        ms, op = term.right.value, term.op
        if op in ("ge", "eq"):
            low = max(low or 0, _ceil_second(ms))
        elif op == "gt":
            low = max(low or 0, (ms // 1000 + 1) * 1000)
        if op in ("le", "eq"):
            bound = (ms // 1000 + 1) * 1000
            stop = bound if stop is None else min(stop, bound)
        elif op == "lt":
            bound = _ceil_second(ms)
            stop = bound if stop is None else min(stop, bound)
    return low, stop


def _by_index(
    store: ObjectStore, after: int | None, min_stamp: int | None, descending: bool = False
) -> Iterator[tuple[int, dict]]:
    """Live records in GUID order after ``after``; base records older than ``min_stamp`` are
    skipped arithmetically (base stamps grow with the index), changed ones are still visited."""
    cutoff = (
        min(store.gen.first_index_at_or_after(min_stamp), store.base_count) if min_stamp is not None else 0
    )
    with store.lock:
        early = sorted(i for i in store.overlay if i < cutoff)
    if not descending:
        start = -1 if after is None else after
        for i in early:
            if i > start and _live(rec := store.get(i)):
                yield i, rec
        yield from store.iter_by_index(max(start + 1, cutoff))
        return
    top = store.total - 1 if after is None else after - 1
    for i in range(top, cutoff - 1, -1):
        if _live(rec := store.get(i)):
            yield i, rec
    for i in reversed(early):
        if i <= top and _live(rec := store.get(i)):
            yield i, rec


def _by_stamp(store: ObjectStore, scan: Scan, after: tuple[int, int] | None) -> Iterator[tuple[tuple, dict]]:
    """Live records by (modifiedon second, GUID): the order a client sees, since Dataverse
    shows whole seconds. Stored stamps are in ms, so each second's rows are re-sorted by id."""
    stamp = store.spec.system_stamp
    if scan.descending:
        bounds = [(ms, -1) for ms in (scan.stop_stamp, after and after[0] + 1000) if ms is not None]
        items = store.iter_by_stamp(
            after=min(bounds, default=None), min_stamp=scan.min_stamp, descending=True
        )
    else:
        low = scan.min_stamp
        if after is not None:
            low = max(low or 0, after[0])
        items = store.iter_by_stamp(min_stamp=low)
    for second, group in groupby(items, key=lambda item: item[1][stamp] // 1000 * 1000):
        if not scan.descending and scan.stop_stamp is not None and second >= scan.stop_stamp:
            return
        for i, rec in sorted(group, key=lambda item: item[0], reverse=scan.descending):
            key = (second, i)
            if after is None or (key < after if scan.descending else key > after):
                yield key, rec


def _sorted(
    store: ObjectStore,
    scan: Scan,
    columns: list[Column],
    predicate: Predicate,
    after: list | None,
    limit: int,
) -> Iterator[tuple[list, dict]]:
    """Any other order: one filtered pass keeping the ``limit + 1`` smallest keys after ``after``."""
    directions = (*(d for _, d in scan.keys), False)
    key_of = functools.cmp_to_key(functools.partial(_cmp_keys, directions))

    def matches() -> Iterator[tuple[list, dict]]:
        for i, rec in _by_index(store, None, scan.min_stamp):
            if predicate(rec):
                key = [comparable(c.edm, c.get(rec)) for c in columns] + [i]
                if after is None or _cmp_keys(directions, key, after) > 0:
                    yield key, rec

    return iter(heapq.nsmallest(limit + 1, matches(), key=lambda item: key_of(item[0])))


def _take(rows: Iterator[tuple[Any, dict]], limit: int) -> tuple[list[dict], Any]:
    """Up to ``limit`` rows, and the keyset position to continue from if more exist."""
    out: list[dict] = []
    last = None
    for key, rec in rows:
        if len(out) >= limit:
            return out, last
        out.append(rec)
        last = key
    return out, None


# ----------------------------------------------------------------------------- the dialect
class DynamicsDialect(Dialect):
    crm = "dynamics"
    catch_all_prefix = API

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        self._keys = _AlternateKeys()
        self._skiptokens = _TokenCodec()

    def record_holders(self, body: object, field: str) -> list[dict]:
        rows = body.get("value") if isinstance(body, dict) else None
        return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []

    def routes(self) -> list[Route]:
        keyed = API + "/{entityset}({key})"
        return [
            self.route(
                API + "/EntityDefinitions({key})/Attributes", self._attributes, ["GET"], name="attributes"
            ),
            self.route(
                API + "/EntityDefinitions({key})", self._entity_definition, ["GET"], name="entity_definition"
            ),
            self.route(
                "/{tenant}/oauth2/v2.0/token", self._token, ["POST"], name="token", auth=False, limited=False
            ),
            self.route(API + "/WhoAmI", self._whoami, ["GET"], name="whoami"),
            self.route(API + "/WhoAmI()", self._whoami, ["GET"], name="whoami"),
            self.route(keyed, self._retrieve, ["GET"], name="retrieve"),
            self.route(keyed, self._upsert, ["PATCH"], name="upsert"),
            self.route(keyed, self._delete, ["DELETE"], name="delete"),
            self.route(API + "/{entityset}", self._query, ["GET"], name="query"),
            self.route(API + "/{entityset}", self._create, ["POST"], name="create"),
        ]

    def not_found_route(self) -> Route:
        async def not_found(request: Request) -> Response:
            segment = request.path_params["rest"].split("/")[0] or request.url.path
            raise _fail(404, f"Resource not found for the segment '{segment}'.", BAD_QUERY)

        return self.route(
            API + "/{rest:path}",
            not_found,
            ["GET", "POST", "PATCH", "PUT", "DELETE"],
            name="not_found",
            auth=False,
            limited=False,
        )

    # -- pipeline hooks ---------------------------------------------------------------
    def error(self, status: int, message: str, code: str | None = None, **extra: object) -> Response:
        if not (code or "").startswith("0x"):
            code = _STATUS_CODES.get(status, UNEXPECTED)
        return json_response({"error": {"code": code, "message": message}}, status, {"OData-Version": "4.0"})

    def auth_error(self, failure: AuthFailure) -> Response:
        cfg = self.state.config
        challenge = (
            f"Bearer authorization_uri={self.state.base_url}/{cfg.dynamics_tenant}/oauth2/authorize, "
            f"resource_id=https://{cfg.dynamics_org}.crm.dynamics.com/"
        )
        return Response(b"", status_code=401, headers={"WWW-Authenticate": challenge})

    def check_limits(self, request: Request) -> LimitDecision:
        return self.state.limits_dynamics.check()

    def limit_error(self, decision: LimitDecision) -> Response:
        headers = {"Retry-After": str(max(1, math.ceil(decision.retry_after))), **decision.headers}
        limit = self.state.limits_dynamics.window.limit
        message = f"Number of requests exceeded the limit of {limit} over time window of 300 seconds."
        return json_response({"error": {"code": RATE_LIMITED, "message": message}}, 429, headers)

    def injected_limit(self, fault: Fault) -> LimitDecision:
        return LimitDecision(False, "NumberOfRequests", fault.delay if fault.delay is not None else 1.0)

    # -- Azure AD token endpoint ------------------------------------------------------
    def _aad_error(self, status: int, error: str, code: int, description: str) -> Response:
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        now = self.state.clock.now_dt().strftime("%Y-%m-%d %H:%M:%SZ")
        return json_response(
            {
                "error": error,
                "error_description": f"AADSTS{code}: {description} Trace ID: {trace} "
                f"Correlation ID: {correlation} Timestamp: {now}",
                "error_codes": [code],
                "timestamp": now,
                "trace_id": trace,
                "correlation_id": correlation,
                "error_uri": f"https://login.microsoftonline.com/error?code={code}",
            },
            status,
        )

    def _scope_ok(self, scope: str) -> bool:
        org = f"https://{self.state.config.dynamics_org}.crm.dynamics.com"
        accepted = {f"{org}/.default", f"{org}//.default", f"{self.state.base_url}/.default"}
        return any(s in accepted for s in scope.split())

    async def _token(self, request: Request) -> Response:
        cfg = self.state.config
        tenant = request.path_params["tenant"]
        if tenant != cfg.dynamics_tenant:
            return self._aad_error(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure "
                "you have the correct tenant ID and are signing into the correct cloud.",
            )
        form = await form_or_json(request)
        grant = form.get("grant_type")
        if grant == "client_credentials":
            return self._client_credentials(form)
        if grant == "refresh_token":
            token = self.tokens.refresh(form.get("refresh_token", ""))
            if token is None:
                return self._aad_error(
                    400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."
                )
            return self._token_response(token.access_token, token.refresh_token)
        return self._aad_error(
            400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant}'."
        )

    def _client_credentials(self, form: dict[str, str]) -> Response:
        client_id, secret, scope = form.get("client_id"), form.get("client_secret"), form.get("scope")
        if client_id != self.tokens.client_id:
            tenant = self.state.config.dynamics_tenant
            return self._aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory '{tenant}'.",
            )
        if not secret:
            return self._aad_error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following "
                "parameter: 'client_assertion' or 'client_secret'.",
            )
        if not self.tokens.check_client(client_id, secret):
            return self._aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the "
                "secret being sent in the request is the client secret value, not the client "
                f"secret ID, for a secret added to app '{client_id}'.",
            )
        if not scope:
            return self._aad_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'scope'.",
            )
        if not self._scope_ok(scope):
            return self._aad_error(
                400,
                "invalid_scope",
                70011,
                f"The provided value for the input parameter "
                f"'scope' is not valid. The scope {scope} is not valid.",
            )
        # AAD returns no refresh token to a client-credentials grant; ``offline_access`` asks the
        # sandbox for one anyway so the refresh-token grant can be rehearsed
        token = self.tokens.issue(client_id, with_refresh="offline_access" in scope.split())
        return self._token_response(token.access_token, token.refresh_token)

    def _token_response(self, access_token: str, refresh_token: str | None) -> Response:
        lifetime = int(self.tokens.lifetime_seconds)
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        }
        if refresh_token:
            body["refresh_token"] = refresh_token
        return json_response(body, headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})

    async def _whoami(self, request: Request) -> Response:
        return self._json(
            {
                "@odata.context": f"{self._api(request)}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                **_ORG_IDS,
            }
        )

    # -- metadata ---------------------------------------------------------------------
    def _definition(self, request: Request) -> tuple[EntitySet, ObjectSpec]:
        """The entity named by ``EntityDefinitions(LogicalName='contact')`` (the alternate key a
        client uses; a MetadataId GUID works too)."""
        key = request.path_params["key"].strip()
        match = re.fullmatch(r"LogicalName\s*=\s*'([^']*)'", key)
        wanted = match.group(1) if match else key.strip("{}").lower()
        for es in ENTITY_SETS.values():
            if wanted in (es.logical, _metadata_id(es.logical)):
                return es, self.state.store(self.crm, es.name).spec
        raise _fail(
            404,
            f"Could not find an entity with the LogicalName '{wanted}'."
            if match
            else f"Could not find an entity with the MetadataId '{wanted}'.",
            NOT_FOUND,
        )

    async def _entity_definition(self, request: Request) -> Response:
        es, spec = self._definition(request)
        self._options(request, {"$select"})
        return self._json(
            {
                "@odata.context": f"{self._api(request)}/$metadata#EntityDefinitions/$entity",
                **_entity_metadata(es, spec),
            }
        )

    async def _attributes(self, request: Request) -> Response:
        """``EntityDefinitions(LogicalName='x')/Attributes``: one AttributeMetadata per column,
        lookups under their attribute name (``parentcustomerid``, not ``_parentcustomerid_value``)."""
        es, spec = self._definition(request)
        options = self._options(request, {"$select"})
        rows = [_attribute_metadata(es, f) for f in spec.fields]
        context = f"{self._api(request)}/$metadata#EntityDefinitions('{es.logical}')/Attributes"
        if "$select" in options:
            names = [n.strip() for n in options["$select"].split(",") if n.strip()]
            unknown = [n for n in names if rows and n not in rows[0]]
            if unknown:
                raise _fail(
                    400,
                    f"Could not find a property named '{unknown[0]}' on type "
                    "'Microsoft.Dynamics.CRM.AttributeMetadata'.",
                    BAD_QUERY,
                )
            rows = [
                {k: v for k, v in row.items() if k in ("@odata.type", "MetadataId", *names)} for row in rows
            ]
            context += f"({','.join(names)})"
        return self._json({"@odata.context": context, "value": rows})

    # -- shared request pieces --------------------------------------------------------
    def _api(self, request: Request) -> str:
        return str(request.base_url).rstrip("/") + API

    @staticmethod
    def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return json_response(body, status, {"OData-Version": "4.0", **(headers or {})})

    def _entity(self, name: str) -> tuple[EntitySet, ObjectStore]:
        es = ENTITY_SETS.get(name)
        if es is None:
            raise _fail(404, f"Resource not found for the segment '{name}'.", BAD_QUERY)
        return es, self.state.store(self.crm, name)

    @staticmethod
    def _unknown_property(es: EntitySet, name: str) -> SandboxError:
        return _fail(400, f"Could not find a property named '{name}' on type '{es.type_name}'.", BAD_QUERY)

    def _column(self, es: EntitySet, spec: ObjectSpec, name: str) -> Column:
        field = spec.field(name)
        if field is None:
            raise ODataError(f"Could not find a property named '{name}' on type '{es.type_name}'.")
        return Column(EDM[field.type], _getter(name))

    @staticmethod
    def _options(request: Request, allowed: set[str]) -> dict[str, str]:
        """System query options, refusing repeats and the ones Dataverse (or the sandbox) lacks."""
        options: dict[str, str] = {}
        for name, value in request.query_params.multi_items():
            if name in _UNSUPPORTED_OPTIONS:
                raise _fail(400, _UNSUPPORTED_OPTIONS[name], BAD_QUERY)
            if not name.startswith("$"):
                continue  # custom query options are ignored, as by OData services
            if name not in allowed:
                raise _fail(400, f"The query parameter {name} is not supported here.", BAD_QUERY)
            if name in options:
                raise _fail(
                    400,
                    f"Query option '{name}' was specified more than once, but it must be specified "
                    "at most once.",
                    BAD_QUERY,
                )
            options[name] = value
        return options

    def _select(self, es: EntitySet, spec: ObjectSpec, text: str | None) -> tuple[list[str], list[str]]:
        """(columns as requested, for @odata.context; columns to return, primary key first)."""
        if text is None:
            return [], [f.name for f in spec.fields]
        names = list(dict.fromkeys(n.strip() for n in text.split(",")))
        for name in names:
            if not name:
                raise _fail(400, f"Syntax error in $select: '{text}'.", BAD_QUERY)
            if spec.field(name) is None:
                raise self._unknown_property(es, name)
        return names, list(dict.fromkeys([spec.id_field, *names]))

    @staticmethod
    def _formatter(spec: ObjectSpec, columns: list[str]) -> Callable[[dict], dict]:
        datetimes = spec.datetime_fields
        readers = [(name, _getter(name), name in datetimes) for name in columns]

        def row(rec: dict) -> dict:
            out: dict[str, Any] = {"@odata.etag": _etag(rec)}
            for name, get, is_datetime in readers:
                value = get(rec)
                out[name] = odata_datetime(value) if is_datetime else value
            return out

        return row

    def _context(self, request: Request, es: EntitySet, requested: list[str], suffix: str = "") -> str:
        selection = f"({','.join(requested)})" if requested else ""
        return f"{self._api(request)}/$metadata#{es.name}{selection}{suffix}"

    def _link(self, request: Request, es: EntitySet, params: list[tuple[str, str]]) -> str:
        return f"{self._api(request)}/{es.name}?" + urlencode(params, quote_via=quote, safe="$,()'*:")

    @staticmethod
    def _page_size(prefs: dict[str, str | None], token: dict | None) -> tuple[int, bool]:
        """(page size, whether the client asked for it and so gets it echoed)."""
        raw = prefs.get("odata.maxpagesize")
        if raw and raw.isdigit() and int(raw) > 0:
            return min(int(raw), MAX_PAGE_SIZE), True
        if token is not None and isinstance(token.get("n"), int):
            return token["n"], False
        return MAX_PAGE_SIZE, False

    # -- GET collection -----------------------------------------------------------------
    async def _query(self, request: Request) -> Response:
        es, store = self._entity(request.path_params["entityset"])
        options = self._options(request, _SYSTEM_OPTIONS)
        prefs = _preferences(request)
        token = self._skiptokens.decode(options["$skiptoken"]) if "$skiptoken" in options else None
        size, echo = self._page_size(prefs, token)
        requested, columns = self._select(es, store.spec, options.get("$select"))
        applied = [f"odata.maxpagesize={size}"] if echo else []
        tracking = (
            "$deltatoken" in options
            or "odata.track-changes" in prefs
            or (token is not None and token["k"] in ("t", "d"))
        )
        if tracking and es.name in self.state.untracked_dynamics:
            # the wording is Dataverse's ChangeTrackingNotEnabledForEntity; the HTTP status (400) is assumed
            raise _fail(400, f"Entity {es.logical} isn't enabled for change tracking.", NOT_TRACKED)
        try:
            if tracking:
                return self._tracked(
                    request,
                    es,
                    store,
                    options,
                    token,
                    size,
                    requested,
                    columns,
                    ["odata.track-changes", *applied],
                )
            return self._listed(request, es, store, options, token, size, requested, columns, applied)
        except ODataError as exc:
            raise _fail(400, exc.message, exc.code) from None

    def _orderby(self, es: EntitySet, spec: ObjectSpec, text: str | None) -> tuple[tuple[str, bool], ...]:
        if text is None:
            return ()
        keys = []
        for item in text.split(","):
            parts = item.split()
            if not parts or len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("asc", "desc")):
                raise _fail(400, f"Syntax error in $orderby: '{text}'.", BAD_QUERY)
            if spec.field(parts[0]) is None:
                raise self._unknown_property(es, parts[0])
            keys.append((parts[0], len(parts) == 2 and parts[1] == "desc"))
        return tuple(keys)

    @staticmethod
    def _plan(spec: ObjectSpec, node: Node | None, orderby: tuple[tuple[str, bool], ...]) -> Scan:
        terms = conjuncts(node) if node is not None else []
        pk, stamp = spec.id_field, spec.system_stamp
        for term in terms:
            if (
                isinstance(term, Compare)
                and term.op == "eq"
                and isinstance(term.left, Prop)
                and term.left.name == pk
                and isinstance(term.right, Literal)
                and term.right.kind == "guid"
            ):
                return Scan("lookup", lookup=term.right.value)
        names = [name for name, _ in orderby]
        ids = next((found for term in terms if (found := _pk_in(term, pk)) is not None), None)
        if ids is not None and (not orderby or orderby == ((pk, False),)):
            return Scan("lookups", lookups=ids)
        low, stop = _stamp_bounds(terms, stamp)
        directions = {d for _, d in orderby}
        if not orderby or names == [pk]:
            return Scan("index", descending=bool(orderby) and orderby[0][1], min_stamp=low)
        if names in ([stamp], [stamp, pk]) and len(directions) == 1:
            return Scan("stamp", descending=orderby[0][1], min_stamp=low, stop_stamp=stop)
        return Scan("sort", keys=orderby, min_stamp=low)

    def _rows(
        self, es: EntitySet, store: ObjectStore, scan: Scan, predicate: Predicate, after: Any, limit: int
    ) -> Iterator[tuple[Any, dict]]:
        """Matching live rows strictly after the keyset position ``after``, in the scan's order."""
        if scan.order == "lookup":
            found = store.get_by_id(scan.lookup or "")
            if after is None and found is not None and _live(found[1]) and predicate(found[1]):
                yield found[0], found[1]
            return
        if scan.order == "lookups":
            found = (store.get_by_id(value) for value in scan.lookups)
            for i in sorted({hit[0] for hit in found if hit is not None}):
                rec = store.get(i)
                if (after is None or i > after) and _live(rec) and predicate(rec):
                    yield i, rec
            return
        if scan.order == "index":
            yield from (
                (i, r) for i, r in _by_index(store, after, scan.min_stamp, scan.descending) if predicate(r)
            )
        elif scan.order == "stamp":
            position = tuple(after) if after is not None else None
            yield from ((k, r) for k, r in _by_stamp(store, scan, position) if predicate(r))
        else:
            columns = [self._column(es, store.spec, name) for name, _ in scan.keys]
            yield from _sorted(store, scan, columns, predicate, after, limit)

    def _count(self, es: EntitySet, store: ObjectStore, scan: Scan, predicate: Predicate | None) -> int:
        """Matching rows, counted no further than Dataverse reports (COUNT_LIMIT + 1)."""
        if predicate is None:
            return store.count()
        if scan.order == "sort":
            scan = replace(scan, order="index", descending=False)
        n = 0
        for _ in self._rows(es, store, scan, predicate, None, COUNT_LIMIT + 1):
            n += 1
            if n > COUNT_LIMIT:
                break
        return n

    def _listed(
        self,
        request: Request,
        es: EntitySet,
        store: ObjectStore,
        options: dict[str, str],
        token: dict | None,
        size: int,
        requested: list[str],
        columns: list[str],
        applied: list[str],
    ) -> Response:
        spec = store.spec
        node = parse_filter(options["$filter"]) if "$filter" in options else None
        predicate = (
            compile_filter(node, lambda name: self._column(es, spec, name)) if node is not None else None
        )
        orderby = self._orderby(es, spec, options.get("$orderby"))
        top = self._top(options.get("$top"))
        with_count = self._flag(options.get("$count"), "$count")
        scan = self._plan(spec, node, orderby)
        fingerprint = _query_hash(
            es.name, options.get("$filter"), options.get("$orderby"), options.get("$top")
        )
        after, remaining = None, top
        if token is not None:
            if token.get("k") != "q" or token.get("h") != fingerprint:
                raise _fail(
                    400,
                    "The $skiptoken does not belong to this query; use the @odata.nextLink exactly "
                    "as returned.",
                    INVALID_ARGUMENT,
                )
            after, remaining = token.get("p"), token.get("r")
        limit = size if remaining is None else min(size, remaining)
        with store.lock:
            rows, position = _take(
                self._rows(es, store, scan, predicate or (lambda rec: True), after, limit), limit
            )
            count = self._count(es, store, scan, predicate) if with_count else None
        body: dict[str, Any] = {"@odata.context": self._context(request, es, requested)}
        if count is not None:
            body["@odata.count"] = min(count, COUNT_LIMIT)
            if count > COUNT_LIMIT:
                body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] = True
        row = self._formatter(spec, columns)
        body["value"] = [row(rec) for rec in rows]
        left = None if remaining is None else remaining - len(rows)
        if position is not None and (left is None or left > 0):
            state: dict[str, Any] = {"k": "q", "p": position, "n": size, "h": fingerprint}
            if left is not None:
                state["r"] = left
            params = [(k, v) for k, v in request.query_params.multi_items() if k != "$skiptoken"]
            skiptoken = self._skiptokens.encode(state)
            body["@odata.nextLink"] = self._link(request, es, [*params, ("$skiptoken", skiptoken)])
        headers = {"Preference-Applied": ",".join(applied)} if applied else None
        return self._json(body, headers=headers)

    @staticmethod
    def _top(text: str | None) -> int | None:
        if text is None:
            return None
        if not text.isdigit():
            raise _fail(
                400,
                f"Invalid value '{text}' for $top query option found. The $top query option requires "
                "a non-negative integer value.",
                BAD_QUERY,
            )
        return int(text)

    @staticmethod
    def _flag(text: str | None, option: str) -> bool:
        if text is None or text == "false":
            return False
        if text == "true":
            return True
        raise _fail(400, f"'{text}' is not a valid count option; {option} takes true or false.", BAD_QUERY)

    # -- change tracking --------------------------------------------------------------
    def _tracked(
        self,
        request: Request,
        es: EntitySet,
        store: ObjectStore,
        options: dict[str, str],
        token: dict | None,
        size: int,
        requested: list[str],
        columns: list[str],
        applied: list[str],
    ) -> Response:
        for option in _TRACKING_REJECTS:
            if option in options:
                raise _fail(
                    400,
                    f"Change tracking does not support the {option} query option; request "
                    "odata.track-changes with $select only.",
                    TRACKING_OPTION,
                )
        fingerprint = _query_hash(es.name, "track")
        if token is not None and token.get("h") != fingerprint:
            raise _fail(
                400, "The $skiptoken does not belong to this change-tracking query.", INVALID_ARGUMENT
            )
        select = [("$select", options["$select"])] if "$select" in options else []
        row = self._formatter(store.spec, columns)
        with store.lock:
            if token is not None and token["k"] == "t":
                page, state, version = self._initial_page(store, row, token["v"], token["p"], size)
            elif token is not None and token["k"] == "d":
                page, state, version = self._delta_page(request, es, store, row, token["p"], token["v"], size)
            elif "$deltatoken" in options:
                since = self._delta_version(store, options["$deltatoken"])
                page, state, version = self._delta_page(request, es, store, row, since, store.version, size)
            else:
                page, state, version = self._initial_page(store, row, store.version, None, size)
            now_ms = self.state.clock.now_ms()
        body: dict[str, Any] = {
            "@odata.context": self._context(request, es, requested, "/$delta"),
            "value": page,
        }
        if state is not None:
            state.update({"n": size, "h": fingerprint})
            skiptoken = self._skiptokens.encode(state)
            body["@odata.nextLink"] = self._link(request, es, [*select, ("$skiptoken", skiptoken)])
        else:
            delta_token = _delta_token(version, now_ms)
            body["@odata.deltaLink"] = self._link(request, es, [*select, ("$deltatoken", delta_token)])
        return self._json(body, headers={"Preference-Applied": ",".join(applied)})

    @staticmethod
    def _initial_page(
        store: ObjectStore, row: Callable[[dict], dict], version: int, after: int | None, size: int
    ) -> tuple[list[dict], dict | None, int]:
        """A page of every live row, in GUID order; the delta version was captured on page one."""
        rows, position = _take(_by_index(store, after, None), size)
        state = {"k": "t", "v": version, "p": position} if position is not None else None
        return [row(rec) for rec in rows], state, version

    def _delta_page(
        self,
        request: Request,
        es: EntitySet,
        store: ObjectStore,
        row: Callable[[dict], dict],
        since: int,
        upto: int,
        size: int,
    ) -> tuple[list[dict], dict | None, int]:
        """Rows changed in ``(since, upto]`` in change order: current values, or a deletion."""
        deleted_context = f"{self._api(request)}/$metadata#{es.name}/$deletedEntity"
        out: list[dict] = []
        last = since
        for _, rec in store.changes_since(since):
            if rec[VERSION] > upto:
                break
            if len(out) >= size:
                return out, {"k": "d", "p": last, "v": upto}, upto
            if rec.get(DELETED):
                out.append(
                    {"@odata.context": deleted_context, "id": rec[store.spec.id_field], "reason": "deleted"}
                )
            else:
                out.append(row(rec))
            last = rec[VERSION]
        return out, None, upto

    def _delta_version(self, store: ObjectStore, token: str) -> int:
        m = _DELTA_TOKEN.match(token)
        if m is None or int(m.group(1)) > store.version:
            raise _fail(
                400,
                f"The delta token '{token}' is not valid for this table. Re-initialize change "
                "tracking with a full sync (Prefer: odata.track-changes).",
                EXPIRED_VERSION,
            )
        month, day, year, hh, mm, ss = (int(g) for g in m.groups()[1:])
        try:
            issued = datetime(year, month, day, hh, mm, ss, tzinfo=UTC).timestamp()
        except ValueError:
            issued = 0.0  # not a real instant: treat as long expired
        if self.state.clock.now() - issued > DELTA_TOKEN_DAYS * 86_400:
            raise _fail(
                400,
                "Version stamp associated with the client has expired. Please perform a full sync.",
                EXPIRED_VERSION,
            )
        return int(m.group(1))

    # -- single records ---------------------------------------------------------------
    def _locate(self, es: EntitySet, store: ObjectStore, text: str) -> tuple[int | None, str, dict[str, Any]]:
        """(index of the live record a key segment names or None, the 404 message if it is
        missing, the alternate-key values to give a record created through it)."""
        spec = store.spec
        try:
            key = parse_key(text)
        except ODataError as exc:
            raise _fail(400, exc.message, exc.code) from None
        if isinstance(key, dict) and set(key) == {spec.id_field}:
            key = key[spec.id_field]
        if isinstance(key, Literal):
            if key.kind != "guid":
                raise _fail(
                    400, f"The key value '{text}' is not a valid GUID for '{spec.id_field}'.", BAD_QUERY
                )
            found = store.get_by_id(key.value)
            index = found[0] if found is not None and _live(found[1]) else None
            return index, f"{es.logical} With Id = {key.value} Does Not Exist", {}
        alternate = [f.name for f in spec.fields if f.external_id]
        if sorted(key) != sorted(alternate):
            known = (
                f"its alternate key is '{','.join(alternate)}'" if alternate else "it has no alternate keys"
            )
            raise _fail(
                400,
                f"The key '{','.join(key)}' is not an alternate key of entity '{es.logical}': {known}.",
                BAD_QUERY,
            )
        values = {}
        for name, lit in key.items():
            if lit.kind != "string":
                raise _fail(400, f"The key value for '{name}' must be a quoted string.", BAD_QUERY)
            values[name] = lit.value
        name, value = next(iter(values.items()))
        missing = f"A record with the specified key values does not exist in {es.logical} entity"
        return self._keys.find(store, name, value), missing, values

    def _record(self, request: Request) -> tuple[EntitySet, ObjectStore, int | None, str, dict[str, Any]]:
        es, store = self._entity(request.path_params["entityset"])
        return es, store, *self._locate(es, store, request.path_params["key"])

    @staticmethod
    def _missing(message: str) -> SandboxError:
        return _fail(404, message, NOT_FOUND)

    async def _retrieve(self, request: Request) -> Response:
        es, store, index, missing, _ = self._record(request)
        options = self._options(request, {"$select"})
        requested, columns = self._select(es, store.spec, options.get("$select"))
        rec = store.get(index) if index is not None else None
        if not _live(rec):
            raise self._missing(missing)
        if_none_match = request.headers.get("if-none-match")
        if if_none_match and if_none_match != "*" and _etag_matches(if_none_match, rec):
            return Response(status_code=304, headers={"ETag": _etag(rec), "OData-Version": "4.0"})
        body = {
            "@odata.context": self._context(request, es, requested, "/$entity"),
            **self._formatter(store.spec, columns)(rec),
        }
        return self._json(body, headers={"ETag": _etag(rec)})

    async def _upsert(self, request: Request) -> Response:
        es, store, index, missing, key_values = self._record(request)
        options = self._options(request, {"$select"})
        values = self._payload(es, store.spec, await self._body(request, es))
        if_match, if_none_match = request.headers.get("if-match"), request.headers.get("if-none-match")
        with store.lock:
            current = store.get(index) if index is not None else None
            if not _live(current):
                if if_match:
                    raise self._missing(missing)
                result = self._write_new(es, store, {**values, **key_values})
            else:
                if if_none_match == "*":
                    raise _fail(412, "A record with matching key values already exists.", DUPLICATE_KEY)
                self._check_version(if_match, current)
                result = self._write_existing(es, store, index, current, values)
        return self._written(request, es, store, result, options)

    async def _create(self, request: Request) -> Response:
        es, store = self._entity(request.path_params["entityset"])
        options = self._options(request, {"$select"})
        values = self._payload(es, store.spec, await self._body(request, es))
        with store.lock:
            result = self._write_new(es, store, values)
        return self._written(request, es, store, result, options)

    async def _delete(self, request: Request) -> Response:
        es, store, index, missing, _ = self._record(request)
        with store.lock:
            current = store.get(index) if index is not None else None
            if not _live(current):
                raise self._missing(missing)
            self._check_version(request.headers.get("if-match"), current)
            store.delete(index, mode="user")
        return Response(status_code=204, headers={"OData-Version": "4.0"})

    @staticmethod
    def _check_version(if_match: str | None, current: dict) -> None:
        if if_match and not _etag_matches(if_match, current):
            raise _fail(
                412,
                "The version of the existing record doesn't match the RowVersion property provided.",
                VERSION_MISMATCH,
            )

    def _written(
        self,
        request: Request,
        es: EntitySet,
        store: ObjectStore,
        result: ChangeResult,
        options: dict[str, str],
    ) -> Response:
        entity_id = f"{self._api(request)}/{es.name}({store.spec.format_id(result.index)})"
        headers = {"OData-EntityId": entity_id, "OData-Version": "4.0"}
        if _preferences(request).get("return") != "representation":
            return Response(status_code=204, headers=headers)
        requested, columns = self._select(es, store.spec, options.get("$select"))
        body = {
            "@odata.context": self._context(request, es, requested, "/$entity"),
            **self._formatter(store.spec, columns)(result.record),
        }
        headers.update({"Preference-Applied": "return=representation", "ETag": _etag(result.record)})
        return json_response(body, 201 if result.created else 200, headers)

    # -- writes -----------------------------------------------------------------------
    @staticmethod
    async def _body(request: Request, es: EntitySet) -> Any:
        try:
            return orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise _fail(
                400,
                f"Error identified in Payload provided by the user for Entity :'{es.name}': the body "
                "is not valid JSON.",
                BAD_PAYLOAD,
            ) from None

    def _payload(self, es: EntitySet, spec: ObjectSpec, body: Any) -> dict[str, Any]:
        """Validated column values from a request body; read-only columns are ignored, as by Dataverse."""
        if not isinstance(body, dict):
            raise _fail(
                400,
                f"Error identified in Payload provided by the user for Entity :'{es.name}': expected "
                "a JSON object.",
                BAD_PAYLOAD,
            )
        values: dict[str, Any] = {}
        for name, value in body.items():
            if name.endswith("@odata.bind"):
                column, target = self._bind(es, name.removesuffix("@odata.bind"), value)
                values[column] = target
                continue
            if "@" in name:
                continue  # instance annotations (@odata.type, @odata.etag, ...) carry no column value
            field = spec.field(name)
            if field is None:
                raise _fail(
                    400,
                    f"The property '{name}' does not exist on type '{es.type_name}'. Make sure to "
                    "only use property names that are defined by the type.",
                    BAD_QUERY,
                )
            if field.type == REFERENCE:
                navs = [n for n, (column, _) in es.binds.items() if column == name]
                raise _fail(
                    400,
                    f"The lookup property '{name}' is read-only; set it with "
                    f"'{navs[0] if navs else name}@odata.bind': '/<entityset>(<id>)'.",
                    BAD_QUERY,
                )
            if field.updateable:
                values[name] = self._coerce(field, value)
        return values

    @staticmethod
    def _coerce(field: FieldSpec, value: Any) -> Any:
        """A JSON value as the store keeps it (datetimes as epoch ms); the wrong JSON type is a 400."""
        edm = EDM[field.type]
        if value is None or _ACCEPTS.get(edm, lambda v: False)(value):
            return value
        if edm == "Edm.DateTimeOffset" and isinstance(value, str):
            with contextlib.suppress(ValueError):
                return parse_datetime_ms(value)
        raise _fail(400, f"Cannot convert the literal '{value}' to the expected type '{edm}'.", BAD_PAYLOAD)

    def _bind(self, es: EntitySet, nav: str, value: Any) -> tuple[str, str | None]:
        """Resolve ``nav@odata.bind: "/accounts(<key>)"`` to (lookup column, target GUID)."""
        if nav not in es.binds:
            raise _fail(
                400,
                f"An undeclared property '{nav}' which only has property annotations in the payload "
                "but no property value was found in the payload. In OData, only declared navigation "
                "properties and declared named streams can be represented as properties without "
                "values.",
                BAD_QUERY,
            )
        column, target_set = es.binds[nav]
        if value is None:
            return column, None
        m = _BIND.match(value) if isinstance(value, str) else None
        if m is None or m.group("set") != target_set:
            raise _fail(
                400, f"'{nav}@odata.bind' must reference '/{target_set}(<id>)', got {value!r}.", BAD_PAYLOAD
            )
        if target_set not in ENTITY_SETS:  # owners are not emulated: any GUID is accepted
            key = m.group("key").strip("{}").lower()
            if not re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", key):
                raise _fail(400, f"'{nav}@odata.bind' must reference a GUID, got {value!r}.", BAD_PAYLOAD)
            return column, key
        target_es, target_store = self._entity(target_set)
        index, missing, _ = self._locate(target_es, target_store, m.group("key"))
        if index is None:
            raise self._missing(missing)
        return column, target_store.spec.format_id(index)

    def _check_keys(self, store: ObjectStore, values: dict[str, Any], index: int | None) -> None:
        for field in store.spec.fields:
            if field.external_id and values.get(field.name) is not None:
                owner = self._keys.find(store, field.name, values[field.name])
                if owner is not None and owner != index:
                    raise _fail(412, "A record with matching key values already exists.", DUPLICATE_KEY)

    def _write_new(self, es: EntitySet, store: ObjectStore, values: dict[str, Any]) -> ChangeResult:
        spec = store.spec
        missing = [name for name in spec.required_fields if values.get(name) in (None, "")]
        if missing:
            raise _fail(
                400,
                f"Required field '{missing[0]}' is missing: a {es.logical} needs "
                f"{', '.join(spec.required_fields)}.",
                REQUIRED,
            )
        self._check_keys(store, values, None)
        if spec.field("fullname") is not None:
            values["fullname"] = _fullname(values)
        return store.create(values, mode="user", client=True)

    def _write_existing(
        self, es: EntitySet, store: ObjectStore, index: int, current: dict, values: dict[str, Any]
    ) -> ChangeResult:
        missing = [
            name for name in store.spec.required_fields if name in values and values[name] in (None, "")
        ]
        if missing:
            raise _fail(400, f"Required field '{missing[0]}' cannot be cleared.", REQUIRED)
        self._check_keys(store, values, index)
        if store.spec.field("fullname") is not None:
            values["fullname"] = _fullname({**current, **values})
        return store.update(index, values, mode="user", client=True)
