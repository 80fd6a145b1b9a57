"""Python client of the Resource Manager for simulation jobs.

>>> import avxrm
>>> client = avxrm.Client("http://127.0.0.1:8080")
>>> job = client.jobs.submit(queue_id="Default", application={"id": "app-…"}, worker_instances=8)
>>> job = client.jobs.wait(job.id)
"""

from .auth import TokenProvider
from .client import BASE_PATH, DEFAULT_SERVER, AsyncClient, Client, verify_zip
from .errors import (ApiError, AuthError, ConflictError, FieldError, MalformedEventError, NotAPIError, NotFoundError,
                     PreconditionFailedError, Problem, RequestTimeoutError, ServerError, UnreachableError,
                     ValidationError)
from .models import (AppRuntimeConfig, Application, Artifact, Condition, Deployment, Event, Instance, Job, JobArray,
                     PendingJob, Plugin, Queue, QueuePermissions, QueueUsage, ScenarioExport, Whoami)

__all__ = [
    "Client", "AsyncClient", "TokenProvider", "BASE_PATH", "DEFAULT_SERVER", "verify_zip",
    "ApiError", "AuthError", "ConflictError", "FieldError", "MalformedEventError", "NotAPIError", "NotFoundError",
    "PreconditionFailedError",
    "Problem", "RequestTimeoutError", "ServerError", "UnreachableError", "ValidationError",
    "AppRuntimeConfig", "Application", "Artifact", "Condition", "Deployment", "Event", "Instance", "Job", "JobArray",
    "PendingJob", "Plugin", "Queue", "QueuePermissions", "QueueUsage", "ScenarioExport", "Whoami",
]
