"""HubSpot CRM v3 dialect: objects, search, batch, properties and OAuth at HubSpot's real paths.

hubspot-api-client 12 validates every response against its models, so the shapes here follow
the fields those models require (objects: ``id, properties, createdAt, updatedAt, archived``;
errors: ``message, correlationId, category``; batches: ``status, results, startedAt,
completedAt``). Property values are strings, as HubSpot sends them.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .auth import AuthFailure
from .dialect import Dialect, SandboxError, form_or_json
from .faults import Fault
from .formats import iso_z, json_response, parse_datetime_ms
from .hubspot_search import ID_PROPERTY, parse_search, run_search
from .limits import LimitDecision
from .schema import BOOLEAN, DATETIME, ID, INT, PHONE, PICKLIST, TEXT, FieldSpec, ObjectSpec
from .state import SandboxState
from .store import DELETED, DELETED_AT, ObjectStore

OBJECT_ALIASES = {
    "contacts": "contacts",
    "contact": "contacts",
    "0-1": "contacts",
    "companies": "companies",
    "company": "companies",
    "0-2": "companies",
    "tickets": "tickets",
    "ticket": "tickets",
    "0-5": "tickets",
}
DEFAULT_PROPERTIES = {
    "contacts": ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
    "companies": ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
    "tickets": (
        "content",
        "createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
        "hs_pipeline",
        "hs_pipeline_stage",
        "hs_ticket_priority",
        "subject",
    ),
}
# properties an ``idProperty`` may name (HubSpot requires a unique-value property)
UNIQUE_PROPERTIES = {"contacts": ("email",), "companies": ("domain",), "tickets": ()}
OBJECT_TYPE_NAMES = {"contacts": "CONTACT", "companies": "COMPANY", "tickets": "TICKET"}
GROUP_NAMES = {
    "contacts": "contactinformation",
    "companies": "companyinformation",
    "tickets": "ticketinformation",
}
MAX_BATCH = 100
LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT = 10, 100
MISSING_CREDENTIALS = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and "
    "you can find more details at "
    "https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)
CATEGORIES = {
    "NOT_FOUND": "OBJECT_NOT_FOUND",
    "UNKNOWN_EXCEPTION": "INTERNAL_ERROR",
    "SERVER_UNAVAILABLE": "SERVICE_UNAVAILABLE",
    "REQUEST_TIMEOUT": "TIMEOUT",
}
LIMIT_MESSAGES = {
    "DAILY": "You have reached your daily limit.",
    "SECONDLY": "You have reached your secondly limit.",
    "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
}


@dataclass(frozen=True)
class Association:
    """A one-to-one link the sandbox stores as a reference property on the source record."""

    field: str
    type: str
    type_ids: frozenset[int]


ASSOCIATIONS = {
    ("contacts", "companies"): Association("associatedcompanyid", "contact_to_company", frozenset({1, 279})),
    ("tickets", "contacts"): Association("hs_contact_id", "ticket_to_contact", frozenset({16})),
}


def invalid(message: str, **extra: object) -> SandboxError:
    return SandboxError(400, message, "VALIDATION_ERROR", **extra)


def not_found(message: str = "resource not found") -> SandboxError:
    return SandboxError(404, message, "OBJECT_NOT_FOUND")


# ---------------------------------------------------------------- values
def property_value(spec: FieldSpec, value: object) -> str | None:
    """A stored value as HubSpot prints it: ISO datetimes, ``true``/``false``, everything a string."""
    if value is None:
        return None
    if spec.type == DATETIME:
        return iso_z(int(value))  # type: ignore[arg-type]
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class PropertyError(ValueError):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def native_value(spec: FieldSpec, raw: object) -> object:
    """A written property value in the store's form; raises PropertyError as HubSpot would refuse it."""
    if raw is None or raw == "":
        return None
    text = raw if isinstance(raw, str) else ("true" if raw is True else "false" if raw is False else str(raw))
    if spec.type == DATETIME:
        try:
            return parse_datetime_ms(text)
        except ValueError:
            raise PropertyError(f"{text} was not a valid long or ISO 8601 date.", "INVALID_DATE") from None
    if spec.type == BOOLEAN:
        if text.lower() not in ("true", "false"):
            raise PropertyError(f"{text} was not a valid boolean (true or false).", "INVALID_BOOLEAN")
        return text.lower() == "true"
    if spec.type == INT:
        try:
            return int(float(text))
        except ValueError:
            raise PropertyError(f"{text} was not a valid number.", "INVALID_INTEGER") from None
    if spec.type == PICKLIST and text not in spec.picklist:
        raise PropertyError(
            f"{text} was not one of the allowed options: {', '.join(spec.picklist)}", "INVALID_OPTION"
        )
    return text


