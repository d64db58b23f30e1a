"""The sandbox's ASGI app: three CRM dialects at their real paths plus the admin API."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

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
    return app
