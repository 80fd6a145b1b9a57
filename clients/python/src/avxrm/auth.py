"""Bearer tokens: a static one, or an OIDC issuer's password and refresh grants."""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, Generator, Optional

import httpx

from .errors import AuthError, NotAPIError, Problem, error_for, media_type, unreachable


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
        try:
            r = httpx.get(url, verify=verify, timeout=30)
        except httpx.TransportError as e:
            raise unreachable(e, "GET", url) from e
        if r.status_code == 404 and media_type(r.headers.get("Content-Type")) in ("", "application/problem+json"):
            raise AuthError(Problem(status=404, title=f"the server at {server} trusts no issuer: auth is off there, "
                                                        "no token is needed"))
        if r.status_code >= 400:
            raise error_for(r.status_code, r.content, r.headers.get("Content-Type"), url)
        d = _object(r)
        if d is None:
            raise NotAPIError(Problem(status=r.status_code, title=r.reason_phrase), url=url,
                              content_type=media_type(r.headers.get("Content-Type")) or None)
        servers = d.get("authorization_servers") or []
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
        d = _object(resp)
        if d is None or not isinstance(d.get("access_token"), str):
            raise _issuer_error(resp, "no access_token in the token endpoint's answer")
        self.access_token = d["access_token"]
        self.refresh_token = d.get("refresh_token", self.refresh_token)
        self.expires_at = time.time() + float(d.get("expires_in", 300))
        return self.access_token

    def _discovered(self, resp: httpx.Response) -> None:
        """Take the token endpoint from the issuer's discovery document."""
        d = _object(resp) if resp.status_code == 200 else None
        if d is None or not isinstance(d.get("token_endpoint"), str):
            raise _issuer_error(resp, "not an OpenID Connect discovery document")
        self._token_endpoint = d["token_endpoint"]

    def _valid(self) -> bool:
        return self.access_token is not None and time.time() < self.expires_at - self.leeway

    def token(self) -> str:
        """A valid access token, asking the issuer only when needed."""
        with self._lock:
            if self._valid():
                return self.access_token  # type: ignore[return-value]
            try:
                with httpx.Client(verify=self.verify, timeout=30) as http:
                    if self._token_endpoint is None:
                        self._discovered(http.get(self.issuer + "/.well-known/openid-configuration"))
                    for _ in range(2):
                        form = self._grant()
                        try:
                            return self._take(http.post(self._token_endpoint, data=form), form)  # type: ignore[arg-type]
                        except _Retry:
                            continue
            except httpx.TransportError as e:
                raise unreachable(e, e.request.method, str(e.request.url)) from e
            raise AuthError(Problem(status=401, title="could not get a token"))

    async def atoken(self) -> str:
        """Like token(), without blocking the event loop."""
        if self._valid():
            return self.access_token  # type: ignore[return-value]
        try:
            async with httpx.AsyncClient(verify=self.verify, timeout=30) as http:
                if self._token_endpoint is None:
                    self._discovered(await http.get(self.issuer + "/.well-known/openid-configuration"))
                for _ in range(2):
                    form = self._grant()
                    try:
                        return self._take(await http.post(self._token_endpoint, data=form), form)  # type: ignore[arg-type]
                    except _Retry:
                        continue
        except httpx.TransportError as e:
            raise unreachable(e, e.request.method, str(e.request.url)) from e
        raise AuthError(Problem(status=401, title="could not get a token"))


def _object(resp: httpx.Response) -> Optional[Dict[str, Any]]:
    """The JSON object an answer carries; None if it carries none."""
    try:
        d = resp.json()
    except ValueError:
        return None
    return d if isinstance(d, dict) else None


def _issuer_error(resp: httpx.Response, what: str) -> AuthError:
    url = str(resp.request.url)
    ct = media_type(resp.headers.get("Content-Type")) or "no media type"
    return AuthError(Problem(status=resp.status_code, title=f"{url} answered {resp.status_code} with {ct}: {what}"))


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
