"""Errors: one exception per kind of answer, each carrying the RFC 9457 problem."""

from __future__ import annotations

import http
import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import httpx

#: Where the API lives below the server's root URL.
BASE_PATH = "/api/resources/v1"


@dataclass
class FieldError:
    field: str
    message: str


@dataclass
class Problem:
    """An RFC 9457 problem as the server sent it."""

    status: int
    title: str = ""
    type: str = "about:blank"
    detail: Optional[str] = None
    instance: Optional[str] = None
    errors: List[FieldError] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: Dict[str, Any], status: int) -> "Problem":
        errs = [FieldError(str(e.get("field") or ""), str(e.get("message") or ""))
                for e in d.get("errors") or [] if isinstance(e, dict)]
        return cls(status=d["status"] if isinstance(d.get("status"), int) else status, title=str(d.get("title") or ""),
                   type=str(d.get("type") or "about:blank"), detail=_str_or_none(d.get("detail")),
                   instance=_str_or_none(d.get("instance")), errors=errs)


def _str_or_none(v: Any) -> Optional[str]:
    return None if v is None else str(v)


class ApiError(Exception):
    """An answer of status 400 or above. ``url`` is the URL it answered (no
    query), ``content_type`` its media type."""

    def __init__(self, problem: Problem, *, url: Optional[str] = None, content_type: Optional[str] = None):
        self.problem = problem
        self.status = problem.status
        self.url = url
        self.content_type = content_type
        super().__init__(f"{problem.status} {_message(problem)}")

    @property
    def errors(self) -> List[FieldError]:
        """Every field error the problem lists (the message names the first few)."""
        return self.problem.errors


#: How many field errors an error's message names that its detail does not
#: (the rest are counted: ``errors`` lists them all), and how long each of
#: them and the whole message may be.
MESSAGE_FIELD_ERRORS = 3
_FIELD_ERROR_CHARS = 200
_MESSAGE_CHARS = 2000

_COUNTED = re.compile(r"\band \d+ more\b")


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[:n - 1] + "…"


def _message(problem: Problem) -> str:
    """The one line an error says: the problem's detail (else its title), and
    the first few field errors the detail does not name, with how many more
    there are. A detail that counts the rest itself (the API's "…; and 50
    more (errors lists them all)") gets none added."""
    msg = problem.detail or problem.title or f"HTTP {problem.status}"
    if not _COUNTED.search(msg):
        extra = [f"{e.field}: {e.message}" if e.field else e.message
                 for e in problem.errors if e.message not in msg]
        if extra:
            shown = [_clip(x, _FIELD_ERROR_CHARS) for x in extra[:MESSAGE_FIELD_ERRORS]]
            if len(extra) > MESSAGE_FIELD_ERRORS:
                shown.append(f"and {len(extra) - MESSAGE_FIELD_ERRORS} more (errors lists them all)")
            msg += " (" + "; ".join(shown) + ")"
    return _clip(" ".join(msg.split()), _MESSAGE_CHARS)  # one line


class ValidationError(ApiError):
    """400 or 422: the request was bad; ``errors`` names the fields."""


class AuthError(ApiError):
    """401 (no or bad token) or 403 (not allowed)."""


class NotFoundError(ApiError):
    """404."""


class ConflictError(ApiError):
    """409: a duplicate name, a queue with active jobs, a job that has ended."""


class PreconditionFailedError(ApiError):
    """412: If-Match did not match the current version."""


class ServerError(ApiError):
    """5xx."""


class NotAPIError(ApiError):
    """An answer that cannot be the Resource Manager API's: a web page, or
    not JSON where the API answers JSON (the client's server URL names
    another server, or not its root). Not a NotFoundError: another
    server's 404 does not say that a job is not found. ``server`` is the
    root URL asked."""

    def __init__(self, problem: Problem, *, url: str, content_type: Optional[str]):
        self.server = server_root(url)
        super().__init__(problem, url=url, content_type=content_type)
        Exception.__init__(self, f"the server at {self.server} answered {problem.status} with "
                                 f"{content_type or 'no media type'}, not the Resource Manager's API")


