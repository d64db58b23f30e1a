"""The review queue page (``sync-platform review``): open conflicts and dead letters, decided by a person.

A small server-rendered Starlette app, no JavaScript: every action is a form that POSTs and
redirects (303) back to the list with a flash message. A decision goes through
:meth:`ConflictBook.resolve` like the CLI's (validated, stored, audited as ``conflict_review`` with
who decided); the next ``outbound_sync`` run writes it through the same idempotent path. The page
sends nothing to a CRM itself.

Who may use it:

- neither ``SYNC_PLATFORM_REVIEW_TOKEN`` nor ``SYNC_PLATFORM_REVIEW_USERS`` set: local users only.
  A request from outside the loopback range is refused (403) and the decider is the OS user.
- ``SYNC_PLATFORM_REVIEW_USERS`` (``user:password`` pairs): HTTP basic auth; the decider is the user.
- ``SYNC_PLATFORM_REVIEW_TOKEN``: ``Authorization: Bearer <token>``, or the login form, which sets a
  signed session cookie naming the person; the decider is that name (``token`` for the header).

With either set, every request needs it, loopback ones too. Secrets are compared with
``hmac.compare_digest`` and never logged or rendered.

Every form carries a CSRF token bound to the browser's session cookie (an HMAC under a random
per-process key); a POST without it, or with another session's, is refused (403) before anything
is read. Cookies are ``HttpOnly`` and ``SameSite=Strict``. Personal values are always masked on
the page (the same helpers as the CLI without ``--decrypt``); there is no way to unmask them here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import uvicorn
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from sync_platform.canonical.personal import personal_columns, shown
from sync_platform.core.settings import Settings, load_settings
from sync_platform.core.warehouse import Warehouse
from sync_platform.ingest.raw_schema import raw_column
from sync_platform.ops.approvals import who
from sync_platform.ops.dead_letters import DeadLetterQueue
from sync_platform.outbound.conflicts import EDIT, OPEN, RESOLVED, TAKE_CRM, TAKE_OURS, Conflict, ConflictBook

TEMPLATES = Path(__file__).with_name("templates")
SESSION_COOKIE = "review_session"
FLASH_COOKIE = "review_flash"
CSRF_FIELD = "csrf_token"
FILTERS = ("crm", "entity", "strategy")
MAX_FORM_BYTES = 64 * 1024
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Denied(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass(frozen=True)
class Session:
    sid: str  # random, per browser: the CSRF token is bound to it
    user: str | None  # set by the token login form


class Signer:
    """HMAC-SHA256 under a key made at start: cookies and CSRF tokens die with the process."""

    def __init__(self, key: bytes | None = None) -> None:
        self.key = key or secrets.token_bytes(32)

    def sign(self, value: str) -> str:
        return f"{_b64(value.encode())}.{self._mac(value)}"

    def unsign(self, signed: str | None) -> str | None:
        if not signed or "." not in signed:
            return None
        body, _, mac = signed.rpartition(".")
        try:
            value = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        return value if hmac.compare_digest(mac, self._mac(value)) else None

    def csrf(self, sid: str) -> str:
        return self._mac(f"csrf:{sid}")

    def _mac(self, value: str) -> str:
        return hmac.new(self.key, value.encode(), hashlib.sha256).hexdigest()


class ReviewAuth:
    """Who is asking: the basic-auth user, the token's holder, or (local mode) the OS user."""

    def __init__(self, token: str | None, users: dict[str, str]) -> None:
        self._token = token
        self._users = dict(users)

    @classmethod
    def from_settings(cls, settings: Settings) -> ReviewAuth:
        return cls(settings.review_token, settings.review_users)

    @property
    def configured(self) -> bool:
        return bool(self._token or self._users)

    @property
    def token_login(self) -> bool:
        return bool(self._token)

    def check_token(self, offered: str) -> bool:
        return bool(self._token) and hmac.compare_digest(offered.encode(), (self._token or "").encode())

    def user(self, request: Request, session: Session | None) -> str:
        if not self.configured:
            if not _loopback(request):
                raise Denied(403, "local users only: set SYNC_PLATFORM_REVIEW_TOKEN or _USERS for others")
            return who()
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic" and self._users:
            name = self._basic(credentials.strip())
            if name:
                return name
        if scheme.lower() == "bearer" and self.check_token(credentials.strip()):
            return "token"
        if session is not None and session.user and self._token:
            return session.user
        challenge = {"WWW-Authenticate": 'Basic realm="sync-platform review"'} if self._users else {}
        raise Denied(401, "authentication required", challenge)

    def _basic(self, credentials: str) -> str | None:
        try:
            name, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        expected = self._users.get(name)
        # compare against something of the same kind when the user is unknown: no timing hint
        ok = hmac.compare_digest(password.encode(), (expected or secrets.token_hex(16)).encode())
        return name if ok and expected is not None else None


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def conflict_path(conflict_id: str) -> str:
    return "/conflicts/" + quote(conflict_id, safe=":")


