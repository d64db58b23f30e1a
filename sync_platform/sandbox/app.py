"""The sandbox's ASGI app: three CRM dialects at their real paths plus the admin API."""

from __future__ import annotations

from email.utils import formatdate

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .admin import admin_routes
from .dynamics import DynamicsDialect
from .formats import json_response
from .hubspot import HubSpotDialect
from .salesforce import SalesforceDialect
from .state import SandboxState


def build_app(state: SandboxState) -> Starlette:
    dialects = [SalesforceDialect(state), HubSpotDialect(state), DynamicsDialect(state)]
    routes = admin_routes(state)
    for dialect in dialects:
        routes.extend(dialect.routes())
    # each dialect answers unknown paths under its prefix in its own 404 shape
    routes.extend(d.not_found_route() for d in dialects)

    async def unknown(request: Request, exc: Exception) -> Response:
        return json_response(
            {
                "error": "not_found",
                "path": request.url.path,
                "hint": "see /__sandbox/ for what this sandbox serves",
            },
            status=404,
        )

    app = Starlette(routes=routes, exception_handlers={404: unknown})
    app.state.sandbox = state
    app.add_middleware(SandboxDateHeader, state=state)
    return app


class SandboxDateHeader:
    """Every response's ``Date`` from the sandbox clock, as a CRM's comes from its own clock: clients
    tell a record stamped in the future by it, so it must move when a test moves the clock (the
    server's own ``Date`` is turned off in ``server.py``)."""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_date(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                date = formatdate(self.state.clock.now(), usegmt=True).encode("latin-1")
                message = {**message, "headers": [*headers, (b"date", date)]}
            await send(message)

        await self.app(scope, receive, send_with_date)
