"""Bearer tokens: a static one, or an OIDC issuer's password and refresh grants."""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, Generator, Optional

import httpx

from .errors import AuthError, Problem


class TokenProvider:
    """Gets access tokens from an OpenID Connect issuer's token endpoint (found
    through its discovery document): the password grant to log in, then the
    refresh grant before the token expires.

    >>> tp = TokenProvider("https://keycloak.example/realms/rm", "avxrm", username="alice", password="…")
    >>> client = avxrm.Client("http://127.0.0.1:8080", token=tp)
    """

    #: refresh this many seconds before the token expires
    leeway = 30.0

    def __init__(self, issuer: str, client_id: str, *, client_secret: Optional[str] = None,
                 username: Optional[str] = None, password: Optional[str] = None,
                 refresh_token: Optional[str] = None, scope: Optional[str] = "openid offline_access",
                 verify: Any = True):
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.username = username
        self.password = password
        self.refresh_token = refresh_token
        self.scope = scope
        self.verify = verify
        self.access_token: Optional[str] = None
        self.expires_at = 0.0
        self._token_endpoint: Optional[str] = None
        self._lock = threading.Lock()

    @classmethod
    def for_server(cls, server: str, client_id: str = "avxrm", *, verify: Any = True, **kw: Any) -> "TokenProvider":
        """A provider for the issuer the server at ``server`` trusts, as its
        OAuth 2.0 Protected Resource Metadata (RFC 9728) names it; the other
        arguments as for the constructor. A server with auth off has none:
        AuthError says so.

        >>> tp = TokenProvider.for_server("https://rm.example", username="alice", password="…")
        """
        url = server.rstrip("/") + "/.well-known/oauth-protected-resource"
        r = httpx.get(url, verify=verify, timeout=30)
        if r.status_code == 404:
            raise AuthError(Problem(status=404, title=f"the server at {server} trusts no issuer: auth is off there, "
                                                        "no token is needed"))
        r.raise_for_status()
        servers = r.json().get("authorization_servers") or []
        if not servers:
            raise AuthError(Problem(status=502, title=f"{url} names no authorization server"))
        return cls(servers[0], client_id, verify=verify, **kw)

    # The grants, as form bodies; the sync and async paths share them.
    def _grant(self) -> Dict[str, str]:
        form = {"client_id": self.client_id}
        if self.client_secret:
            form["client_secret"] = self.client_secret
        if self.scope:
            form["scope"] = self.scope
        if self.refresh_token:
            form.update(grant_type="refresh_token", refresh_token=self.refresh_token)
        elif self.username is not None:
            form.update(grant_type="password", username=self.username, password=self.password or "")
        else:
            raise AuthError(Problem(status=401, title="no credentials: give username and password, or a refresh token"))
        return form

    def _take(self, resp: httpx.Response, form: Dict[str, str]) -> str:
        if resp.status_code != 200:
            if form["grant_type"] == "refresh_token" and self.username is not None:
                self.refresh_token = None  # expired: log in again
                raise _Retry()
            raise AuthError(Problem(status=401, title="token request failed", detail=f"{resp.status_code} {resp.text[:200]}"))
        d = resp.json()
        self.access_token = d["access_token"]
        self.refresh_token = d.get("refresh_token", self.refresh_token)
        self.expires_at = time.time() + float(d.get("expires_in", 300))
        return self.access_token

    def _valid(self) -> bool:
        return self.access_token is not None and time.time() < self.expires_at - self.leeway

    def token(self) -> str:
        """A valid access token, asking the issuer only when needed."""
        with self._lock:
            if self._valid():
                return self.access_token  # type: ignore[return-value]
            with httpx.Client(verify=self.verify, timeout=30) as http:
                if self._token_endpoint is None:
                    r = http.get(self.issuer + "/.well-known/openid-configuration")
                    r.raise_for_status()
                    self._token_endpoint = r.json()["token_endpoint"]
                for _ in range(2):
                    form = self._grant()
                    try:
                        return self._take(http.post(self._token_endpoint, data=form), form)
                    except _Retry:
                        continue
            raise AuthError(Problem(status=401, title="could not get a token"))

    async def atoken(self) -> str:
        """Like token(), without blocking the event loop."""
        if self._valid():
            return self.access_token  # type: ignore[return-value]
        async with httpx.AsyncClient(verify=self.verify, timeout=30) as http:
            if self._token_endpoint is None:
                r = await http.get(self.issuer + "/.well-known/openid-configuration")
                r.raise_for_status()
                self._token_endpoint = r.json()["token_endpoint"]
            for _ in range(2):
                form = self._grant()
                try:
                    return self._take(await http.post(self._token_endpoint, data=form), form)
                except _Retry:
                    continue
        raise AuthError(Problem(status=401, title="could not get a token"))


class _Retry(Exception):
    pass


class BearerAuth(httpx.Auth):
    """httpx auth sending ``Authorization: Bearer`` from a string or a TokenProvider."""

    def __init__(self, token: Any):
        self._token = token

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        tok = self._token if isinstance(self._token, str) else self._token.token()
        request.headers["Authorization"] = "Bearer " + tok
        yield request

    async def async_auth_flow(self, request: httpx.Request):  # type: ignore[override]
        tok = self._token if isinstance(self._token, str) else await self._token.atoken()
        request.headers["Authorization"] = "Bearer " + tok
        yield request