def _problem(name: str, message: str, code: str) -> dict:
    return {
        "isValid": False,
        "message": message,
        "error": code,
        "name": name,
        "localizedErrorMessage": message,
    }


def property_problems(spec: ObjectSpec, props: object, creating: bool) -> tuple[dict, list[dict]]:
    """Converted ``properties`` of a write, and the problem of every invalid one."""
    if not isinstance(props, dict):
        raise invalid("properties must be an object of property values.")
    out: dict = {}
    problems: list[dict] = []
    for name, raw in props.items():
        field = spec.field(str(name))
        if field is None:
            problems.append(_problem(name, f'Property "{name}" does not exist', "PROPERTY_DOESNT_EXIST"))
        elif not field.updateable:
            problems.append(
                _problem(
                    name, f'"{name}" is a read only property; its value cannot be set.', "READ_ONLY_VALUE"
                )
            )
        else:
            try:
                out[field.name] = native_value(field, raw)
            except PropertyError as exc:
                problems.append(_problem(name, str(exc), exc.code))
    if creating:
        problems += [
            _problem(r, f'Property "{r}" is required.', "REQUIRED_PROPERTY_MISSING")
            for r in spec.required_fields
            if out.get(r) is None
        ]
    return out, problems


def invalid_properties(problems: list[dict]) -> SandboxError:
    """The 400 HubSpot answers for invalid property values: one message listing every problem."""
    return invalid(
        "Property values were not valid: " + orjson.dumps(problems).decode(),
        context={"properties": [p["name"] for p in problems]},
    )


def write_values(spec: ObjectSpec, props: object, creating: bool) -> dict:
    """Validate and convert ``properties`` of a write; one 400 lists every invalid property."""
    out, problems = property_problems(spec, props, creating)
    if problems:
        raise invalid_properties(problems)
    return out


def association_values(obj: str, raw: object) -> dict:
    """Reference properties set by a create's ``associations`` (the links the sandbox models)."""
    out: dict = {}
    if not isinstance(raw, list):
        return out
    for item in raw:
        if not isinstance(item, dict):
            continue
        target = str((item.get("to") or {}).get("id") or "")
        type_ids = {t.get("associationTypeId") for t in item.get("types") or [] if isinstance(t, dict)}
        for (source, _), link in ASSOCIATIONS.items():
            if source == obj and target and type_ids & link.type_ids:
                out[link.field] = target
    return out


def _normalize_key(value: object) -> str | None:
    """How unique properties are matched: trimmed and case-insensitive (emails, domains)."""
    if value is None:
        return None
    text = str(value).strip().lower()
    return text or None