class UnreachableError(httpx.TransportError):
    """The request got no answer: the connection was refused or cut (after
    the client's retries), or no answer came in time (RequestTimeoutError).
    ``method`` and ``url`` say what was tried; the httpx error is the
    ``__cause__``. It is an httpx.TransportError, as the package raised before."""

    def __init__(self, message: str, *, method: str, url: str, attempts: int = 1):
        super().__init__(message)
        self.method, self.url, self.attempts = method, url, attempts


class RequestTimeoutError(UnreachableError, TimeoutError):
    """No answer, or no more of it, came within the client's timeout."""


class MalformedEventError(ValueError):
    """The event stream sent an event the client cannot read (its ``id:`` not a
    number, its ``data:`` not JSON). Reconnecting would only get it again, so
    ``watch`` ends here, as the Go SDK's Watch does (ErrMalformedEvent);
    ``after`` is the id of the last event read before it, to resume after."""

    def __init__(self, message: str, *, after: Optional[int]):
        super().__init__(message)
        self.after = after


def unreachable(e: httpx.TransportError, method: str, url: str, attempts: int = 1) -> UnreachableError:
    """The package's error for a request that failed with e after attempts tries."""
    tries = f" ({attempts} attempts)" if attempts > 1 else ""
    cause = str(e) or type(e).__name__
    if isinstance(e, httpx.ConnectTimeout):
        return RequestTimeoutError(f"{method} {url}: could not connect in time{tries}: {cause}",
                                   method=method, url=url, attempts=attempts)
    if isinstance(e, httpx.TimeoutException):
        return RequestTimeoutError(f"{method} {url}: the server did not answer in time{tries}: {cause}",
                                   method=method, url=url, attempts=attempts)
    if isinstance(e, httpx.ConnectError):
        return UnreachableError(f"{method} {url}: cannot connect to the server{tries}: {cause}",
                                method=method, url=url, attempts=attempts)
    return UnreachableError(f"{method} {url}: the connection was lost{tries}: {cause}",
                            method=method, url=url, attempts=attempts)


def server_root(url: str) -> str:
    """The root URL a request to url went to: url up to the API's base
    path (or without the root's own /version, /.well-known/…), without a query."""
    u = url.split("?", 1)[0].split("#", 1)[0]
    for cut in (BASE_PATH, "/.well-known/"):
        if cut in u:
            return u[:u.index(cut)]
    return u[:-len("/version")] if u.endswith("/version") else u.rstrip("/")


def is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def media_type(content_type: Optional[str]) -> str:
    """The media type of a Content-Type header, in lower case, without parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


_BY_STATUS = {400: ValidationError, 422: ValidationError, 401: AuthError, 403: AuthError, 404: NotFoundError,
              409: ConflictError, 412: PreconditionFailedError}


def error_for(status: int, body: bytes, content_type: Optional[str] = None, url: Optional[str] = None) -> ApiError:
    """The error of an answer of status 400 or above: the class of its status
    with the RFC 9457 problem it carries; NotAPIError for another server's
    page below 500."""
    ct = media_type(content_type)
    try:
        d = json.loads(body)
    except ValueError:
        d = None
    if isinstance(d, dict) and (d.get("title") or d.get("detail")):
        p = Problem.from_dict(d, status)
    else:
        try:
            title = http.HTTPStatus(status).phrase
        except ValueError:
            title = f"HTTP {status}"
        p = Problem(status=status, title=title)
        if status < 500 and ct and not is_json(ct):
            return NotAPIError(p, url=url or "", content_type=ct)
        # A short text says what went wrong (a proxy's "upstream timed out");
        # a web page does not fit on the line.
        text = body.decode("utf-8", "replace").strip()
        if text and ct != "text/html":
            p.detail = text if len(text) <= 200 else text[:200] + "…"
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    return cls(p, url=url, content_type=ct or None)
