"""Client and AsyncClient: the Resource Manager's REST API v1 over httpx.

Both take the server's root URL (``http://127.0.0.1:8080``) and append the
API's base path. Every POST carries an ``Idempotency-Key``, so a request that
failed to reach the server (or whose answer was lost) is sent again safely;
GET and PUT are retried likewise. Errors are the exceptions of
:mod:`avxrm.errors`, by status.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json as jsonlib
import math
import os
import random
import time
import uuid
import zipfile
from urllib.parse import quote
from typing import Any, AsyncIterator, Callable, Dict, Iterable, Iterator, List, Optional, Union

import httpx

from .auth import BearerAuth, TokenProvider
from .errors import (BASE_PATH, ApiError, MalformedEventError, NotAPIError, NotFoundError, Problem, ServerError,
                     UnreachableError, error_for, is_json, media_type, unreachable)
from .models import (AppRuntimeConfig, Application, Artifact, Deployment, Event, Job, JobArray, PendingJob, Plugin,
                     Queue, ScenarioExport, Whoami)

DEFAULT_SERVER = "http://127.0.0.1:8080"
#: The page size of a list's iteration when the caller gives no ``limit``
#: (the API's own default is 50), and the largest the API takes.
PAGE_SIZE = 200
MAX_PAGE_SIZE = 1000
#: How long connecting may take, and how long the server may take to send
#: each part of its answer (as the Go SDK's DialTimeout and
#: ResponseHeaderTimeout): a server that takes the connection but never
#: answers is not waited for forever.
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0

Token = Union[None, str, TokenProvider]


def _backoff(attempt: int, initial: float = 0.1, maximum: float = 5.0) -> float:
    d = min(initial * (2 ** attempt), maximum)
    return d - random.uniform(0, d / 4)


def _unavailable_wait(resp: httpx.Response, method: str, attempt: int, retries: int) -> Optional[float]:
    """The wait before trying a request the server answered 503 (its store
    cannot be reached) again: at least its Retry-After, at most 5 s; None if
    it is not to be tried again. A POST whose earlier attempt got no answer
    and that the server answers 409 because that attempt still holds its
    Idempotency-Key is tried again likewise, as docs/API.md asks."""
    if method in ("PATCH", "DELETE") or attempt >= retries:
        return None
    if resp.status_code == 409 and method == "POST" and attempt > 0:
        return _backoff(attempt) if _key_in_progress(resp) else None
    if resp.status_code != 503:
        return None
    try:
        after = float(int(resp.headers.get("Retry-After", "")))
    except ValueError:
        after = 0.0
    return max(_backoff(attempt), min(max(after, 0.0), 5.0))


def _key_in_progress(resp: httpx.Response) -> bool:
    """Whether a 409 says that another attempt holds the request's Idempotency-Key."""
    try:
        errors = resp.json().get("errors") or []
    except (ValueError, AttributeError):
        return False
    return any(isinstance(e, dict) and e.get("field") == "Idempotency-Key" for e in errors)


def _artifact_path(job_id: str, name: str, declaration: Optional[str]) -> Any:
    """The API path and query of the job's artifact ``name`` (``scenarios/<sample>/<path>``
    or ``assets/<path>``); a name of neither kind is refused before anything is sent."""
    if not isinstance(name, str):
        raise TypeError(f"artifact name: want a str such as assets/<path>, got {type(name).__name__}")
    segs = name.split("/")
    if any(s in ("", ".", "..") for s in segs):
        raise ValueError(f"artifact {name!r}: a path segment may not be empty, '.' or '..'")
    if len(segs) >= 3 and segs[0] == "scenarios":
        if declaration:
            raise ValueError(f"declaration is for assets; {name} is a scenario file of sample {segs[1]}")
    elif not (len(segs) >= 2 and segs[0] == "assets"):
        raise ValueError(f"artifact {name!r}: want scenarios/<sample>/<path> or assets/<path>")
    path = f"/jobs/{_seg(job_id, 'job id')}/artifacts/" + "/".join(quote(s, safe="") for s in segs)
    return path, ({"declaration": declaration} if declaration else None)


def _seg(value: Any, what: str) -> str:
    """``value`` (an id or a name) as one segment of a request's path,
    percent-escaped: a ``/``, ``?``, ``#`` or space in it stays part of it
    (``..`` too, which would otherwise climb to another resource). None, an
    empty string or another type (an int too: ids are strings) is refused
    before anything is sent."""
    if not isinstance(value, str):
        raise TypeError(f"{what}: want a str, got {type(value).__name__} {value!r}")
    s = value
    if s == "":
        raise ValueError(f"{what}: empty")
    if s in (".", ".."):
        return s.replace(".", "%2E")
    return quote(s, safe="")


def _index(value: Any, what: str) -> str:
    """``value`` (an instance's index, a replica's slot) as a segment of a
    request's path: an int of 0 or more; another type is refused before
    anything is sent."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what}: want an int, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"{what}: want 0 or more, got {value}")
    return str(value)


def _page_params(params: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The query of a list's first page: the filters, and the page size: the
    caller's ``limit`` (the API takes 1..1000), else PAGE_SIZE."""
    params = dict(params or {})
    limit = params.get("limit")
    if limit is None:
        params["limit"] = PAGE_SIZE
    elif isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit: want the page size, an int of 1..{MAX_PAGE_SIZE}, got {limit!r}")
    return params


