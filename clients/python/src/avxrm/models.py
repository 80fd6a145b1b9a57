"""Typed models of the API's resources. Each keeps the fields this package
knows as attributes and everything the server sent in ``raw``, so fields a
newer server adds are not lost."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Type, TypeVar

T = TypeVar("T", bound="Model")

FINAL_JOB_STATUSES = ("succeeded", "failed", "cancelled")


@dataclass
class Model:
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls: Type[T], d: Dict[str, Any]) -> T:
        kwargs: Dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "raw" or f.name not in d:
                continue
            if d[f.name] is None and (f.default is not None or f.default_factory is not dataclasses.MISSING):
                continue  # null where this package knows a default ([], {}, 0): the default
            kwargs[f.name] = _convert(cls, f.name, d[f.name])
        return cls(raw=d, **kwargs)


def _convert(cls: type, name: str, v: Any) -> Any:
    sub = _NESTED.get((cls.__name__, name))
    if sub is None or v is None:
        return v
    if isinstance(v, list):
        return [sub.from_dict(x) for x in v if isinstance(x, dict)]
    return sub.from_dict(v) if isinstance(v, dict) else v


@dataclass
class Resource(Model):
    id: str = ""
    created_at: Optional[str] = None
    updated_at: Optional[str] = None
    version: int = 0


@dataclass
class QueueUsage(Model):
    allocated_worker_instances: int = 0
    running_jobs: int = 0
    pending_jobs: int = 0
    pending_worker_instances: int = 0


@dataclass
class Queue(Resource):
    name: str = ""
    description: Optional[str] = None
    plugin_id: Optional[str] = None
    maximum_allowed_worker_instances: Optional[int] = None
    resource_limits: Optional[Dict[str, Any]] = None
    storages: Optional[List[Dict[str, Any]]] = None
    environment_variables: Optional[Dict[str, str]] = None
    attributes: Optional[Dict[str, Any]] = None
    scheduling: Optional[Dict[str, Any]] = None
    access: Optional[Dict[str, Any]] = None
    built_in: bool = False
    usage: Optional[QueueUsage] = None


@dataclass
class Plugin(Resource):
    name: str = ""
    type: str = ""
    config: Dict[str, Any] = field(default_factory=dict)
    is_default: bool = False


@dataclass
class Application(Resource):
    """An application. ``version`` is its own version string (``"1.0"``, what
    jobs name as ``{"name", "version"}``); its revision, sent as the ETag, is
    ``resource_version``."""

    name: str = ""
    version: str = ""
    resource_version: int = 0
    description: Optional[str] = None
    image: Optional[str] = None
    command: Optional[List[str]] = None
    args: Optional[List[str]] = None
    environment_variables: Optional[Dict[str, str]] = None


@dataclass
class AppRuntimeConfig(Resource):
    queue_id: str = ""
    application_id: str = ""
    image: str = ""
    working_directory: str = ""
    command: Optional[List[str]] = None
    args: Optional[List[str]] = None
    environment_variables: Optional[Dict[str, str]] = None
    resource_limits: Optional[Dict[str, Any]] = None


@dataclass
class Deployment(Resource):
    name: str = ""
    application_id: str = ""
    queue_id: str = ""
    replicas: int = 0
    environment_variables: Optional[Dict[str, str]] = None
    status: Optional[Dict[str, Any]] = None


@dataclass
class Condition(Model):
    type: str = ""
    status: str = ""
    reason: Optional[str] = None
    message: Optional[str] = None
    last_transition_time: Optional[str] = None


@dataclass
class Instance(Model):
    role: str = ""
    index: int = 0
    status: str = ""
    exit_code: Optional[int] = None
    message: Optional[str] = None
    started_at: Optional[str] = None
    finished_at: Optional[str] = None


@dataclass
class Job(Resource):
    name: str = ""
    queue_id: str = ""
    queue_name: Optional[str] = None
    application: Dict[str, Any] = field(default_factory=dict)
    worker_instances: int = 0
    environment_variables: Optional[Dict[str, str]] = None
    # The job's own program, overriding the runtime's (None: the runtime's).
    command: Optional[List[str]] = None
    args: Optional[List[str]] = None
    labels: Optional[Dict[str, str]] = None
    priority: int = 0
    max_run_seconds: Optional[int] = None
    max_retries: int = 0
    retry_on: Optional[List[str]] = None
    # [{"job_id": "job-…", "condition": "succeeded" | "finished"}]
    depends_on: List[Dict[str, Any]] = field(default_factory=list)
    # Of a job array's job: the array and its 0-based index (RM_ARRAY_INDEX).
    array_id: Optional[str] = None
    array_index: Optional[int] = None
    attempt: int = 1
    attempts: List[Dict[str, Any]] = field(default_factory=list)
    status: str = ""
    cancel_requested: bool = False
    cleanup_requested: bool = False
    conditions: List[Condition] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    # A job read alone has instances (at most 1,000: instances_truncated
    # beyond); in lists, events and 202 answers it has instance_counts
    # ({"worker": {"running": 5, "succeeded": 3}, ...}) instead.
    instances: List[Instance] = field(default_factory=list)
    instances_truncated: bool = False
    instance_counts: Dict[str, Dict[str, int]] = field(default_factory=dict)
    # {"status", "requested_at", "started_at", "stopped_at", "stop_requested"}
    post_controller: Optional[Dict[str, Any]] = None
    submitted_at: Optional[str] = None
    admitted_at: Optional[str] = None
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    cleaned_at: Optional[str] = None
    owner: Optional[Dict[str, str]] = None
    # While pending: its place among the queue's waiting jobs, and when it is
    # expected to be admitted (None when unknown) on what basis.
    queue_position: Optional[int] = None
    estimated_start_at: Optional[str] = None
    estimate_basis: Optional[str] = None

    @property
    def final(self) -> bool:
        return self.status in FINAL_JOB_STATUSES

    def condition(self, type_: str) -> Optional[Condition]:
        return next((c for c in self.conditions if c.type == type_), None)


@dataclass
class JobArray(Resource):
    """A job array: ``count`` jobs of one body, at most ``max_parallel`` admitted at once."""

    name: str = ""
    queue_id: str = ""
    count: int = 0
    max_parallel: int = 0
    counts: Dict[str, int] = field(default_factory=dict)
    failed_indexes: List[int] = field(default_factory=list)
    cancel_requested: bool = False
    owner: Optional[Dict[str, str]] = None

    @property
    def ended(self) -> int:
        """How many of its jobs have ended (a deleted job is in no count)."""
        return sum(self.counts.get(s, 0) for s in FINAL_JOB_STATUSES)

    @property
    def active(self) -> int:
        """How many of its jobs have not ended yet."""
        return sum(n for s, n in self.counts.items() if s not in FINAL_JOB_STATUSES and isinstance(n, int))

    @property
    def final(self) -> bool:
        """Whether every job of it that still exists has ended, as the API
        decides it: all its jobs are made with the array, and ``counts`` covers
        only those that exist (a deleted job is in none), so an array with
        jobs deleted ends with ``ended`` below ``count``. Not final while the
        server has not said its counts."""
        if not self.counts and self.raw.get("counts") is None:
            return False
        return self.active == 0


@dataclass
class PendingJob(Model):
    """A waiting job as a queue's pending list shows it, in the scheduler's order."""

    id: str = ""
    name: str = ""
    queue_position: int = 0
    estimated_start_at: Optional[str] = None
    estimate_basis: str = ""
    status: str = ""
    reason: Optional[str] = None
    message: Optional[str] = None
    worker_instances: int = 0
    priority: int = 0
    submitted_at: Optional[str] = None


@dataclass
class QueuePermissions(Model):
    """What the caller may do on one queue: read its jobs, submit to it."""

    id: str = ""
    name: str = ""
    read: bool = False
    submit: bool = False


@dataclass
class Whoami(Model):
    """Who the client's token stands for, as the server sees it (``client.whoami()``)."""

    authenticated_by: str = ""  # oidc, job_token, or none (auth is off)
    subject: str = ""
    username: str = ""
    roles: List[str] = field(default_factory=list)
    groups: List[str] = field(default_factory=list)
    access: str = ""  # admin, user, viewer or none
    job_id: Optional[str] = None
    expires_at: Optional[str] = None
    queues: List[QueuePermissions] = field(default_factory=list)

    def may(self, queue: str) -> Optional[QueuePermissions]:
        """The permissions on the queue of that name or id; None if it is not listed."""
        return next((q for q in self.queues if queue in (q.name, q.id)), None)


