"""Braid: serve composed ML models on Celery.

Declare services with :func:`service` and :func:`api`, compose them with :func:`pipeline`,
:func:`step` and :func:`each`; run everything with ``braid up``; follow jobs with
:class:`Client`, which returns them as :class:`JobView` objects.
"""

from app import _models as models
from app._client import AsyncClient, AsyncJob, Client, Job
from app._errors import (
    ApiUnreachable,
    BraidError,
    BrokerUnavailable,
    DeclarationError,
    IdempotencyConflict,
    InvalidInput,
    JobConflict,
    JobFailed,
    JobNotFound,
    ModelNotFound,
    NotAcceptable,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    PipelineNotFound,
    ServiceNotFound,
    Unauthorized,
)
from app._jobs import JobState
from app._pipeline import Value, each, pipeline, step, stream
from app._runtime import device
from app._service import Batch, Resources, Retry, api, service
from app._settings import Settings, get_settings
from app._types import Array
from app._views import Chunk, JobAccepted, JobError, JobList, JobView, Progress, StepState, StepView

__all__ = [
    "ApiUnreachable",
    "Array",
    "AsyncClient",
    "AsyncJob",
    "Batch",
    "BraidError",
    "BrokerUnavailable",
    "Chunk",
    "Client",
    "DeclarationError",
    "IdempotencyConflict",
    "InvalidInput",
    "Job",
    "JobAccepted",
    "JobConflict",
    "JobError",
    "JobFailed",
    "JobList",
    "JobNotFound",
    "JobState",
    "JobView",
    "ModelNotFound",
    "NotAcceptable",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "PipelineNotFound",
    "Progress",
    "Resources",
    "Retry",
    "ServiceNotFound",
    "Settings",
    "StepState",
    "StepView",
    "Unauthorized",
    "Value",
    "api",
    "device",
    "each",
    "get_settings",
    "models",
    "pipeline",
    "service",
    "step",
    "stream",
]