def _drop_none(d: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


class _SSEParser:
    """Turns the lines of a text/event-stream into Events."""

    def __init__(self, last: Optional[int] = None) -> None:
        self.id: Optional[int] = None
        self.last = last  # the id of the last event read
        self.position: Optional[int] = None  # the id of a message of an id alone, not yet taken
        self.type = ""
        self.data: List[str] = []
        # The server ended the stream as its token is no longer accepted
        # (a message of event token-expired alone): reconnect with a new one.
        self.expired = False

    def feed(self, line: str) -> Optional[Event]:
        line = line.rstrip("\r\n")
        if line == "":
            if not self.data:
                if self.type == "token-expired":
                    self.expired = True
                # A message of an id alone (the server's first to a reader
                # without Last-Event-ID) is no event: it is where the
                # stream stands, which a reconnect resumes after.
                if self.id is not None:
                    self.position = self.last = self.id
                self.id, self.type = None, ""
                return None
            try:
                ce = jsonlib.loads("\n".join(self.data))
            except ValueError as e:
                raise MalformedEventError(f"event {self.id}: its data is not JSON ({e})", after=self.last) from None
            if not isinstance(ce, dict):
                raise MalformedEventError(f"event {self.id}: its data is not a CloudEvent object", after=self.last)
            if self.id is None:
                raise MalformedEventError(f"an event after {self.last} has no id", after=self.last)
            self.last = self.id
            ev = Event(id=self.id or 0, type=self.type or ce.get("type", ""), subject=ce.get("subject", ""),
                       source=ce.get("source", ""), time=ce.get("time", ""), data=ce.get("data") or {}, cloudevent=ce)
            self.id, self.type, self.data = None, "", []
            return ev
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id":
            try:
                self.id = int(value)
            except ValueError:
                raise MalformedEventError(f"an event after {self.last} has the id {value!r}, not a number",
                                          after=self.last) from None
        elif name == "event":
            self.type = value
        elif name == "data":
            self.data.append(value)
        return None


def _url(request: httpx.Request) -> str:
    """The URL of a request as an error names it: no user, no query."""
    u = request.url
    return f"{u.scheme}://{u.netloc.decode('ascii')}{u.path}"


def _check(resp: httpx.Response) -> None:
    if resp.status_code >= 400:
        raise error_for(resp.status_code, resp.content, resp.headers.get("Content-Type"), _url(resp.request))


def _not_api(resp: httpx.Response) -> NotAPIError:
    """The error of a successful answer that is not the API's (another server's page)."""
    return NotAPIError(Problem(status=resp.status_code, title=resp.reason_phrase), url=_url(resp.request),
                       content_type=media_type(resp.headers.get("Content-Type")) or None)


def _stream_error(resp: httpx.Response, want: str) -> Optional[ApiError]:
    """The error of a streamed answer: of status 400 or above (its body read
    already), or NotAPIError when it is not of the media type ``want``."""
    if resp.status_code >= 400:
        return error_for(resp.status_code, resp.content, resp.headers.get("Content-Type"), _url(resp.request))
    ct = media_type(resp.headers.get("Content-Type"))
    return _not_api(resp) if ct and ct != want else None


def _log_range(offset: int, tail: Optional[int]) -> Optional[Dict[str, Any]]:
    """The query of a log read from offset bytes on, or of its last tail lines (none: all of it)."""
    q = _drop_none({"offset": offset or None, "tail": tail})
    return q or None


def _watch_request(job_id: Optional[str], queue_id: Optional[str], types: Optional[Iterable[str]],
                   last: Optional[int]) -> Dict[str, Any]:
    if isinstance(types, str):  # one type, not its letters
        types = [types]
    params = _drop_none({"job_id": job_id, "queue_id": queue_id, "type": ",".join(types) if types else None})
    headers = {"Accept": "text/event-stream"}
    if last is not None:
        headers["Last-Event-ID"] = str(last)
    return {"params": params, "headers": headers}


class _Resources:
    """The resource helpers; the same for Client and AsyncClient (whose
    requests return coroutines and async iterators)."""

    def _init_resources(self) -> None:
        self.queues = Queues(self)
        self.plugins = Collection(self, "/plugins", Plugin)
        self.applications = Collection(self, "/applications", Application)
        self.apps = self.applications
        self.deployments = Deployments(self)
        self.runtime_configs = RuntimeConfigs(self)
        self.jobs = Jobs(self)
        self.arrays = Arrays(self)
        self.exports = Exports(self)
        self.events = Events(self)

    def server_version(self) -> Any:
        """The server's build, from GET /version at its root (open without a token):
        ``{"version": ..., "go_version": ..., "platform": ...}``. Awaited on AsyncClient."""
        return self._request("GET", self.server + "/version")

    def whoami(self, queue: Optional[str] = None) -> Any:
        """Who the token stands for, its access and when it ends, and on which queues it
        may read jobs and submit (``Whoami``; with ``queue``, that queue alone, and
        ``NotFoundError`` if there is none). Any valid token may ask. Awaited on AsyncClient."""
        return self._request("GET", "/whoami", params=_drop_none({"queue": queue}), parse=Whoami.from_dict)

    def _request(self, method: str, path: str, **kw: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _pages(self, path: str, params: Optional[Dict[str, Any]], parse: Callable[[Dict[str, Any]], Any]) -> Any:
        raise NotImplementedError  # pragma: no cover


class _Listed:
    """A collection of resources that are created and deleted but not
    changed: ``list``, ``get``, ``create``, ``delete``."""

    def __init__(self, client: _Resources, path: str, model: Any):
        self._c, self._path, self._model = client, path, model

    def list(self, **filters: Any) -> Any:
        """Iterate over every item, page by page; filters are the API's query
        parameters. ``limit`` is the page size (1..1000, default 200): each
        request asks for that many, and the iteration still goes on to the
        last page (``itertools.islice(c.jobs.list(limit=7), 7)`` reads one
        page of 7); ``cursor`` starts at that page."""
        return self._c._pages(self._path, _drop_none(filters), self._model.from_dict)

    def get(self, id_or_name: str) -> Any:
        return self._c._request("GET", f"{self._path}/{_seg(id_or_name, 'id_or_name')}", parse=self._model.from_dict)

    def create(self, **fields: Any) -> Any:
        return self._c._request("POST", self._path, json=fields, parse=self._model.from_dict)

    def delete(self, id_or_name: str) -> Any:
        return self._c._request("DELETE", f"{self._path}/{_seg(id_or_name, 'id_or_name')}")


class Collection(_Listed):
    """A collection of resources: ``list``, ``get``, ``create``, ``update`` (a
    merge patch), ``replace``, ``delete``. Fields are the API's JSON names."""

    def update(self, id_or_name: str, **fields: Any) -> Any:
        """A JSON merge patch: given fields replace, None removes."""
        return self._c._request("PATCH", f"{self._path}/{_seg(id_or_name, 'id_or_name')}", json=fields, parse=self._model.from_dict,
                                headers={"Content-Type": "application/merge-patch+json"})

    def replace(self, id_or_name: str, **fields: Any) -> Any:
        return self._c._request("PUT", f"{self._path}/{_seg(id_or_name, 'id_or_name')}", json=fields, parse=self._model.from_dict)


class Queues(Collection):
    """Queues, and ``pending``: a queue's waiting jobs in the order the
    scheduler considers them."""

    def __init__(self, client: _Resources):
        super().__init__(client, "/queues", Queue)

    def pending(self, id_or_name: str, limit: Optional[int] = None) -> Any:
        """Iterate over the queue's waiting jobs (PendingJob), first in line
        first; ``limit`` is the page size, as for ``list``."""
        return self._c._pages(f"/queues/{_seg(id_or_name, 'queue')}/pending", _drop_none({"limit": limit}),
                              PendingJob.from_dict)


class Deployments(Collection):
    """Deployments: the collection's helpers, and ``logs`` of a replica."""

    def __init__(self, client: _Resources):
        super().__init__(client, "/deployments", Deployment)

    def logs(self, id_or_name: str, replica: int = 0, offset: int = 0, tail: Optional[int] = None,
             as_bytes: bool = False) -> Any:
        """The output so far of the replica slot's current replica, as text (bytes with
        ``as_bytes``), from ``offset`` bytes on or its last ``tail`` lines
        (``status["replicas"]`` says its state, restarts and how the last one ended)."""
        return self._c._request("GET", f"/deployments/{_seg(id_or_name, 'deployment')}/replicas/{_index(replica, 'replica')}/logs",
                                params=_log_range(offset, tail), text=not as_bytes, raw=as_bytes)


class RuntimeConfigs:
    """App-runtime-configs, one per (queue, application)."""

    def __init__(self, client: _Resources):
        self._c = client

    @staticmethod
    def _p(queue_id: str, application_id: str) -> str:
        return f"/app-runtime-config/{_seg(queue_id, 'queue_id')}/application/{_seg(application_id, 'application_id')}"

    def list(self, queue_id: Optional[str] = None, application_id: Optional[str] = None,
             limit: Optional[int] = None) -> Any:
        """Iterate over the configs, of one queue or application if given;
        ``limit`` is the page size, as for ``Collection.list``."""
        return self._c._pages("/app-runtime-config", _drop_none({"queue_id": queue_id, "application_id": application_id,
                                                                 "limit": limit}), AppRuntimeConfig.from_dict)

    def get(self, queue_id: str, application_id: str) -> Any:
        return self._c._request("GET", self._p(queue_id, application_id), parse=AppRuntimeConfig.from_dict)

    def create(self, queue_id: str, application_id: str, **fields: Any) -> Any:
        return self._c._request("POST", self._p(queue_id, application_id), json=fields, parse=AppRuntimeConfig.from_dict)

    def update(self, queue_id: str, application_id: str, **fields: Any) -> Any:
        return self._c._request("PATCH", self._p(queue_id, application_id), json=fields, parse=AppRuntimeConfig.from_dict,
                                headers={"Content-Type": "application/merge-patch+json"})

    def delete(self, queue_id: str, application_id: str) -> Any:
        return self._c._request("DELETE", self._p(queue_id, application_id))


class Jobs(_Listed):
    """Jobs: ``submit``, ``get``, ``list``, ``wait``, ``cancel``, ``cleanup``,
    ``delete``, ``logs``, ``artifacts``, the post-controller. A job is not
    changed once submitted (the API has no PUT or PATCH of a job): there is
    no ``update`` or ``replace``."""

    def __init__(self, client: _Resources):
        super().__init__(client, "/jobs", Job)

    def __getattr__(self, name: str) -> Any:
        if name in ("update", "replace"):
            raise AttributeError(f"jobs have no {name}(): a job cannot be changed once submitted (the API has no "
                                 f"PUT or PATCH of /jobs/{{id}}); cancel it and submit another")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def submit(self, **fields: Any) -> Any:
        """``submit(queue_id="Default", application={"id": "app-…"}, worker_instances=8)``"""
        return self.create(**fields)

    def wait(self, id: str, timeout: Optional[float] = None) -> Any:
        """The job once its status is final, followed through the event stream."""
        return self._c._wait_job(id, timeout)  # type: ignore[attr-defined]

    def cancel(self, id: str) -> Any:
        return self._c._request("POST", f"/jobs/{_seg(id, 'job id')}/cancel", parse=Job.from_dict)

    def cleanup(self, id: str) -> Any:
        return self._c._request("POST", f"/jobs/{_seg(id, 'job id')}/cleanup", parse=Job.from_dict)

    def start_post_controller(self, id: str) -> Any:
        return self._c._request("POST", f"/jobs/{_seg(id, 'job id')}/post-controller")

    def stop_post_controller(self, id: str) -> Any:
        return self._c._request("DELETE", f"/jobs/{_seg(id, 'job id')}/post-controller")

    def logs(self, id: str, role: str = "worker", index: int = 0, offset: int = 0, tail: Optional[int] = None,
             as_bytes: bool = False) -> Any:
        """The output so far of instance ``index`` (an int) of ``role``
        (``worker``, ``controller``, ``post-controller``), from ``offset`` bytes
        on, or its last ``tail`` lines: as text (bytes that are not UTF-8 become
        U+FFFD), or with ``as_bytes`` as the bytes, whose ``len`` is the offset to
        read only what is new next time (a text's length counts characters, not bytes)."""
        return self._c._request("GET", f"/jobs/{_seg(id, 'job id')}/instances/{_seg(role, 'role')}/{_index(index, 'index')}/logs", params=_log_range(offset, tail),
                                text=not as_bytes, raw=as_bytes)

    def artifacts(self, id: str, **filters: Any) -> Any:
        """Iterate over the job's artifacts (``Artifact``); ``limit`` is the page size, as for ``list``."""
        return self._c._pages(f"/jobs/{_seg(id, 'job id')}/artifacts", _drop_none(filters), Artifact.from_dict)

    def put_artifact(self, id: str, name: str, data: Union[bytes, str], declaration: Optional[str] = None) -> Any:
        """Upload ``data`` (a str is sent as UTF-8) as the job's artifact ``name``:
        ``scenarios/<sample>/<path>``, a concrete scenario file of that sample, or
        ``assets/<path>``, an asset of ``declaration`` (else common asset data).
        Returns the stored ``Artifact``; an upload of the same name replaces it.
        The upload carries its sha-256 (``Content-Digest``), so the server keeps
        it only if it received exactly these bytes."""
        if isinstance(data, str):
            body = data.encode()
        elif isinstance(data, (bytes, bytearray, memoryview)):
            body = bytes(data)
        else:  # bytes(5) would upload five zero bytes
            raise TypeError(f"data: want bytes or str, got {type(data).__name__}")
        path, params = _artifact_path(id, name, declaration)
        digest = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
        return self._c._request("PUT", path, params=params, content=body, headers={"Content-Digest": digest},
                                parse=Artifact.from_dict)

    def get_artifact(self, id: str, name: str, declaration: Optional[str] = None) -> Any:
        """The bytes of the job's artifact ``name`` (as ``put_artifact`` takes it),
        checked against the sha256 the server names."""
        path, params = _artifact_path(id, name, declaration)
        return self._c._request("GET", path, params=params, raw=True)


class Arrays:
    """Job arrays: ``submit``, ``get``, ``list``, ``jobs``, ``cancel``, ``wait``."""

    def __init__(self, client: _Resources):
        self._c = client

    def submit(self, job: Dict[str, Any], count: int, max_parallel: Optional[int] = None) -> Any:
        """``count`` jobs of the body ``job`` (as for ``jobs.submit``), each with RM_ARRAY_INDEX."""
        body = _drop_none({"job": job, "count": count, "max_parallel": max_parallel})
        # The API answers once every job is stored (about 0.7 ms a job on the
        # embedded store): the read timeout grows with the count.
        t = self._c._http.timeout  # type: ignore[attr-defined]
        per_job = count * _ARRAY_JOB_ANSWER_SECONDS if isinstance(count, int) else 0  # else the API says what is wrong
        read = None if t.read is None else t.read + per_job
        timeout = httpx.Timeout(connect=t.connect, read=read, write=t.write, pool=t.pool)
        return self._c._request("POST", "/job-arrays", json=body, parse=JobArray.from_dict, timeout=timeout)

    def get(self, id: str) -> Any:
        return self._c._request("GET", f"/job-arrays/{_seg(id, 'job array id')}", parse=JobArray.from_dict)

    def list(self, limit: Optional[int] = None) -> Any:
        """Iterate over the job arrays; ``limit`` is the page size, as for ``jobs.list``."""
        return self._c._pages("/job-arrays", _drop_none({"limit": limit}), JobArray.from_dict)

    def jobs(self, id: str, **filters: Any) -> Any:
        """Iterate over the array's jobs; filters (and ``limit``, the page size) as for ``jobs.list``."""
        return self._c._pages("/jobs", _drop_none(dict(filters, array_id=id)), Job.from_dict)

    def cancel(self, id: str) -> Any:
        """Ask every job of the array that has not ended to cancel."""
        return self._c._request("POST", f"/job-arrays/{_seg(id, 'job array id')}/cancel", parse=JobArray.from_dict)

    def wait(self, id: str, timeout: Optional[float] = None, interval: float = 1.0) -> Any:
        """The array once every job of it that exists has ended (``final``; a
        deleted job is in none of its ``counts``), read every ``interval``
        seconds; TimeoutError once ``timeout`` seconds have passed (it is read a
        last time then; 0 or below: read once)."""
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0:
            raise ValueError(f"interval: want seconds above 0, got {interval!r}")
        return self._c._wait_array(id, timeout, interval)  # type: ignore[attr-defined]


_EXPORT_ENDS = ["rm.export.ready", "rm.export.failed", "rm.export.deleted"]


def _export_end(ev: Event, id: str) -> Optional[ScenarioExport]:
    """The export as its end event ev says, if ev is about export id; a
    deletion (DELETE, expiry, its job's deletion) raises NotFoundError."""
    if ev.subject != id:
        return None
    if ev.type == "rm.export.deleted":
        raise NotFoundError(Problem(status=404, title="Not Found", detail=f"scenario export {id} was deleted"))
    return ScenarioExport.from_dict(ev.data)


class Exports:
    """Scenario exports: ``create``, ``get``, ``list``, ``wait``, ``download``, ``delete``."""

    def __init__(self, client: _Resources):
        self._c = client

    def create(self, job_id: str, samples: Optional[List[str]] = None, include: Optional[List[str]] = None,
               filter_by_asset_declaration: Optional[List[str]] = None) -> Any:
        body = _drop_none({"samples": samples, "include": include, "filter_by_asset_declaration": filter_by_asset_declaration})
        return self._c._request("POST", f"/jobs/{_seg(job_id, 'job_id')}/scenario-exports", json=body, parse=ScenarioExport.from_dict)

    def get(self, id: str) -> Any:
        return self._c._request("GET", f"/scenario-exports/{_seg(id, 'export id')}", parse=ScenarioExport.from_dict)

    def list(self, job_id: str, limit: Optional[int] = None) -> Any:
        """Iterate over the job's exports (``ScenarioExport``), oldest first; ``limit`` is the page size, as for ``jobs.list``."""
        return self._c._pages(f"/jobs/{_seg(job_id, 'job_id')}/scenario-exports", _drop_none({"limit": limit}), ScenarioExport.from_dict)

    def wait(self, id: str, timeout: Optional[float] = None) -> Any:
        return self._c._wait_export(id, timeout)  # type: ignore[attr-defined]

    def download(self, id: str, path: str) -> Any:
        """Write the ready export's zip to path (resuming path + ".part") and
        verify it against its sha256 and manifest.json; returns the manifest."""
        return self._c._download(id, path)  # type: ignore[attr-defined]

    def delete(self, id: str) -> Any:
        """Remove the export and its zip before it expires (at any status)."""
        return self._c._request("DELETE", f"/scenario-exports/{_seg(id, 'export id')}")


class Events:
    """The event stream."""

    def __init__(self, client: _Resources):
        self._c = client

    def watch(self, job_id: Optional[str] = None, queue_id: Optional[str] = None, types: Optional[Iterable[str]] = None,
              after: Optional[int] = None, on_disconnect: Optional[Callable[[Exception, int], None]] = None) -> Any:
        """Iterate over events as they come. ``after`` resumes after that event id
        (0: every stored event; None: only new ones). A lost connection is
        reopened with ``Last-Event-ID`` after a backoff: no event is lost or
        repeated. ``on_disconnect(error, attempt)`` is told of each loss. A
        stream the server ends as its token expired is reopened at once with
        the token the client's TokenProvider gives anew (not a loss); a
        static token then ends the iteration with the server's AuthError."""
        return self._c._watch(job_id, queue_id, types, after, on_disconnect)  # type: ignore[attr-defined]


def _range(part: str, sha256: Optional[str]) -> Dict[str, str]:
    """The headers asking for the rest of a download of which part holds the start."""
    have = os.path.getsize(part) if os.path.exists(part) else 0
    return {"Range": f"bytes={have}-", "If-Range": f'"{sha256}"'} if have else {}


def _zip_part(resp: httpx.Response, part: str) -> Any:
    """The file to write the zip of a download's answer to: part, appended to
    for a 206, made anew for a 200; a null file for a 416 (part is whole).
    Raises the answer's error (its body read) before anything is written."""
    if resp.status_code == 416:
        return open(os.devnull, "wb")
    e = _stream_error(resp, "application/zip")
    if e is not None:
        raise e
    return open(part, "ab" if resp.status_code == 206 else "wb")


def _downloaded(part: str, path: str, sha256: Optional[str]) -> Dict[str, Any]:
    """Verify the zip in part and move it to path; a part that fails is
    removed, as resuming it would only append to what is wrong."""
    try:
        manifest = verify_zip(part, sha256)
    except ValueError:
        os.remove(part)
        raise
    os.replace(part, path)
    return manifest


def verify_zip(path: str, sha256: Optional[str]) -> Dict[str, Any]:
    """Check the zip's sha256 and every file against its manifest.json."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if sha256 and h.hexdigest() != sha256:
        raise ValueError(f"{path}: sha256 {h.hexdigest()}, the server says {sha256}")
    try:
        with zipfile.ZipFile(path) as z:
            manifest = jsonlib.loads(z.read("manifest.json"))
            for e in manifest.get("files", []):
                data = z.read(e["path"])
                if len(data) != e["size"] or hashlib.sha256(data).hexdigest() != e["sha256"]:
                    raise ValueError(f"{path}: {e['path']} does not match the manifest")
            if len(z.namelist()) != len(manifest.get("files", [])) + 1:
                raise ValueError(f"{path}: the zip and its manifest list different files")
    except (zipfile.BadZipFile, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: not a scenario export's zip: {e}") from e
    return manifest


# What each job of an array may add to the time the API takes to answer
# its creation (ten times what it takes on the embedded store).
_ARRAY_JOB_ANSWER_SECONDS = 0.005

_RETRYABLE = (httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.ConnectTimeout)


def _prepare(method: str, kw: Dict[str, Any]) -> Dict[str, Any]:
    headers = dict(kw.pop("headers", None) or {})
    if method == "POST":
        headers.setdefault("Idempotency-Key", uuid.uuid4().hex)
    body = kw.pop("json", None)
    out: Dict[str, Any] = {"headers": headers, "params": kw.pop("params", None)}
    if "timeout" in kw:
        out["timeout"] = kw.pop("timeout")
    if body is not None:
        out["content"] = jsonlib.dumps(body, allow_nan=False).encode()  # NaN is not JSON
        headers.setdefault("Content-Type", "application/json")
    content = kw.pop("content", None)
    if content is not None:
        out["content"] = content
        headers.setdefault("Content-Type", "application/octet-stream")
    return out


def _result(resp: httpx.Response, parse: Optional[Callable[[Any], Any]], text: bool, raw: bool = False) -> Any:
    _check(resp)
    ct = media_type(resp.headers.get("Content-Type"))
    if ct == "text/html":  # the API answers no request with a web page
        raise _not_api(resp)
    if text:
        return resp.text
    if raw:
        want, got = resp.headers.get("ETag", "").strip('"'), hashlib.sha256(resp.content).hexdigest()
        if want and got != want:
            raise ValueError(f"{_url(resp.request)}: sha256 {got}, the server says {want}")
        return resp.content
    if resp.status_code == 204 or not resp.content:
        return None
    if ct and not is_json(ct):
        raise _not_api(resp)
    try:
        data = resp.json()
    except ValueError:
        raise _not_api(resp) from None
    if parse is None:
        return data
    if not isinstance(data, dict):
        raise _not_api(resp)
    return parse(data)


def _page(d: Dict[str, Any]) -> Dict[str, Any]:
    return d


def _timeout(timeout: Any) -> httpx.Timeout:
    """The client's timeouts: CONNECT_TIMEOUT and READ_TIMEOUT by default; a
    number of seconds above 0 is the read timeout (connecting takes at most
    CONNECT_TIMEOUT of it); an httpx.Timeout as it is; None: no timeout.
    Anything else is refused: 0 would time every request out at once."""
    if timeout is None or isinstance(timeout, httpx.Timeout):
        return httpx.Timeout(timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout: want seconds (a number above 0), None or an httpx.Timeout, "
                        f"got {type(timeout).__name__} {timeout!r}")
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout: want seconds above 0 (None: no timeout), got {timeout!r}")
    return httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout))


def _server(server: Optional[str]) -> str:
    """The server's root URL, checked as the Go SDK's New checks it: a URL of
    http or https with a host, without a query or fragment, and not a URL
    under the root that a browser shows (the web view's ``/ui``, the API
    docs' ``/api/resources/docs``, the OpenAPI document): those are refused
    naming the root to give, the API's own base path too (it is appended to
    the root). None or "": $RM_SERVER, else DEFAULT_SERVER."""
    if server is not None and not isinstance(server, str):
        raise TypeError(f"server: want a URL such as {DEFAULT_SERVER}, got {type(server).__name__} {server!r}")
    given = server or os.environ.get("RM_SERVER") or DEFAULT_SERVER
    root = given.rstrip("/")
    try:
        u = httpx.URL(root)
        ok = u.scheme in ("http", "https") and bool(u.host)
    except Exception:
        ok = False
    if not ok:
        raise ValueError(f"server {given!r}: want a URL such as {DEFAULT_SERVER}")
    path = u.path + "/"
    cut = {"/ui/": "web view", "/api/resources/": "API"}
    at = {p: path.index(p) for p in cut if p in path}
    if "?" in given or "#" in given or at:
        first = min(at, key=at.get) if at else None
        base = u.copy_with(path=(path[:at[first]] if first else u.path) or "/", query=None, fragment=None)
        hint = str(base).rstrip("/")
        if first:
            raise ValueError(f"server {given!r}: that is a URL of the server's {cut[first]}, not its root; give {hint}")
        raise ValueError(f"server {given!r}: a root URL has no query or fragment; give {hint}")
    return root


def _retries(retries: Any) -> int:
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries: want an int of 0 or more, got {retries!r}")
    return retries


def _array_pause(a: JobArray, deadline: Optional[float], interval: float, timeout: Optional[float]) -> float:
    """The wait before reading array a, which has not ended, again: interval,
    cut short at the deadline (the array is read a last time then); once
    the deadline has passed, TimeoutError saying how far the array got."""
    if deadline is None:
        return interval
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"job array {a.id}: {a.active} of its jobs not ended after {timeout}s "
                           f"({a.ended} of {a.count} ended)")
    return min(interval, left)


async def _until(deadline: Optional[float], wait: Any, still: Callable[[], str]) -> Any:
    """What the coroutine wait returns, if it ends before deadline (a
    time.monotonic(); None: no limit); else TimeoutError saying still()
    (the builtin TimeoutError, which asyncio's is not before Python 3.11)."""
    if deadline is None:
        return await wait
    try:
        return await asyncio.wait_for(wait, max(deadline - time.monotonic(), 0))
    except UnreachableError:
        raise
    except asyncio.TimeoutError:
        raise TimeoutError(still()) from None


class Client(_Resources):
    """A synchronous client. ``Client(server, token=None)``; a context manager.
    ``server`` is the server's root URL; None (or "") takes $RM_SERVER, else
    DEFAULT_SERVER. ``timeout``: seconds above 0 for each part of an answer,
    an httpx.Timeout, or None (no timeout).

    >>> with avxrm.Client("http://127.0.0.1:8080") as c:
    ...     job = c.jobs.submit(queue_id="Default", application={"id": app_id}, worker_instances=8)
    ...     job = c.jobs.wait(job.id)
    """

    def __init__(self, server: Optional[str] = None, token: Token = None, *, timeout: Any = READ_TIMEOUT,
                 retries: int = 4, verify: Any = True):
        self.server = _server(server)
        self.retries = _retries(retries)
        self._http = httpx.Client(base_url=self.server + BASE_PATH, timeout=_timeout(timeout), verify=verify,
                                  auth=BearerAuth(token) if token else None)
        self._init_resources()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _request(self, method: str, path: str, *, parse: Optional[Callable[[Any], Any]] = None, text: bool = False,
                 raw: bool = False, **kw: Any) -> Any:
        req = _prepare(method, kw)
        for attempt in range(self.retries + 1):
            try:
                resp = self._http.request(method, path, **req)
            except _RETRYABLE as e:
                if method in ("PATCH", "DELETE") or attempt == self.retries:
                    raise unreachable(e, method, _url(e.request), attempt + 1) from e
                time.sleep(_backoff(attempt))
                continue
            except httpx.TransportError as e:
                raise unreachable(e, method, _url(e.request), attempt + 1) from e
            wait = _unavailable_wait(resp, method, attempt, self.retries)
            if wait is None:
                break
            time.sleep(wait)
        return _result(resp, parse, text, raw)

    def _pages(self, path: str, params: Optional[Dict[str, Any]], parse: Callable[[Dict[str, Any]], Any]) -> Iterator[Any]:
        # Checked here, when the list is asked for, not at its first item.
        return self._iterate(path, _page_params(params), parse)

    def _iterate(self, path: str, params: Dict[str, Any], parse: Callable[[Dict[str, Any]], Any]) -> Iterator[Any]:
        while True:
            page = self._request("GET", path, params=params, parse=_page)
            for it in page.get("items") or []:
                yield parse(it)
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    def _watch(self, job_id: Optional[str], queue_id: Optional[str], types: Optional[Iterable[str]], after: Optional[int],
               on_disconnect: Optional[Callable[[Exception, int], None]] = None,
               deadline: Optional[float] = None, opens: bool = False) -> Iterator[Optional[Event]]:
        """The events; with opens, also None each time the stream has been
        (re)opened: what happened before that is in the records a read then
        gets, what happens after comes as events."""
        last, attempt = after, 0
        while True:
            err: Exception
            read = 45.0  # the server sends a keep-alive every 15s
            if deadline is not None:
                read = min(read, deadline - time.monotonic())
                if read <= 0:
                    raise TimeoutError("the wait timed out")
            opened, expired = time.monotonic(), False
            try:
                with self._http.stream("GET", "/events", timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT, read=read),
                                       **_watch_request(job_id, queue_id, types, last)) as r:
                    if r.status_code >= 400:
                        r.read()
                    e = _stream_error(r, "text/event-stream")
                    if isinstance(e, ServerError):  # unavailable for now: reconnect
                        raise httpx.RemoteProtocolError(str(e))
                    if e is not None:
                        raise e
                    if opens:
                        yield None
                    parser = _SSEParser(last)
                    for line in r.iter_lines():
                        # Keep-alives come every 15 s and each resets the read
                        # timeout: the deadline is checked on every line, so
                        # a wait overruns it by one keep-alive at most.
                        if deadline is not None and time.monotonic() >= deadline:
                            raise TimeoutError("the wait timed out")
                        ev = parser.feed(line)
                        if parser.position is not None:
                            last, parser.position = parser.position, None
                        if ev is not None:
                            last, attempt = ev.id, 0
                            yield ev
                        if parser.expired:
                            expired = True
                            break
                err = EOFError("the server ended the stream")
            except httpx.TransportError as e:
                err = e
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError("the wait timed out") from e
            if expired and time.monotonic() - opened >= 1.0:
                continue  # not a lost connection: open it again at once, with a new token
            if on_disconnect:
                on_disconnect(err, attempt)
            pause = _backoff(attempt)
            if deadline is not None:  # a wait ends at its deadline, not a backoff later
                pause = min(pause, max(deadline - time.monotonic(), 0.0))
            time.sleep(pause)
            attempt += 1

    def _wait_job(self, id: str, timeout: Optional[float]) -> Job:
        deadline = None if timeout is None else time.monotonic() + timeout
        job: Job = self.jobs.get(id)
        if job.final:
            return job
        try:
            # From the stream's end, not its start: each time the stream
            # opens the record is read again, so nothing before it is missed
            # and the job's stored events are not replayed.
            for ev in self._watch(id, None, None, None, deadline=deadline, opens=True):
                if ev is None:
                    j = self.jobs.get(id)
                    if j.final:
                        return j
                    job = j if j.version > job.version else job
                    continue
                if ev.type == "rm.job.deleted":
                    raise NotFoundError(Problem(status=404, title="Not Found", detail=f"job {id} was deleted"))
                j = ev.job()
                if j.version > job.version:
                    job = j
                    if job.final:
                        # Events carry instance_counts, not instances: return
                        # the record as get() does.
                        return self.jobs.get(id)
        except TimeoutError:  # the stream checks the deadline on every line
            raise TimeoutError(f"job {id} is still {job.status}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait_array(self, id: str, timeout: Optional[float], interval: float) -> JobArray:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            a: JobArray = self.arrays.get(id)
            if a.final:
                return a
            time.sleep(_array_pause(a, deadline, interval, timeout))

    def _wait_export(self, id: str, timeout: Optional[float]) -> ScenarioExport:
        deadline = None if timeout is None else time.monotonic() + timeout
        x: ScenarioExport = self.exports.get(id)
        if x.status in ("ready", "failed"):
            return x
        try:
            # From the stream's end, not its start (every export's end ever
            # stored): each time the stream opens the record is read again.
            for ev in self._watch(None, None, _EXPORT_ENDS, None, deadline=deadline, opens=True):
                if ev is None:
                    x = self.exports.get(id)
                    if x.status in ("ready", "failed"):
                        return x
                elif (end := _export_end(ev, id)) is not None:
                    return end
        except TimeoutError:  # the stream checks the deadline on every line
            raise TimeoutError(f"scenario export {id} is still {x.status}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _download(self, id: str, path: str) -> Dict[str, Any]:
        x: ScenarioExport = self.exports.get(id)
        part = path + ".part"
        resumed = os.path.exists(part)
        self._fetch_zip(id, part, x.sha256)
        try:
            return _downloaded(part, path, x.sha256)
        except ValueError:
            if not resumed:
                raise
        self._fetch_zip(id, part, x.sha256)  # the .part resumed was not of this zip: fetch it whole
        return _downloaded(part, path, x.sha256)

    def _fetch_zip(self, id: str, part: str, sha256: Optional[str]) -> None:
        """Append the export's zip to part from its size on, resuming after a lost connection."""
        url = f"/scenario-exports/{_seg(id, 'export id')}/download"
        for attempt in range(self.retries + 1):
            try:
                with self._http.stream("GET", url, headers=_range(part, sha256)) as r:
                    if r.status_code >= 400:
                        r.read()
                    with _zip_part(r, part) as f:
                        for chunk in r.iter_bytes():
                            f.write(chunk)
                return
            except httpx.TransportError as e:
                if attempt == self.retries:
                    raise unreachable(e, "GET", _url(e.request), attempt + 1) from e
                time.sleep(_backoff(attempt))


class AsyncClient(_Resources):
    """The asynchronous client: the same helpers, awaited; an async context
    manager. Its arguments are Client's (``server`` None: $RM_SERVER).

    >>> async with avxrm.AsyncClient("http://127.0.0.1:8080") as c:
    ...     job = await c.jobs.submit(queue_id="Default", application={"id": app_id}, worker_instances=8)
    ...     job = await c.jobs.wait(job.id)
    """

    def __init__(self, server: Optional[str] = None, token: Token = None, *, timeout: Any = READ_TIMEOUT,
                 retries: int = 4, verify: Any = True):
        self.server = _server(server)
        self.retries = _retries(retries)
        self._http = httpx.AsyncClient(base_url=self.server + BASE_PATH, timeout=_timeout(timeout), verify=verify,
                                       auth=BearerAuth(token) if token else None)
        self._init_resources()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def _request(self, method: str, path: str, *, parse: Optional[Callable[[Any], Any]] = None,
                       text: bool = False, raw: bool = False, **kw: Any) -> Any:
        req = _prepare(method, kw)
        for attempt in range(self.retries + 1):
            try:
                resp = await self._http.request(method, path, **req)
            except _RETRYABLE as e:
                if method in ("PATCH", "DELETE") or attempt == self.retries:
                    raise unreachable(e, method, _url(e.request), attempt + 1) from e
                await asyncio.sleep(_backoff(attempt))
                continue
            except httpx.TransportError as e:
                raise unreachable(e, method, _url(e.request), attempt + 1) from e
            wait = _unavailable_wait(resp, method, attempt, self.retries)
            if wait is None:
                break
            await asyncio.sleep(wait)
        return _result(resp, parse, text, raw)

    def _pages(self, path: str, params: Optional[Dict[str, Any]],
               parse: Callable[[Dict[str, Any]], Any]) -> AsyncIterator[Any]:
        # Checked here, when the list is asked for, not at its first item.
        return self._iterate(path, _page_params(params), parse)

    async def _iterate(self, path: str, params: Dict[str, Any],
                       parse: Callable[[Dict[str, Any]], Any]) -> AsyncIterator[Any]:
        while True:
            page = await self._request("GET", path, params=params, parse=_page)
            for it in page.get("items") or []:
                yield parse(it)
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    async def _watch(self, job_id: Optional[str], queue_id: Optional[str], types: Optional[Iterable[str]],
                     after: Optional[int],
                     on_disconnect: Optional[Callable[[Exception, int], None]] = None,
                     opens: bool = False) -> AsyncIterator[Optional[Event]]:
        """As Client._watch."""
        last, attempt = after, 0
        while True:
            err: Exception
            opened, expired = time.monotonic(), False
            try:
                async with self._http.stream("GET", "/events", timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT, read=45.0),
                                             **_watch_request(job_id, queue_id, types, last)) as r:
                    if r.status_code >= 400:
                        await r.aread()
                    e = _stream_error(r, "text/event-stream")
                    if isinstance(e, ServerError):  # unavailable for now: reconnect
                        raise httpx.RemoteProtocolError(str(e))
                    if e is not None:
                        raise e
                    if opens:
                        yield None
                    parser = _SSEParser(last)
                    async for line in r.aiter_lines():
                        ev = parser.feed(line)
                        if parser.position is not None:
                            last, parser.position = parser.position, None
                        if ev is not None:
                            last, attempt = ev.id, 0
                            yield ev
                        if parser.expired:
                            expired = True
                            break
                err = EOFError("the server ended the stream")
            except httpx.TransportError as e:
                err = e
            if expired and time.monotonic() - opened >= 1.0:
                continue  # as Client._watch
            if on_disconnect:
                on_disconnect(err, attempt)
            await asyncio.sleep(_backoff(attempt))
            attempt += 1

    async def _wait_job(self, id: str, timeout: Optional[float]) -> Job:
        # As Client's: a job that has ended is returned whatever the timeout
        # (0 and below too); the rest of the wait is bounded by it.
        deadline = None if timeout is None else time.monotonic() + timeout
        job: Job = await self.jobs.get(id)
        if job.final:
            return job
        seen = [job]
        return await _until(deadline, self._follow_job(id, seen), lambda: f"job {id} is still {seen[-1].status}")

    async def _follow_job(self, id: str, seen: List[Job]) -> Job:
        """The job once the event stream says it ended; seen[-1] is its latest state."""
        stream = self._watch(id, None, None, None, opens=True)  # as Client._wait_job
        try:
            async for ev in stream:
                if ev is None:
                    j = await self.jobs.get(id)
                    if j.final:
                        return j
                    if j.version > seen[-1].version:
                        seen.append(j)
                    continue
                if ev.type == "rm.job.deleted":
                    raise NotFoundError(Problem(status=404, title="Not Found", detail=f"job {id} was deleted"))
                j = ev.job()
                if j.version > seen[-1].version:
                    seen.append(j)
                    if j.final:
                        # Events carry instance_counts, not instances: return
                        # the record as get() does.
                        return await self.jobs.get(id)
        finally:
            await stream.aclose()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _wait_array(self, id: str, timeout: Optional[float], interval: float) -> JobArray:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            a: JobArray = await self.arrays.get(id)
            if a.final:
                return a
            await asyncio.sleep(_array_pause(a, deadline, interval, timeout))

    async def _wait_export(self, id: str, timeout: Optional[float]) -> ScenarioExport:
        deadline = None if timeout is None else time.monotonic() + timeout
        x: ScenarioExport = await self.exports.get(id)
        if x.status in ("ready", "failed"):
            return x

        async def follow() -> ScenarioExport:
            stream = self._watch(None, None, _EXPORT_ENDS, None, opens=True)  # as Client's
            try:
                async for ev in stream:
                    if ev is None:
                        y = await self.exports.get(id)
                        if y.status in ("ready", "failed"):
                            return y
                    elif (end := _export_end(ev, id)) is not None:
                        return end
            finally:
                await stream.aclose()
            raise AssertionError("unreachable")  # pragma: no cover

        return await _until(deadline, follow(), lambda: f"scenario export {id} is still {x.status}")

    async def _download(self, id: str, path: str) -> Dict[str, Any]:
        x: ScenarioExport = await self.exports.get(id)
        part = path + ".part"
        resumed = os.path.exists(part)
        await self._fetch_zip(id, part, x.sha256)
        try:
            return _downloaded(part, path, x.sha256)
        except ValueError:
            if not resumed:
                raise
        await self._fetch_zip(id, part, x.sha256)  # the .part resumed was not of this zip: fetch it whole
        return _downloaded(part, path, x.sha256)

    async def _fetch_zip(self, id: str, part: str, sha256: Optional[str]) -> None:
        url = f"/scenario-exports/{_seg(id, 'export id')}/download"
        for attempt in range(self.retries + 1):
            try:
                async with self._http.stream("GET", url, headers=_range(part, sha256)) as r:
                    if r.status_code >= 400:
                        await r.aread()
                    with _zip_part(r, part) as f:
                        async for chunk in r.aiter_bytes():
                            f.write(chunk)
                return
            except httpx.TransportError as e:
                if attempt == self.retries:
                    raise unreachable(e, "GET", _url(e.request), attempt + 1) from e
                await asyncio.sleep(_backoff(attempt))