class PropertyIndex:
    """value -> record indexes for one unique property.

    The base half is built once on first use (base records never change; this costs one pass
    over the generated records); the overlay half follows every change through a store listener.
    It holds the store's parts, not the store, so a reset sandbox's old store can be collected.
    """

    def __init__(self, store: ObjectStore, prop: str) -> None:
        self.prop = prop
        self._spec, self._gen, self._base_count = store.spec, store.gen, store.base_count
        self._live_overlay = store.overlay
        self._base: dict[str, list[int]] | None = None
        self._overlay_value: dict[int, str | None] = {}
        self._overlay: dict[str, set[int]] = {}
        with store.lock:
            for index, rec in store.overlay.items():
                self._track(index, rec)
            store.listeners.append(self._on_change)

    def _on_change(self, _event: str, rec: dict) -> None:
        index = self._spec.parse_id(str(rec[self._spec.id_field]))
        if index is not None:
            self._track(index, rec)

    def _track(self, index: int, rec: dict) -> None:
        old = self._overlay_value.get(index)
        if old is not None:
            self._overlay.get(old, set()).discard(index)
        value = None if rec.get(DELETED) else _normalize_key(rec.get(self.prop))
        self._overlay_value[index] = value
        if value is not None:
            self._overlay.setdefault(value, set()).add(index)

    def _base_index(self) -> dict[str, list[int]]:
        if self._base is None:
            base: dict[str, list[int]] = {}
            for index in range(self._base_count):
                value = _normalize_key(self._gen.record(index).get(self.prop))
                if value is not None:
                    base.setdefault(value, []).append(index)
            self._base = base
        return self._base

    def find(self, value: object) -> int | None:
        """The lowest live index whose property matches ``value``, or None."""
        key = _normalize_key(value)
        if key is None:
            return None
        candidates = set(self._overlay.get(key, ()))
        candidates.update(i for i in self._base_index().get(key, ()) if i not in self._live_overlay)
        return min(candidates) if candidates else None


# ---------------------------------------------------------------- request helpers
def _multi(request: Request, name: str) -> list[str]:
    """A list parameter sent repeated (``a=1&a=2``, as the client does) or comma-separated."""
    values = request.query_params.getlist(name)
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def _list_limit(value: str | None) -> int:
    if value is None or value == "":
        return LIST_DEFAULT_LIMIT
    try:
        return min(max(int(value), 1), LIST_MAX_LIMIT)
    except ValueError:
        raise invalid(f"limit must be an integer, got {value!r}.") from None


