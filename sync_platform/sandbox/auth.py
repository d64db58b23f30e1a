"""Token issuing and validation for the emulated CRMs' OAuth endpoints.

Access tokens expire on the sandbox clock (configurable lifetime), so a test can expire
every token mid-pagination by advancing the clock or by an admin call.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass

from .clock import SandboxClock


@dataclass
class Token:
    access_token: str
    client_id: str
    expires_at: float | None  # None: a static private-app token
    refresh_token: str | None = None
    revoked: bool = False


@dataclass
class AuthFailure(Exception):
    """Why a request was refused: ``missing``, ``invalid``, ``expired`` or ``revoked``."""

    reason: str
    expired_seconds_ago: int = 0


class TokenStore:
    def __init__(
        self,
        crm: str,
        clock: SandboxClock,
        client_id: str,
        client_secret: str,
        lifetime_seconds: float,
        static_tokens: tuple[str, ...] = (),
    ) -> None:
        self.crm = crm
        self.clock = clock
        self.client_id = client_id
        self.client_secret = client_secret
        self.lifetime_seconds = lifetime_seconds
        self._lock = threading.Lock()
        self._tokens: dict[str, Token] = {t: Token(t, "private-app", None) for t in static_tokens}
        self._refresh: dict[str, str] = {}  # refresh token -> client id
        self.issued = 0

    def check_client(self, client_id: str | None, client_secret: str | None) -> bool:
        return (
            client_id == self.client_id
            and client_secret is not None
            and secrets.compare_digest(client_secret, self.client_secret)
        )

    def issue(self, client_id: str, with_refresh: bool = True) -> Token:
        with self._lock:
            token = Token(
                access_token=f"{self.crm[:2]}-{secrets.token_urlsafe(24)}",
                client_id=client_id,
                expires_at=self.clock.now() + self.lifetime_seconds,
                refresh_token=f"{self.crm[:2]}-rt-{secrets.token_urlsafe(24)}" if with_refresh else None,
            )
            self._tokens[token.access_token] = token
            if token.refresh_token:
                self._refresh[token.refresh_token] = client_id
            self.issued += 1
            return token

    def refresh(self, refresh_token: str) -> Token | None:
        """A new access token for a known refresh token (refresh tokens do not rotate)."""
        with self._lock:
            client_id = self._refresh.get(refresh_token)
        if client_id is None:
            return None
        token = self.issue(client_id, with_refresh=False)
        token.refresh_token = refresh_token
        return token

    def validate(self, access_token: str | None) -> Token:
        if not access_token:
            raise AuthFailure("missing")
        with self._lock:
            token = self._tokens.get(access_token)
        if token is None:
            raise AuthFailure("invalid")
        if token.revoked:
            raise AuthFailure("revoked")
        if token.expires_at is not None and self.clock.now() >= token.expires_at:
            raise AuthFailure("expired", int(self.clock.now() - token.expires_at) + 1)
        return token

    def expire_all(self) -> int:
        """Expire every OAuth access token now (static private-app tokens are unaffected)."""
        now = self.clock.now()
        with self._lock:
            n = 0
            for token in self._tokens.values():
                if token.expires_at is not None and token.expires_at > now:
                    token.expires_at = now
                    n += 1
            return n

    def revoke_all(self, include_refresh: bool = False) -> int:
        with self._lock:
            for token in self._tokens.values():
                token.revoked = True
            if include_refresh:
                self._refresh.clear()
            return len(self._tokens)


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() in ("bearer", "oauth") and value.strip() else None
