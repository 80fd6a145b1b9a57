"""Errors: one exception per kind of answer, each carrying the RFC 9457 problem."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


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
        errs = [FieldError(e.get("field", ""), e.get("message", "")) for e in d.get("errors") or []]
        return cls(status=int(d.get("status") or status), title=d.get("title", ""), type=d.get("type", "about:blank"),
                   detail=d.get("detail"), instance=d.get("instance"), errors=errs)


class ApiError(Exception):
    """An answer of status 400 or above."""

    def __init__(self, problem: Problem):
        self.problem = problem
        self.status = problem.status
        msg = problem.detail or problem.title or f"HTTP {problem.status}"
        extra = [f"{e.field}: {e.message}" for e in problem.errors if e.message not in msg]
        if extra:
            msg += " (" + "; ".join(extra) + ")"
        super().__init__(f"{problem.status} {msg}")


class ValidationError(ApiError):
    """400 or 422: the request was bad; ``errors`` names the fields."""

    @property
    def errors(self) -> List[FieldError]:
        return self.problem.errors


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


_BY_STATUS = {400: ValidationError, 422: ValidationError, 401: AuthError, 403: AuthError, 404: NotFoundError,
              409: ConflictError, 412: PreconditionFailedError}


def error_for(status: int, body: bytes) -> ApiError:
    import json

    try:
        d = json.loads(body)
        if not isinstance(d, dict):
            raise ValueError
    except ValueError:
        d = {"title": body.decode("utf-8", "replace")[:200]}
    p = Problem.from_dict(d, status)
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    return cls(p)
