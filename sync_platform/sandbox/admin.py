"""The sandbox's admin/control API under ``/__sandbox/`` (documented in the README).

It changes records as a user, an automation or a timestamp-freezing admin script would,
configures the CRMs' own automations (triggers that fire on client writes), injects faults,
reads and moves the clock, tunes rate limits and reports request counters.
Errors are ``400 {"error": "..."}`` naming the offending field.
"""

from __future__ import annotations

from dataclasses import fields as dc_fields
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .faults import Fault
from .formats import iso_z, json_response, parse_datetime_ms
from .schema import DATETIME
from .state import CRMS, SandboxState
from .store import DELETED, DELETED_AT, VERSION, Automation, ObjectStore, RecordNotFound

MODES = ("user", "automation", "frozen")
# the field ``touch`` edits when the caller names none
TOUCH_FIELDS = {
    ("salesforce", "Contact"): "Title",
    ("salesforce", "Account"): "Phone",
    ("salesforce", "Case"): "Subject",
    ("hubspot", "contacts"): "jobtitle",
    ("hubspot", "companies"): "phone",
    ("hubspot", "tickets"): "subject",
    ("dynamics", "contacts"): "jobtitle",
    ("dynamics", "accounts"): "telephone1",
    ("dynamics", "incidents"): "title",
}


class AdminError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def export_record(store: ObjectStore, rec: dict) -> dict:
    """A record as the admin API shows it: native field names, ISO timestamps, deletion flags."""
    out = {
        k: (iso_z(v) if k in store.spec.datetime_fields else v)
        for k, v in rec.items()
        if not k.startswith("__")
    }
    out["_deleted"] = bool(rec.get(DELETED))
    out["_deleted_at"] = iso_z(rec.get(DELETED_AT))
    out["_version"] = rec.get(VERSION, 0)
    return out


def _coerce_fields(store: ObjectStore, values: Any, where: str) -> dict:
    if not isinstance(values, dict):
        raise AdminError(f"{where} must be an object of field values")
    out = {}
    for name, value in values.items():
        spec = store.spec.field(name)
        if spec is None:
            raise AdminError(f"{where}: unknown field {name!r} on {store.spec.crm}/{store.spec.name}")
        if spec.type == DATETIME and isinstance(value, str):
            try:
                value = parse_datetime_ms(value)
            except ValueError as exc:
                raise AdminError(f"{where}.{name}: {exc}") from None
        out[name] = value
    return out


def _mode(body: dict) -> str:
    mode = body.get("mode", "user")
    if mode not in MODES:
        raise AdminError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def _stamp(body: dict) -> int | None:
    if body.get("stamp") is None:
        return None
    try:
        return parse_datetime_ms(body["stamp"])
    except ValueError as exc:
        raise AdminError(f"stamp: {exc}") from None


def export_automation(automation: Automation) -> dict:
    return {
        "id": automation.id,
        "field": automation.field,
        "value": automation.value,
        "times": automation.times,
    }


def _index(store: ObjectStore, record_id: str) -> int:
    index = store.spec.parse_id(str(record_id))
    if index is None or store.get(index) is None:
        raise AdminError(f"no {store.spec.name} with id {record_id!r}", status=404)
    return index


