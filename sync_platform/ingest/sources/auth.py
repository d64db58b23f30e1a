"""OAuth 2.0 token providers: client credentials, refresh token, and static (private-app) tokens.

A provider hands out the current access token and fetches a new one on demand; the HTTP
policy calls ``refresh()`` once when a CRM answers 401. Secrets never leave this module:
``repr`` and error messages carry no token or client secret.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from sync_platform.core.errors import CrmRequestError, ErrorKind, RetryableError

TOKEN_ATTEMPTS = 5


class TokenProvider:
    """Hands out an access token and fetches a fresh one on demand."""

    crm: str

    def token(self) -> str:
        raise NotImplementedError

    def refresh(self) -> str:
        raise NotImplementedError

    @property
    def can_refresh(self) -> bool:
        return True


@dataclass(repr=False)
class StaticToken(TokenProvider):
    """A private-app token (HubSpot) or a pre-issued session id: nothing to refresh."""

    crm: str
    access_token: str

    def token(self) -> str:
        return self.access_token

    def refresh(self) -> str:
        raise CrmRequestError(
            self.crm, ErrorKind.AUTH, "the static access token was rejected (revoked or wrong)"
        )

    @property
    def can_refresh(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"StaticToken(crm={self.crm!r}, access_token=***)"


@dataclass(repr=False)
class OAuthToken(TokenProvider):
    """Client-credentials or refresh-token grant against a token endpoint.

    With ``refresh_token`` set, refreshes use the refresh-token grant; otherwise the client
    credentials grant is repeated. ``instance_url`` from a Salesforce token response is kept.
    """

    crm: str
    token_url: str
    client_id: str
    client_secret: str
    refresh_token: str | None = None
    scope: str | None = None
    verify: str | bool = True
    timeout: float = 30.0
    session: requests.Session | None = None
    instance_url: str | None = None
    _access_token: str | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    refreshes: int = field(default=0, init=False)

    def token(self) -> str:
        with self._lock:
            if self._access_token is None:
                self._fetch()
            assert self._access_token is not None
            return self._access_token

    def refresh(self) -> str:
        with self._lock:
            self._fetch()
            self.refreshes += 1
            assert self._access_token is not None
            return self._access_token

    def _fetch(self) -> None:
        data = {"client_id": self.client_id, "client_secret": self.client_secret}
        if self.refresh_token:
            data.update(grant_type="refresh_token", refresh_token=self.refresh_token)
        else:
            data["grant_type"] = "client_credentials"
        if self.scope:
            data["scope"] = self.scope
        # the identity provider is a separate service: ride out its 5xx and timeouts too
        retrying = Retrying(
            stop=stop_after_attempt(TOKEN_ATTEMPTS),
            wait=wait_exponential_jitter(initial=0.2, max=5),
            retry=retry_if_exception_type(RetryableError),
            reraise=True,
        )
        try:
            response = retrying(self._post, data)
        except RetryableError as exc:
            raise CrmRequestError(
                self.crm,
                exc.kind,
                f"token endpoint: {exc.detail}",
                method="POST",
                path=_path(self.token_url),
                status=exc.status,
                attempts=TOKEN_ATTEMPTS,
            ) from None
        if response.status_code != 200:
            reason = _oauth_error(response)
            raise CrmRequestError(
                self.crm,
                ErrorKind.AUTH,
                f"token request refused: {reason}",
                method="POST",
                path=_path(self.token_url),
                status=response.status_code,
            )
        body = response.json()
        self._access_token = body["access_token"]
        self.instance_url = body.get("instance_url", self.instance_url)
        if body.get("refresh_token") and self.refresh_token is None and self.crm == "hubspot":
            self.refresh_token = body["refresh_token"]

    def _post(self, data: dict[str, str]) -> requests.Response:
        http = self.session or requests
        try:
            response = http.post(self.token_url, data=data, timeout=self.timeout, verify=self.verify)
        except requests.RequestException as exc:
            raise RetryableError(self.crm, ErrorKind.TIMEOUT, f"unreachable ({type(exc).__name__})") from None
        if response.status_code >= 500:
            raise RetryableError(
                self.crm, ErrorKind.SERVER_ERROR, f"HTTP {response.status_code}", status=response.status_code
            )
        return response

    def __repr__(self) -> str:
        return (
            f"OAuthToken(crm={self.crm!r}, token_url={self.token_url!r}, "
            f"client_id={self.client_id!r}, secrets=***)"
        )


def _oauth_error(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict):
        return str(body.get("error") or body.get("status") or body.get("message") or response.status_code)
    return f"HTTP {response.status_code}"


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