@dataclass
class Artifact(Model):
    kind: str = ""
    path: str = ""
    size: int = 0
    sha256: str = ""
    sample_id: Optional[str] = None
    declaration: Optional[str] = None
    created_at: Optional[str] = None


@dataclass
class ScenarioExport(Resource):
    job_id: Optional[str] = None
    status: str = ""
    request: Dict[str, Any] = field(default_factory=dict)
    size: Optional[int] = None
    file_count: Optional[int] = None
    sha256: Optional[str] = None
    reason: Optional[str] = None
    queue_id: Optional[str] = None  # its job's queue
    ready_at: Optional[str] = None
    expires_at: Optional[str] = None  # when the export and its zip are deleted
    # Once ready: paths in the zip that differ only in case or in the Unicode
    # form of a letter (one replaces the other when unpacked on macOS, or on
    # Windows for case), then paths Windows cannot unpack as they are (aux.xosc).
    warnings: List[str] = field(default_factory=list)


@dataclass
class Event:
    """One message of the event stream: ``id`` resumes after it; ``data`` is the
    resource as the API returns it."""

    id: int
    type: str
    subject: str
    source: str
    time: str
    data: Dict[str, Any]
    cloudevent: Dict[str, Any] = field(repr=False, default_factory=dict)

    def job(self) -> Job:
        return Job.from_dict(self.data)


_NESTED = {
    ("Queue", "usage"): QueueUsage,
    ("Job", "conditions"): Condition,
    ("Job", "instances"): Instance,
    ("Whoami", "queues"): QueuePermissions,
}