def admin_routes(state: SandboxState) -> list[Route]:
    async def body_of(request: Request) -> dict:
        if not (await request.body()):
            return {}
        try:
            body = await request.json()
        except ValueError:
            raise AdminError("body is not valid JSON") from None
        if not isinstance(body, dict):
            raise AdminError("body must be a JSON object")
        return body

    def store_of(request: Request) -> ObjectStore:
        try:
            return state.store(request.path_params["crm"], request.path_params["obj"])
        except KeyError as exc:
            raise AdminError(str(exc.args[0]), status=404) from None

    def wrap(fn):
        async def endpoint(request: Request) -> Response:
            try:
                result = await fn(request)
            except AdminError as exc:
                return json_response({"error": str(exc)}, status=exc.status)
            except RecordNotFound as exc:
                return json_response(
                    {"error": f"record {exc.args[0]} does not exist or is deleted"}, status=404
                )
            return result if isinstance(result, Response) else json_response(result)

        return endpoint

    async def info(request: Request):
        return {
            "base_url": state.base_url,
            "seed": state.config.seed,
            "contacts": state.config.contacts,
            "conflict_share": state.config.conflict_share,
            "clock": clock_info(),
            "credentials": state.credentials(),
            "objects": {
                crm: {
                    name: {"records": s.count(), "deleted": s.count(only_deleted=True), "version": s.version}
                    for name, s in state.stores[crm].items()
                }
                for crm in CRMS
            },
        }

    def clock_info() -> dict:
        return {
            "now": iso_z(state.clock.now_ms()),
            "now_ms": state.clock.now_ms(),
            "frozen": state.clock.frozen,
        }

    async def clock(request: Request):
        if request.method == "GET":
            return clock_info()
        body = await body_of(request)
        if "freeze" in body:
            if body["freeze"]:
                at = body.get("at")
                state.clock.freeze(parse_datetime_ms(at) / 1000 if at is not None else None)
            else:
                state.clock.unfreeze()
        if "advance" in body:
            try:
                state.clock.advance(float(body["advance"]))
            except (TypeError, ValueError):
                raise AdminError("advance must be a number of seconds") from None
        return clock_info()

    async def record(request: Request):
        store = store_of(request)
        index = _index(store, request.path_params["record_id"])
        return export_record(store, store.get(index))

    async def create(request: Request):
        store, body = store_of(request), await body_of(request)
        records = body.get("records")
        if not isinstance(records, list) or not records:
            raise AdminError("records must be a non-empty list of field objects")
        mode, stamp = _mode(body), _stamp(body)
        values = [_coerce_fields(store, r, f"records[{n}]") for n, r in enumerate(records)]
        created = [store.create(v, mode=mode, stamp=stamp) for v in values]
        return {
            "ids": [store.spec.format_id(c.index) for c in created],
            "records": [export_record(store, c.record) for c in created],
        }

    async def update(request: Request):
        store, body = store_of(request), await body_of(request)
        mode, stamp = _mode(body), _stamp(body)
        if "updates" in body:
            updates = body["updates"]
            if not isinstance(updates, list):
                raise AdminError("updates must be a list of {id, fields}")
            pairs = [
                (_index(store, u.get("id")), _coerce_fields(store, u.get("fields"), f"updates[{n}].fields"))
                for n, u in enumerate(updates)
            ]
        else:
            ids = body.get("ids")
            if not isinstance(ids, list) or not ids:
                raise AdminError("ids must be a non-empty list (or pass updates)")
            fields = _coerce_fields(store, body.get("fields"), "fields")
            pairs = [(_index(store, i), fields) for i in ids]
        changed = [store.update(i, f, mode=mode, stamp=stamp) for i, f in pairs]
        return {"updated": len(changed), "records": [export_record(store, c.record) for c in changed[:100]]}

    async def delete(request: Request):
        store, body = store_of(request), await body_of(request)
        ids = body.get("ids")
        if not isinstance(ids, list) or not ids:
            raise AdminError("ids must be a non-empty list")
        mode, stamp = _mode(body), _stamp(body)
        done = [store.delete(_index(store, i), mode=mode, stamp=stamp) for i in ids]
        return {"deleted": len(done)}

    async def undelete(request: Request):
        store, body = store_of(request), await body_of(request)
        done = [store.undelete(_index(store, i)) for i in body.get("ids") or []]
        return {"undeleted": len(done)}

    async def touch(request: Request):
        """Edit ``count`` live records (every ``stride``-th from ``start``): bulk changes for tests."""
        store, body = store_of(request), await body_of(request)
        try:
            count = int(body.get("count", 1))
            start = int(body.get("start", 0))
            stride = max(1, int(body.get("stride", 1)))
        except (TypeError, ValueError):
            raise AdminError("count, start and stride must be integers") from None
        mode, stamp = _mode(body), _stamp(body)
        field = body.get("field") or TOUCH_FIELDS[(store.spec.crm, store.spec.name)]
        if store.spec.field(field) is None:
            raise AdminError(f"field: unknown field {field!r} on {store.spec.crm}/{store.spec.name}")
        ids = []
        with state.lock:
            index = start
            while len(ids) < count and index < store.total:
                rec = store.get(index)
                if rec is not None and not rec.get(DELETED):
                    value = body.get("value", f"edited v{store.version + 1}")
                    store.update(index, {field: value}, mode=mode, stamp=stamp)
                    ids.append(store.spec.format_id(index))
                index += stride
        return {
            "touched": len(ids),
            "field": field,
            "first_id": ids[0] if ids else None,
            "last_id": ids[-1] if ids else None,
            "ids": ids if len(ids) <= 1000 else None,
        }

    async def automations(request: Request):
        """The object's triggers/workflows: client writes through a CRM API fire them, admin writes do not."""
        store = store_of(request)
        if request.method == "DELETE":
            return {"cleared": store.clear_automations()}
        if request.method == "POST":
            body = await body_of(request)
            unknown = set(body) - {"field", "value", "times"}
            if unknown:
                raise AdminError(f"unknown automation field(s): {', '.join(sorted(unknown))}")
            if not isinstance(body.get("field"), str) or "value" not in body:
                raise AdminError("field (a field name) and value are required")
            value = _coerce_fields(store, {body["field"]: body["value"]}, "automation")[body["field"]]
            try:
                added = store.add_automation(body["field"], value, body.get("times", 1))
            except ValueError as exc:
                raise AdminError(str(exc)) from None
            return json_response(
                {
                    "automation": export_automation(added),
                    "automations": [export_automation(a) for a in store.automations],
                },
                status=201,
            )
        return {"automations": [export_automation(a) for a in store.automations]}

    async def change_tracking(request: Request):
        """Switch a Dataverse table's change tracking (on by default), as its "Track changes" setting."""
        if request.path_params["crm"] != "dynamics":
            raise AdminError("change tracking is a Dynamics (Dataverse) table setting", status=404)
        store, body = store_of(request), await body_of(request)
        if not isinstance(body.get("enabled"), bool):
            raise AdminError("enabled must be true or false")
        if body["enabled"]:
            state.untracked_dynamics.discard(store.spec.name)
        else:
            state.untracked_dynamics.add(store.spec.name)
        return {"entity_set": store.spec.name, "change_tracking": body["enabled"]}

    async def faults(request: Request):
        if request.method == "GET":
            return {"faults": state.faults.list()}
        if request.method == "DELETE":
            return {"cleared": state.faults.clear()}
        body = await body_of(request)
        allowed = {f.name for f in dc_fields(Fault)} - {"id", "until", "seen", "fired"}
        unknown = set(body) - allowed
        if unknown:
            raise AdminError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        if body.get("crm", "*") not in (*CRMS, "*"):
            raise AdminError(f"crm must be one of {', '.join(CRMS)} or '*'")
        try:
            fault = state.faults.add(Fault(**body))
        except (TypeError, ValueError) as exc:
            raise AdminError(str(exc)) from None
        return json_response(
            {"fault": {f.name: getattr(fault, f.name) for f in dc_fields(Fault)}}, status=201
        )

    async def tokens(request: Request):
        crm = request.path_params["crm"]
        if crm not in CRMS:
            raise AdminError(f"crm must be one of {', '.join(CRMS)}", status=404)
        body = await body_of(request)
        action = body.get("action")
        if action == "expire":
            return {"expired": state.tokens[crm].expire_all()}
        if action == "revoke":
            return {"revoked": state.tokens[crm].revoke_all(include_refresh=bool(body.get("refresh_tokens")))}
        raise AdminError("action must be 'expire' or 'revoke'")

    async def stats(request: Request):
        if request.method == "DELETE":
            state.stats.reset()
        return {"requests": state.stats.rows(), "total": state.stats.total()}

    async def limits(request: Request):
        if request.method == "PUT":
            body = await body_of(request)
            try:
                state.limits_hubspot.configure(
                    body.get("hubspot_per_10s"),
                    body.get("hubspot_daily"),
                    body.get("hubspot_search_per_second"),
                )
                state.limits_salesforce.configure(body.get("salesforce_daily"), body.get("salesforce_used"))
                state.limits_dynamics.configure(body.get("dynamics_per_5min"))
            except (TypeError, ValueError) as exc:
                raise AdminError(str(exc)) from None
            if body.get("reset_windows"):
                for lim in (state.limits_hubspot, state.limits_salesforce, state.limits_dynamics):
                    lim.reset()
        cfg = state.config.limits
        return {
            "hubspot_per_10s": cfg.hubspot_per_10s,
            "hubspot_daily": cfg.hubspot_daily,
            "hubspot_search_per_second": cfg.hubspot_search_per_second,
            "salesforce_daily": cfg.salesforce_daily,
            "salesforce_used": state.limits_salesforce.headers()["Sforce-Limit-Info"],
            "dynamics_per_5min": cfg.dynamics_per_5min,
        }

    async def alert_webhooks(request: Request):
        """A Slack-style webhook receiver: the platform's alert sink posts here in tests and the demo."""
        if request.method == "POST":
            body = await body_of(request)
            with state.lock:
                state.alert_webhooks.append(body)
                return {"ok": True, "received": len(state.alert_webhooks)}
        with state.lock:
            if request.method == "DELETE":
                cleared = len(state.alert_webhooks)
                state.alert_webhooks.clear()
                return {"cleared": cleared}
            return {"alerts": list(state.alert_webhooks)}

    async def reset(request: Request):
        body = await body_of(request)
        try:
            state.reset(
                contacts=body.get("contacts"),
                seed=body.get("seed"),
                conflict_share=body.get("conflict_share"),
            )
        except (TypeError, ValueError) as exc:
            raise AdminError(str(exc)) from None
        return await info(request)

    p = "/__sandbox"
    return [
        Route(f"{p}/", wrap(info), methods=["GET"]),
        Route(f"{p}/clock", wrap(clock), methods=["GET", "POST"]),
        Route(f"{p}/faults", wrap(faults), methods=["GET", "POST", "DELETE"]),
        Route(f"{p}/stats", wrap(stats), methods=["GET", "DELETE"]),
        Route(f"{p}/limits", wrap(limits), methods=["GET", "PUT"]),
        Route(f"{p}/reset", wrap(reset), methods=["POST"]),
        Route(f"{p}/webhooks/alerts", wrap(alert_webhooks), methods=["GET", "POST", "DELETE"]),
        Route(p + "/{crm}/tokens", wrap(tokens), methods=["POST"]),
        Route(p + "/{crm}/{obj}/records", wrap(create), methods=["POST"]),
        Route(p + "/{crm}/{obj}/records", wrap(update), methods=["PATCH"]),
        Route(p + "/{crm}/{obj}/records/{record_id}", wrap(record), methods=["GET"]),
        Route(p + "/{crm}/{obj}/delete", wrap(delete), methods=["POST"]),
        Route(p + "/{crm}/{obj}/undelete", wrap(undelete), methods=["POST"]),
        Route(p + "/{crm}/{obj}/touch", wrap(touch), methods=["POST"]),
        Route(p + "/{crm}/{obj}/change_tracking", wrap(change_tracking), methods=["PUT"]),
        Route(p + "/{crm}/{obj}/automations", wrap(automations), methods=["GET", "POST", "DELETE"]),
    ]
