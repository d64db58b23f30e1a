"""What every emulated CRM does to a request before its own handler runs.

The pipeline is the same for all three: count it, apply injected faults, authenticate,
apply the CRM's rate limit, run the handler, and turn any failure into that CRM's own error
body (never a stack trace).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .auth import AuthFailure, Token, bearer
from .faults import Fault
from .formats import json_response
from .limits import LimitDecision
from .state import SandboxState

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]


class SandboxError(Exception):
    """A failure the handler wants answered in the CRM's error shape."""

    def __init__(self, status: int, message: str, code: str | None = None, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.extra = extra


class Dialect:
    """Base of the three API dialects; subclasses add routes and their error shapes."""

    crm: str = ""
    catch_all_prefix: str = ""  # unknown paths under it get this CRM's 404 shape

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    # -- to override ------------------------------------------------------------
    def routes(self) -> list[Route]:
        raise NotImplementedError

    def error(self, status: int, message: str, code: str | None = None, **extra: object) -> Response:
        raise NotImplementedError

    def auth_error(self, failure: AuthFailure) -> Response:
        raise NotImplementedError

    def check_limits(self, request: Request) -> LimitDecision:
        return LimitDecision(True)

    def limit_error(self, decision: LimitDecision) -> Response:
        raise NotImplementedError

    def access_token(self, request: Request) -> str | None:
        return bearer(request.headers.get("authorization"))

    # -- shared -----------------------------------------------------------------
    @property
    def tokens(self):
        return self.state.tokens[self.crm]

    def route(
        self,
        path: str,
        handler: Handler,
        methods: list[str],
        *,
        name: str | None = None,
        auth: bool = True,
        limited: bool = True,
    ) -> Route:
        endpoint_name = name or handler.__name__.lstrip("_")

        async def endpoint(request: Request) -> Response:
            response = await self._run(request, handler, endpoint_name, auth, limited)
            self.state.stats.record(self.crm, endpoint_name, response.status_code)
            return response

        return Route(path, endpoint, methods=methods, name=f"{self.crm}:{endpoint_name}")

    async def _run(
        self, request: Request, handler: Handler, name: str, auth: bool, limited: bool
    ) -> Response:
        try:
            fault = self.state.faults.take(self.crm, request.method, request.url.path)
            if fault is not None:
                early = await self._apply_fault(fault)
                if early is not None:
                    return early
            if auth:
                request.state.token = self.authenticate(request)
            headers: dict[str, str] = {}
            if limited:
                decision = self.check_limits(request)
                if not decision.allowed:
                    return self.limit_error(decision)
                headers = decision.headers
            response = await handler(request)
            response.headers.update(headers)
            if fault is not None and fault.kind == "malformed":
                return Response(
                    bytes(response.body)[: max(1, len(response.body) // 2)],
                    status_code=200,
                    media_type="application/json",
                )
            if fault is not None and fault.kind == "corrupt_records":
                return self._corrupted(response, fault)
            if fault is not None and fault.kind == "lost_response":  # applied, but the answer never comes
                await asyncio.sleep(fault.delay if fault.delay is not None else 30.0)
                return self.error(fault.status or 504, "Gateway Timeout.", "REQUEST_TIMEOUT")
            return response
        except AuthFailure as failure:
            return self.auth_error(failure)
        except SandboxError as exc:
            return self.error(exc.status, exc.message, exc.code, **exc.extra)
        except Exception:  # the sandbox answers like a CRM, never with a traceback
            log.exception("sandbox %s handler %s failed", self.crm, name)
            return self.error(500, "An unexpected error occurred.", "UNKNOWN_EXCEPTION")

    def authenticate(self, request: Request) -> Token:
        return self.tokens.validate(self.access_token(request))

    async def _apply_fault(self, fault: Fault) -> Response | None:
        kind = fault.kind
        if kind == "error":
            return self.error(fault.status or 500, "Injected server error.", "UNKNOWN_EXCEPTION")
        if kind == "outage":
            return self.error(fault.status or 503, "Service Unavailable.", "SERVER_UNAVAILABLE")
        if kind == "timeout":
            await asyncio.sleep(fault.delay if fault.delay is not None else 30.0)
            return self.error(fault.status or 504, "Gateway Timeout.", "REQUEST_TIMEOUT")
        if kind == "slow":
            await asyncio.sleep(fault.delay if fault.delay is not None else 2.0)
            return None
        if kind == "rate_limit":
            return self.limit_error(self.injected_limit(fault))
        if kind == "expire_tokens":
            self.tokens.expire_all()
        elif kind == "revoke_tokens":
            self.tokens.revoke_all()
        return None

    def record_holders(self, body: object, field: str) -> list[dict]:
        """The dicts of a response body that hold records' fields (each dialect knows its shape)."""
        return []

    def _corrupted(self, response: Response, fault: Fault) -> Response:
        if response.status_code >= 300 or "json" not in response.headers.get("content-type", ""):
            return response
        try:
            body = orjson.loads(bytes(response.body))
        except orjson.JSONDecodeError:
            return response
        if not self.state.faults.corrupt(fault, self.record_holders(body, fault.field or "")):
            return response
        headers = {
            k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")
        }
        return json_response(body, response.status_code, headers=headers)

    def injected_limit(self, fault: Fault) -> LimitDecision:
        return LimitDecision(False, "", fault.delay if fault.delay is not None else 1.0)

    def not_found_route(self) -> Route:
        async def not_found(request: Request) -> Response:
            raise SandboxError(404, f"The requested resource does not exist: {request.url.path}", "NOT_FOUND")

        return self.route(
            self.catch_all_prefix + "/{rest:path}",
            not_found,
            ["GET", "POST", "PATCH", "PUT", "DELETE"],
            name="not_found",
            auth=False,
            limited=False,
        )


async def form_or_json(request: Request) -> dict[str, str]:
    """Token endpoints take form bodies; accept query parameters too, as the real ones do."""
    data: dict[str, str] = dict(request.query_params)
    ctype = request.headers.get("content-type", "")
    if "json" in ctype:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        if isinstance(body, dict):
            data.update({k: str(v) for k, v in body.items()})
    else:
        # token requests are urlencoded; Starlette's request.form() would need python-multipart
        data.update(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
    return data


__all__ = ["Dialect", "SandboxError", "form_or_json", "json_response"]
