"""Braid's exception tree.

Every error a user can meet derives from :class:`BraidError` and carries a stable ``code``,
the HTTP ``status`` the API answers with, and a message that says how to fix it::

    BraidError
    ├── DeclarationError      a service or pipeline declaration is wrong (raised at import)
    ├── InvalidInput          a request's payload does not match the API's types (422)
    ├── PayloadTooLarge       an upload is over a configured limit (413)
    ├── NotFound              (404)
    │   ├── ModelNotFound     a model tag is not in the model store
    │   ├── ServiceNotFound
    │   ├── PipelineNotFound
    │   └── JobNotFound
    ├── JobConflict           the job is in a state that forbids the action (409)
    ├── IdempotencyConflict   an Idempotency-Key came again with another request (409)
    ├── NotAcceptable         the result cannot be given in the asked format (406)
    ├── Unauthorized          missing or wrong API key (401)
    ├── Overloaded            a queue the job needs is full; retry after a while (429)
    ├── BrokerUnavailable     Redis cannot be reached (503)
    ├── ApiUnreachable        the client cannot connect to the Braid API (503)
    └── JobFailed             the client waited for a job that failed or was cancelled
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ApiUnreachable",
    "BraidError",
    "BrokerUnavailable",
    "DeclarationError",
    "IdempotencyConflict",
    "InvalidInput",
    "JobConflict",
    "JobFailed",
    "JobNotFound",
    "ModelNotFound",
    "NotAcceptable",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "PipelineNotFound",
    "ServiceNotFound",
    "Unauthorized",
]


class BraidError(Exception):
    """Base of every Braid error."""

    code: ClassVar[str] = "braid_error"
    status: ClassVar[int] = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class DeclarationError(BraidError, TypeError):
    """A service or pipeline is declared wrongly; raised when its module is imported."""

    code = "declaration_error"


class InvalidInput(BraidError, ValueError):
    """The request does not match the API's declared types."""

    code = "invalid_input"
    status = 422


class PayloadTooLarge(BraidError, ValueError):
    """An upload or value exceeds a configured limit."""

    code = "payload_too_large"
    status = 413


class NotFound(BraidError, LookupError):
    code = "not_found"
    status = 404


class ModelNotFound(NotFound):
    code = "model_not_found"


class ServiceNotFound(NotFound):
    code = "service_not_found"


class PipelineNotFound(NotFound):
    code = "pipeline_not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


class JobConflict(BraidError):
    code = "job_conflict"
    status = 409


class IdempotencyConflict(BraidError):
    """A submission's ``Idempotency-Key`` was used before with another pipeline or body."""

    code = "idempotency_conflict"
    status = 409


class NotAcceptable(BraidError):
    code = "not_acceptable"
    status = 406


class Overloaded(BraidError):
    """A service the job needs has ``max_queued`` messages waiting: nothing was queued;
    ``retry_after_s`` estimates when there is room (from the service's recent throughput)."""

    code = "overloaded"
    status = 429

    def __init__(self, message: str, retry_after_s: int, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after_s = retry_after_s


class Unauthorized(BraidError):
    code = "unauthorized"
    status = 401


class BrokerUnavailable(BraidError, ConnectionError):
    """Redis cannot be reached; nothing was published."""

    code = "broker_unavailable"
    status = 503


class ApiUnreachable(BraidError, ConnectionError):
    """Raised by the client (and so by ``braid submit`` / ``braid jobs``) when no connection
    to the Braid API could be made; nothing was sent."""

    code = "api_unreachable"
    status = 503


class JobFailed(BraidError):
    """Raised by the client's ``result()`` for a job that ended ``failed`` or ``cancelled``;
    ``error`` holds the failed step, the error type and its message."""

    code = "job_failed"

    def __init__(self, message: str, state: str, error: dict[str, Any]) -> None:
        super().__init__(message)
        self.state = state
        self.error = error


def error_for(code: str) -> type[BraidError]:
    """The exception class of an API problem ``code``."""
    classes = [BraidError]
    while classes:
        cls = classes.pop()
        if cls.code == code:
            return cls
        classes.extend(cls.__subclasses__())
    return BraidError