async def _json_body(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError as exc:
        raise invalid(f"Invalid input JSON: {exc}") from None
    if not isinstance(body, dict):
        raise invalid("Invalid input JSON: expected an object.")
    return body


def _batch_inputs(body: dict) -> list[dict]:
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
        raise invalid("inputs must be a list of objects.")
    if len(inputs) > MAX_BATCH:
        raise invalid(f"Too many inputs: {len(inputs)} (a batch takes at most {MAX_BATCH}).")
    return inputs


def _correlation_id() -> str:
    return str(uuid.uuid4())


class HubSpotDialect(Dialect):
    """HubSpot's paths, shapes and limits over the shared stores; API writes are user changes."""

    crm = "hubspot"
    catch_all_prefix = "/crm/v3"

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        self._indexes: weakref.WeakKeyDictionary[ObjectStore, dict[str, PropertyIndex]] = (
            weakref.WeakKeyDictionary()
        )

    def record_holders(self, body: object, field: str) -> list[dict]:
        """Object fields live under ``properties``; ``id`` and ``archived`` sit beside them."""
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            return []
        objects = [r for r in results if isinstance(r, dict)]
        if field in ("id", "archived", "archivedAt", "createdAt", "updatedAt"):
            return objects
        return [r["properties"] for r in objects if isinstance(r.get("properties"), dict)]

    def routes(self) -> list[Route]:
        r, obj = self.route, "/crm/v3/objects/{obj}"
        return [
            r("/oauth/v1/token", self._token, ["POST"], name="token", auth=False, limited=False),
            r("/crm/v3/properties/{obj}", self._properties, ["GET"], name="properties"),
            r("/crm/v3/properties/{obj}/{name}", self._property, ["GET"], name="property"),
            r(obj + "/search", self._search, ["POST"], name="search"),
            r(obj + "/batch/read", self._batch_read, ["POST"], name="batch_read"),
            r(obj + "/batch/create", self._batch_create, ["POST"], name="batch_create"),
            r(obj + "/batch/update", self._batch_update, ["POST"], name="batch_update"),
            r(obj + "/batch/upsert", self._batch_upsert, ["POST"], name="batch_upsert"),
            r(obj + "/batch/archive", self._batch_archive, ["POST"], name="batch_archive"),
            r(obj, self._list, ["GET"], name="list"),
            r(obj, self._create, ["POST"], name="create"),
            r(obj + "/{record_id}", self._get, ["GET"], name="get"),
            r(obj + "/{record_id}", self._update, ["PATCH"], name="update"),
            r(obj + "/{record_id}", self._archive, ["DELETE"], name="archive"),
        ]

    # ------------------------------------------------------------ errors and limits
    def error(self, status: int, message: str, code: str | None = None, **extra: object) -> Response:
        fallback = "VALIDATION_ERROR" if status < 500 else "INTERNAL_ERROR"
        category = CATEGORIES.get(code or "", code) or fallback
        body = {
            "status": "error",
            "message": message,
            "correlationId": _correlation_id(),
            "category": category,
        }
        body.update(extra)
        return json_response(body, status)

    def auth_error(self, failure: AuthFailure) -> Response:
        if failure.reason == "expired":
            return self.error(
                401,
                f"The OAuth token used to make this call expired "
                f"{failure.expired_seconds_ago} second(s) ago.",
                "EXPIRED_AUTHENTICATION",
            )
        message = {
            "missing": MISSING_CREDENTIALS,
            "revoked": "The OAuth token used to make this call has been revoked.",
        }.get(failure.reason, "The access token used to make this call is not valid.")
        return self.error(401, message, "INVALID_AUTHENTICATION")

    def check_limits(self, request: Request) -> LimitDecision:
        return self.state.limits_hubspot.check(is_search=request.url.path.endswith("/search"))

    def limit_error(self, decision: LimitDecision) -> Response:
        policy = decision.policy if decision.policy in LIMIT_MESSAGES else "TEN_SECONDLY_ROLLING"
        body = {
            "status": "error",
            "message": LIMIT_MESSAGES[policy],
            "errorType": "RATE_LIMIT",
            "correlationId": _correlation_id(),
            "policyName": policy,
        }
        return json_response(body, 429, headers=decision.headers)

    def injected_limit(self, fault: Fault) -> LimitDecision:
        limits = self.state.limits_hubspot
        headers = {
            "X-HubSpot-RateLimit-Max": str(limits.window.limit),
            "X-HubSpot-RateLimit-Remaining": "0",
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
        }
        return LimitDecision(
            False, "TEN_SECONDLY_ROLLING", fault.delay if fault.delay is not None else 1.0, headers
        )

    # ------------------------------------------------------------ oauth
    async def _token(self, request: Request) -> Response:
        form = await form_or_json(request)
        tokens, grant = self.tokens, form.get("grant_type")
        if not tokens.check_client(form.get("client_id"), form.get("client_secret")):
            return self._oauth_error("BAD_CLIENT_ID", "missing or invalid client id or client secret")
        if grant == "refresh_token":
            token = tokens.refresh(form.get("refresh_token") or "")
            if token is None:
                return self._oauth_error("BAD_REFRESH_TOKEN", "missing or unknown refresh token")
        elif grant == "authorization_code" and not form.get("code"):
            return self._oauth_error("BAD_AUTH_CODE", "missing or unknown auth code")
        elif grant in ("authorization_code", "client_credentials"):
            token = tokens.issue(str(form.get("client_id")))
        else:
            return self._oauth_error("BAD_GRANT_TYPE", f"unsupported grant_type {grant!r}")
        expires_in = round((token.expires_at or self.state.clock.now()) - self.state.clock.now())
        return json_response(
            {
                "access_token": token.access_token,
                "refresh_token": token.refresh_token,
                "expires_in": expires_in,
                "token_type": "bearer",
            }
        )

    @staticmethod
    def _oauth_error(status: str, message: str) -> Response:
        return json_response({"status": status, "message": message, "correlationId": _correlation_id()}, 400)

    # ------------------------------------------------------------ lookups
    def _store(self, request: Request) -> ObjectStore:
        raw = request.path_params["obj"]
        name = OBJECT_ALIASES.get(raw.lower())
        if name is None:
            raise invalid(f"Unable to infer object type from: {raw}")
        return self.state.store(self.crm, name)

    def _index_for(self, store: ObjectStore, prop: str) -> PropertyIndex:
        per_store = self._indexes.setdefault(store, {})
        if prop not in per_store:
            per_store[prop] = PropertyIndex(store, prop)
        return per_store[prop]

    def _id_property(self, store: ObjectStore, prop: str | None) -> str:
        if not prop or prop == ID_PROPERTY:
            return ID_PROPERTY
        if prop not in UNIQUE_PROPERTIES[store.spec.name]:
            raise invalid(
                f"{prop} is not a unique property of {store.spec.name}; idProperty must be one of "
                f"{', '.join((ID_PROPERTY, *UNIQUE_PROPERTIES[store.spec.name]))}."
            )
        return prop

    def _locate(
        self, store: ObjectStore, value: str, id_property: str | None = None, archived: bool = False
    ) -> tuple[int, dict] | None:
        """The record ``value`` names (by id or a unique property): live, or archived only if asked."""
        prop = self._id_property(store, id_property)
        if prop == ID_PROPERTY:
            found = store.get_by_id(str(value).strip())
        else:
            index = None if archived else self._index_for(store, prop).find(value)
            found = None if index is None else (index, store.get(index))
        if found is None or bool(found[1].get(DELETED)) != archived:
            return None
        return found

    def _require(
        self, store: ObjectStore, value: str, id_property: str | None = None, archived: bool = False
    ) -> tuple[int, dict]:
        found = self._locate(store, value, id_property, archived)
        if found is None:
            raise not_found()
        return found

    def _conflict(self, store: ObjectStore, values: dict) -> None:
        """HubSpot refuses a second contact with an existing email (409 CONFLICT)."""
        if store.spec.name != "contacts" or not values.get("email"):
            return
        existing = self._index_for(store, "email").find(values["email"])
        if existing is not None:
            raise SandboxError(
                409, f"Contact already exists. Existing ID: {store.spec.format_id(existing)}", "CONFLICT"
            )

    # ------------------------------------------------------------ serialization
    @staticmethod
    def _names(spec: ObjectSpec, requested: list[str], extra: tuple[str, ...] = ()) -> list[str]:
        """Requested properties (unknown ones silently dropped) plus the three HubSpot always sends."""
        if not requested:
            return sorted({*DEFAULT_PROPERTIES[spec.name], *extra})
        always = (spec.created_field, ID_PROPERTY, spec.system_stamp)
        return sorted({n for n in (*requested, *extra) if spec.field(n)} | set(always))

    def _object(
        self, store: ObjectStore, rec: dict, names: list[str], associations: Sequence[str] = ()
    ) -> dict:
        spec = store.spec
        by_name = spec.by_name
        out: dict = {
            "id": str(rec[spec.id_field]),
            "properties": {n: property_value(by_name[n], rec.get(n)) for n in names},
            "createdAt": iso_z(rec[spec.created_field]),
            "updatedAt": iso_z(rec[spec.system_stamp]),
            "archived": bool(rec.get(DELETED)),
        }
        if rec.get(DELETED):
            out["archivedAt"] = iso_z(rec.get(DELETED_AT))
        linked = self._associations(spec.name, rec, associations)
        if linked:
            out["associations"] = linked
        return out

    @staticmethod
    def _associations(obj: str, rec: dict, wanted: Sequence[str]) -> dict:
        out = {}
        for raw in wanted:
            target = OBJECT_ALIASES.get(raw.lower())
            link = ASSOCIATIONS.get((obj, target or ""))
            if link is not None and target is not None and rec.get(link.field):
                out[target] = {"results": [{"id": str(rec[link.field]), "type": link.type}]}
        return out

    # ------------------------------------------------------------ objects
    def _list_stream(self, store: ObjectStore, start: int, archived: bool) -> Iterator[tuple[int, dict]]:
        if not archived:
            return store.iter_by_index(start)
        # archived records all live in the overlay: no need to generate the base
        with store.lock:
            indexes = sorted(i for i, rec in store.overlay.items() if i >= start and rec.get(DELETED))
        return ((i, store.overlay[i]) for i in indexes)

    async def _list(self, request: Request) -> Response:
        store, q = self._store(request), request.query_params
        limit = _list_limit(q.get("limit"))
        after = q.get("after")
        start = store.spec.parse_id(after) if after else 0
        if start is None:
            raise invalid(f"Invalid after cursor: {after!r}")
        names = self._names(store.spec, _multi(request, "properties"))
        associations = _multi(request, "associations")
        rows = list(islice(self._list_stream(store, start, _flag(q.get("archived"))), limit + 1))
        body: dict = {"results": [self._object(store, rec, names, associations) for _, rec in rows[:limit]]}
        if len(rows) > limit:
            cursor = store.spec.format_id(rows[limit][0])
            link = str(request.url.include_query_params(after=cursor))
            body["paging"] = {"next": {"after": cursor, "link": link}}
        return json_response(body)

    async def _get(self, request: Request) -> Response:
        store, q = self._store(request), request.query_params
        _, rec = self._require(
            store, request.path_params["record_id"], q.get("idProperty"), _flag(q.get("archived"))
        )
        names = self._names(store.spec, _multi(request, "properties"))
        return json_response(self._object(store, rec, names, _multi(request, "associations")))

    async def _create(self, request: Request) -> Response:
        store, body = self._store(request), await _json_body(request)
        return json_response(self._create_one(store, body), 201)

    def _create_one(self, store: ObjectStore, item: dict) -> dict:
        values = write_values(store.spec, item.get("properties"), creating=True)
        values.update(association_values(store.spec.name, item.get("associations")))
        self._conflict(store, values)
        created = store.create(values, mode="user", client=True)
        return self._object(store, created.record, self._names(store.spec, [], tuple(values)))

    async def _update(self, request: Request) -> Response:
        store, body = self._store(request), await _json_body(request)
        index, _ = self._require(
            store, request.path_params["record_id"], request.query_params.get("idProperty")
        )
        return json_response(self._update_one(store, index, body.get("properties")))

    def _update_one(self, store: ObjectStore, index: int, props: object) -> dict:
        values = write_values(store.spec, props, creating=False)
        changed = store.update(index, values, mode="user", client=True)
        return self._object(store, changed.record, self._names(store.spec, [], tuple(values)))

    async def _archive(self, request: Request) -> Response:
        """Archiving is idempotent: an unknown or already archived id still answers 204."""
        store = self._store(request)
        found = self._locate(store, request.path_params["record_id"])
        if found is not None:
            store.delete(found[0], mode="user")
        return Response(status_code=204)

    # ------------------------------------------------------------ search
    async def _search(self, request: Request) -> Response:
        store, body = self._store(request), await _json_body(request)
        search = parse_search(body, store.spec)
        result = run_search(store, search)
        names = self._names(store.spec, search.properties)
        out: dict = {
            "total": result.total,
            "results": [self._object(store, rec, names) for _, rec in result.rows],
        }
        next_offset = search.offset + len(result.rows)
        if result.rows and next_offset < result.total:
            # HubSpot offers the next page even when following it would cross the 10,000 cap
            out["paging"] = {"next": {"after": str(next_offset)}}
        return json_response(out)

    # ------------------------------------------------------------ batch
    def _batch_response(self, started: str, results: list[dict], errors: list[dict], status: int) -> Response:
        body: dict = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": started,
            "completedAt": iso_z(self.state.clock.now_ms()),
        }
        if errors:
            body.update(errors=errors, numErrors=len(errors))
            status = 207
        return json_response(body, status)

    @staticmethod
    def _batch_error(exc: SandboxError, context: dict[str, list[str]]) -> dict:
        category = CATEGORIES.get(exc.code or "", exc.code) or "VALIDATION_ERROR"
        return {
            "status": "error",
            "category": category,
            "message": exc.message,
            "context": {**context, **exc.extra.get("context", {})},
            "links": {},
            "errors": [],
        }

    def _now(self) -> str:
        return iso_z(self.state.clock.now_ms()) or ""

    async def _batch_read(self, request: Request) -> Response:
        store, body, started = self._store(request), await _json_body(request), self._now()
        inputs = _batch_inputs(body)
        archived = _flag(request.query_params.get("archived"))
        props = body.get("properties") if isinstance(body.get("properties"), list) else []
        names = self._names(store.spec, [str(p) for p in props])
        results, missing, seen = [], [], set()
        for item in inputs:
            value = str(item.get("id") or "")
            found = self._locate(store, value, body.get("idProperty"), archived)
            if found is None:
                missing.append(value)
            elif found[0] not in seen:
                seen.add(found[0])
                results.append(self._object(store, found[1], names))
        kind = OBJECT_TYPE_NAMES[store.spec.name]
        refused = not_found(
            f"Could not get some {kind} objects, they may be deleted or not exist. Check that ids are valid."
        )
        errors = [self._batch_error(refused, {"ids": missing})] if missing else []
        return self._batch_response(started, results, errors, 200)

    @staticmethod
    def _refuse_invalid_values(spec: ObjectSpec, inputs: list[dict]) -> None:
        """HubSpot checks every input's property values before writing any: one invalid value refuses
        the whole batch (a 400 listing the problems, naming no input), unlike a record that is missing
        (an error entry of a 207, the rest written)."""
        problems: list[dict] = []
        for item in inputs:
            problems += property_problems(spec, item.get("properties"), creating=False)[1]
        if problems:
            raise invalid_properties(problems)

    def _each(
        self, inputs: list[dict], run: Callable[[dict], dict], context: Callable[[dict], dict[str, list[str]]]
    ) -> tuple[list[dict], list[dict]]:
        """Run every input; a refused one becomes an error entry (a 207), the rest still apply."""
        results, errors = [], []
        for item in inputs:
            try:
                results.append(run(item))
            except SandboxError as exc:
                errors.append(self._batch_error(exc, context(item)))
        return results, errors

    async def _batch_create(self, request: Request) -> Response:
        store, body, started = self._store(request), await _json_body(request), self._now()
        inputs = _batch_inputs(body)
        self._refuse_invalid_values(store.spec, inputs)
        results, errors = self._each(inputs, lambda item: self._create_one(store, item), lambda item: {})
        return self._batch_response(started, results, errors, 201)

    async def _batch_update(self, request: Request) -> Response:
        store, body, started = self._store(request), await _json_body(request), self._now()
        inputs = _batch_inputs(body)
        self._refuse_invalid_values(store.spec, inputs)

        def update(item: dict) -> dict:
            index, _ = self._require(store, str(item.get("id") or ""), item.get("idProperty"))
            return self._update_one(store, index, item.get("properties"))

        results, errors = self._each(inputs, update, lambda item: {"ids": [str(item.get("id"))]})
        return self._batch_response(started, results, errors, 200)

    async def _batch_upsert(self, request: Request) -> Response:
        store, body, started = self._store(request), await _json_body(request), self._now()
        inputs = _batch_inputs(body)
        self._refuse_invalid_values(store.spec, inputs)
        keys = [
            (self._id_property(store, item.get("idProperty")), _normalize_key(item.get("id")))
            for item in inputs
        ]
        if any(value is None for _, value in keys):
            raise invalid("Every upsert input needs an id.")
        if len(set(keys)) != len(keys):
            raise invalid("Duplicate IDs found in batch input.")
        results, errors = self._each(
            inputs, lambda item: self._upsert_one(store, item), lambda item: {"ids": [str(item.get("id"))]}
        )
        return self._batch_response(started, results, errors, 200)

    def _upsert_one(self, store: ObjectStore, item: dict) -> dict:
        prop = self._id_property(store, item.get("idProperty"))
        value = str(item.get("id")).strip()
        found = self._locate(store, value, prop)
        if found is not None:
            return {**self._update_one(store, found[0], item.get("properties")), "new": False}
        if prop == ID_PROPERTY:
            raise not_found(
                f"No {store.spec.name} with id {value} to update; upsert creates only by a unique property."
            )
        props = item.get("properties") if isinstance(item.get("properties"), dict) else {}
        return {**self._create_one(store, {"properties": {**props, prop: value}}), "new": True}

    async def _batch_archive(self, request: Request) -> Response:
        store, body = self._store(request), await _json_body(request)
        for item in _batch_inputs(body):
            found = self._locate(store, str(item.get("id") or ""))
            if found is not None:
                store.delete(found[0], mode="user")
        return Response(status_code=204)

    # ------------------------------------------------------------ properties
    def _property_json(self, spec: ObjectSpec, field: FieldSpec, order: int) -> dict:
        kind, field_type = _property_types(field)
        options = [
            {"label": o, "value": o, "displayOrder": n, "hidden": False} for n, o in enumerate(field.picklist)
        ]
        if field.type == BOOLEAN:
            options = [
                {"label": "Yes", "value": "true", "displayOrder": 0, "hidden": False},
                {"label": "No", "value": "false", "displayOrder": 1, "hidden": False},
            ]
        return {
            "name": field.name,
            "label": field.display_label,
            "type": kind,
            "fieldType": field_type,
            "description": "",
            "groupName": GROUP_NAMES[spec.name],
            "options": options,
            "displayOrder": order,
            "calculated": False,
            "externalOptions": False,
            "hasUniqueValue": field.name == ID_PROPERTY,
            "hidden": False,
            "hubspotDefined": True,
            "formField": field.updateable,
            "archived": False,
            "modificationMetadata": {
                "readOnlyValue": not field.updateable,
                "readOnlyDefinition": True,
                "archivable": False,
            },
            **(
                {"referencedObjectType": OBJECT_TYPE_NAMES[field.reference_to]}
                if field.reference_to in OBJECT_TYPE_NAMES
                else {}
            ),
        }

    async def _properties(self, request: Request) -> Response:
        spec = self._store(request).spec
        results = [self._property_json(spec, f, n) for n, f in enumerate(spec.fields)]
        return json_response({"results": results})

    async def _property(self, request: Request) -> Response:
        spec = self._store(request).spec
        field = spec.field(request.path_params["name"])
        if field is None:
            raise not_found(f"Unable to find property {request.path_params['name']} on {spec.name}.")
        return json_response(self._property_json(spec, field, spec.fields.index(field)))


def _property_types(field: FieldSpec) -> tuple[str, str]:
    """HubSpot's (type, fieldType) for a sandbox field type."""
    return {
        DATETIME: ("datetime", "date"),
        BOOLEAN: ("bool", "booleancheckbox"),
        INT: ("number", "number"),
        ID: ("number", "number"),
        PICKLIST: ("enumeration", "select"),
        TEXT: ("string", "textarea"),
        PHONE: ("string", "phonenumber"),
    }.get(field.type, ("string", "text"))