def matches(conflict: Conflict, filters: dict[str, str]) -> bool:
    if filters.get("crm") and conflict.crm != filters["crm"]:
        return False
    if filters.get("entity") and conflict.entity != filters["entity"]:
        return False
    strategy = filters.get("strategy")
    return not strategy or any(f.strategy == strategy for f in conflict.fields)


def masked_fields(conflict: Conflict, personal: set[str]) -> list[dict[str, Any]]:
    """Per conflicting field, the values as the page may show them."""
    rows = []
    for f in conflict.fields:
        column = raw_column(f.crm_field)
        rows.append(
            {
                "field": f.field,
                "crm_field": f.crm_field,
                "personal": column in personal,
                "base": shown(column, f.base, personal),
                "crm": shown(column, f.crm, personal),
                "ours": shown(column, f.ours, personal),
                "crm_changed_at": f.crm_changed_at,
                "strategy": f.strategy,
            }
        )
    return rows


class ReviewApp:
    def __init__(self, settings: Settings | None = None, warehouse: Warehouse | None = None) -> None:
        settings = settings or load_settings()
        self.auth = ReviewAuth.from_settings(settings)
        self.warehouse = warehouse or Warehouse.from_env()
        self.signer = Signer()
        env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )
        env.globals["conflict_path"] = conflict_path
        self.templates = Jinja2Templates(env=env)
        self._personal: dict[str, set[str]] = {}

    def personal(self, crm: str) -> set[str]:
        if crm not in self._personal:
            self._personal[crm] = personal_columns(crm)
        return self._personal[crm]

    def asgi(self) -> Starlette:
        guard = self._guard
        return Starlette(
            routes=[
                Route("/", guard(self.index), methods=["GET"]),
                Route("/login", guard(self.login_form, public=True), methods=["GET"]),
                Route("/login", guard(self.login, public=True, form=True), methods=["POST"]),
                Route("/conflicts/bulk", guard(self.bulk, form=True), methods=["POST"]),
                Route(
                    "/conflicts/{conflict_id:path}/decide", guard(self.decide, form=True), methods=["POST"]
                ),
                Route("/conflicts/{conflict_id:path}", guard(self.conflict), methods=["GET"]),
            ]
        )

    # -- the gate every request passes ------------------------------------------------------------

    def _guard(
        self, handler: Callable[..., Awaitable[Response]], public: bool = False, form: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            raw = self.signer.unsign(request.cookies.get(SESSION_COOKIE))
            session = _session(raw)
            fresh = session is None
            if session is None:
                session = Session(secrets.token_urlsafe(24), None)
            try:
                if not self.auth.configured or not public:
                    user = self.auth.user(request, session)
                else:
                    user = None
                data: dict[str, str] = {}
                if form:
                    data = await _form(request)
                    offered = data.get(CSRF_FIELD, "")
                    if fresh or not hmac.compare_digest(offered, self.signer.csrf(session.sid)):
                        raise Denied(403, "missing or wrong CSRF token: reload the page and try again")
                response = await handler(request, session, user, data)
            except Denied as denied:
                if denied.status == 401 and self.auth.token_login and request.method == "GET":
                    response = self._render(request, session, "login.html", {"user": None}, 401)
                else:
                    response = PlainTextResponse(denied.message, denied.status, headers=denied.headers)
            if fresh:
                self._set_session(response, session)
            response.headers.update(_SECURITY_HEADERS)
            return response

        return endpoint

    def _set_session(self, response: Response, session: Session) -> None:
        value = session.sid + ("|" + session.user if session.user else "")
        response.set_cookie(
            SESSION_COOKIE, self.signer.sign(value), httponly=True, samesite="strict", path="/"
        )

    def _render(
        self, request: Request, session: Session, name: str, context: dict[str, Any], status: int = 200
    ) -> Response:
        flash = request.cookies.get(FLASH_COOKIE)
        message = self.signer.unsign(flash) if flash else None
        context = {
            **context,
            "csrf": self.signer.csrf(session.sid),
            "csrf_field": CSRF_FIELD,
            "flash": message,
        }
        response = self.templates.TemplateResponse(request, name, context, status_code=status)
        if flash:
            response.delete_cookie(FLASH_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    def _redirect(self, to: str, message: str) -> Response:
        response = RedirectResponse(to, status_code=303)
        response.set_cookie(
            FLASH_COOKIE, self.signer.sign(message), httponly=True, samesite="strict", path="/"
        )
        return response

    # -- pages ------------------------------------------------------------------------------------

    async def index(self, request: Request, session: Session, user: str | None, data: dict) -> Response:
        filters = {k: request.query_params.get(k, "").strip() for k in FILTERS}

        def gather() -> dict[str, Any]:
            book = ConflictBook(self.warehouse)
            every = book.all()
            open_ = [c for c in every if c.status == OPEN]
            shown_ = [c for c in open_ if matches(c, filters)]
            letters = DeadLetterQueue(self.warehouse).pending()
            return {
                "conflicts": [(c, masked_fields(c, self.personal(c.crm))) for c in shown_],
                "open_count": len(open_),
                "decided": [c for c in every if c.status == RESOLVED][-20:][::-1],
                "choices": {
                    "crm": sorted({c.crm for c in open_}),
                    "entity": sorted({c.entity for c in open_}),
                    "strategy": sorted({f.strategy for c in open_ for f in c.fields}),
                },
                "outbound_letters": [d for d in letters if d.is_outbound],
                "other_letters": [d for d in letters if not d.is_outbound],
            }

        context = await run_in_threadpool(gather)
        context.update(filters=filters, user=user, query=urlencode({k: v for k, v in filters.items() if v}))
        return self._render(request, session, "index.html", context)

    async def conflict(self, request: Request, session: Session, user: str | None, data: dict) -> Response:
        conflict_id = request.path_params["conflict_id"]
        every = await run_in_threadpool(ConflictBook(self.warehouse).all)
        found = next((c for c in every if c.conflict_id == conflict_id), None)
        if found is None:
            return PlainTextResponse(f"no conflict {conflict_id}", 404)
        fields = masked_fields(found, self.personal(found.crm))
        context = {"c": found, "fields": fields, "user": user, "open": found.status == OPEN}
        return self._render(request, session, "conflict.html", context)

    async def decide(self, request: Request, session: Session, user: str | None, data: dict) -> Response:
        conflict_id = request.path_params["conflict_id"]
        take = data.get("take", "")
        values = None
        if take == EDIT:
            # one input per conflicting field; a blank one keeps the CRM's value for that field
            values = {k[len("value:") :]: v for k, v in data.items() if k.startswith("value:") and v.strip()}
            if not values:
                return self._redirect(conflict_path(conflict_id), "edit: give a value for at least one field")
        by = user or who()
        try:
            await run_in_threadpool(ConflictBook(self.warehouse).resolve, conflict_id, take, by, values)
        except ValueError as exc:
            return self._redirect("/", f"not decided: {exc}")
        return self._redirect(
            "/", f"{conflict_id}: {_taken(take)} (decided by {by}); the next outbound run writes it"
        )

    async def bulk(self, request: Request, session: Session, user: str | None, data: dict) -> Response:
        take = data.get("take", "")
        filters = {k: data.get(k, "").strip() for k in FILTERS}
        query = urlencode({k: v for k, v in filters.items() if v})
        back = "/" + (f"?{query}" if query else "")
        if take not in (TAKE_CRM, TAKE_OURS):
            return self._redirect(back, "bulk: accept the CRM's values or ours")
        by = user or who()

        def run() -> tuple[int, list[str]]:
            book = ConflictBook(self.warehouse)
            chosen = [c for c in book.all(OPEN) if matches(c, filters)]
            failed = []
            for c in chosen:
                try:
                    book.resolve(c.conflict_id, take, by)
                except ValueError:  # decided meanwhile by someone else
                    failed.append(c.conflict_id)
            return len(chosen) - len(failed), failed

        done, failed = await run_in_threadpool(run)
        rule = ", ".join(f"{k}={v}" for k, v in filters.items() if v) or "every open conflict"
        note = f"; {len(failed)} already decided" if failed else ""
        return self._redirect(
            back, f"bulk ({rule}): {done} conflict(s) {_taken(take)} (decided by {by}){note}"
        )

    async def login_form(self, request: Request, session: Session, user: str | None, data: dict) -> Response:
        if not self.auth.token_login:
            return RedirectResponse("/", status_code=303)
        return self._render(request, session, "login.html", {"user": None})

    async def login(self, request: Request, session: Session, user: str | None, data: dict) -> Response:
        if not self.auth.token_login:
            return RedirectResponse("/", status_code=303)
        name = data.get("name", "").strip()
        if not self.auth.check_token(data.get("token", "")) or not name or "|" in name:
            return self._render(request, session, "login.html", {"user": None, "error": True}, 401)
        response = self._redirect("/", f"signed in as {name}")
        self._set_session(response, Session(secrets.token_urlsafe(24), name))  # a new session: new CSRF
        return response


def _session(raw: str | None) -> Session | None:
    if not raw:
        return None
    sid, _, user = raw.partition("|")
    return Session(sid, user or None)


def _taken(take: str) -> str:
    return {
        TAKE_CRM: "CRM's values kept",
        TAKE_OURS: "our values accepted",
        EDIT: "edited values accepted",
    }.get(take, take)


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded body of a form (the page's forms never upload files)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise Denied(415, "forms are application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Denied(413, "form too large")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def build_app(settings: Settings | None = None, warehouse: Warehouse | None = None) -> Starlette:
    return ReviewApp(settings, warehouse).asgi()


class ReviewServer:
    """The review app under uvicorn: in a background thread (tests) or the foreground (CLI).

    The socket is bound and listening before ``start()`` returns; ``proxy_headers`` stays on (the
    default), so a remote client behind a local reverse proxy is seen as remote, not as loopback.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8770, settings: Settings | None = None) -> None:
        settings = settings or load_settings()
        if not ReviewAuth.from_settings(settings).configured and not _loopback_host(host):
            raise ValueError(
                f"{host} is not a loopback address: set SYNC_PLATFORM_REVIEW_TOKEN or "
                "SYNC_PLATFORM_REVIEW_USERS before serving the review page to others"
            )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(64)
        self.host, self.port = host, self._sock.getsockname()[1]
        config = uvicorn.Config(
            build_app(settings), log_level="warning", lifespan="off", timeout_graceful_shutdown=2
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> ReviewServer:
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="review-page", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.run(sockets=[self._sock])

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()


def _loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
