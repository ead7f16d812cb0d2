"""The SeedcoreError family. Each class carries the HTTP status the API maps it to."""

from __future__ import annotations


class SeedcoreError(Exception):
    """Base of every error we raise on purpose; `field` names the input at fault, if any."""

    status_code = 500

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict:
        return {"status": "error", "error": self.message, "field": self.field}


class ValidationError(SeedcoreError):
    """The caller's input is invalid (bad space, bad config, bad features)."""

    status_code = 400


def invalid(exc, under: str | None = None, default: str = "body") -> ValidationError:
    """Our 400 for a pydantic ValidationError `exc`: its first problem, naming the field at fault (`a.b.0`,
    under `under` when the validated data sits there in the request)."""
    first = exc.errors(include_url=False)[0]
    field = ".".join(part for part in (under, ".".join(str(p) for p in first["loc"])) if part) or default
    return ValidationError(f"{field}: {first['msg']}", field=field)


class DataError(ValidationError):
    """The dataset cannot be used (missing column, one class, outside the data dir, empty)."""


class BudgetError(ValidationError):
    """A sweep asks for more trials or time than the caps allow."""


class AuthenticationError(SeedcoreError):
    status_code = 401


class PermissionDeniedError(SeedcoreError):
    status_code = 403


class NotFoundError(SeedcoreError):
    status_code = 404


class ConflictError(SeedcoreError):
    status_code = 409


class PayloadTooLargeError(SeedcoreError):
    status_code = 413


class UnsupportedMediaTypeError(SeedcoreError):
    """A body in a format we do not take (state-changing endpoints take JSON only)."""

    status_code = 415


class TooManyRequestsError(SeedcoreError):
    """A limit is reached for now; the caller should try again after `retry_after_s` (the 429's Retry-After)."""

    status_code = 429
    retry_after_s = 10


class HeavyRequestsBusyError(TooManyRequestsError):
    """Every SEEDCORE_MAX_HEAVY_REQUESTS slot is answering a large request; try again in a moment."""

    retry_after_s = 1


class TooManyWaitsError(TooManyRequestsError):
    """Every synchronous-wait slot is taken; the caller should submit and poll instead."""


class QueueFullError(TooManyRequestsError):
    """SEEDCORE_MAX_QUEUED_JOBS jobs already wait in the queue; nothing was queued."""

    retry_after_s = 30


class SweepBudgetError(TooManyRequestsError):
    """A monitor or schedule used up a budget of triggered sweeps for the last 24 hours; nothing was queued.

    `budget` says which: {"scope": "all" or "monitor", "used", "limit", "window_hours"}.
    """

    retry_after_s = 3600

    def __init__(self, message: str, budget: dict):
        super().__init__(message)
        self.budget = budget


class SweepFailedError(SeedcoreError):
    """No trial of a sweep produced a model; nothing was promoted."""

    status_code = 500


class SweepCancelledError(SeedcoreError):
    """The sweep was cancelled; its runs are KILLED and nothing was promoted."""

    status_code = 409


class NoModelLoadedError(SeedcoreError):
    """Serving has no production model yet."""

    status_code = 503


class RegistryUnavailableError(SeedcoreError):
    status_code = 503


class SchemaOutdatedError(SeedcoreError):
    """Our SQL schema is behind the code; `seedcore db upgrade` fixes it."""

    status_code = 500


class DatabaseUnavailableError(SeedcoreError):
    """Our database cannot be used now (lost, replaced or read-only): a 503, and nothing was changed."""

    status_code = 503


class RequestTimeoutError(SeedcoreError):
    """A client took longer than SEEDCORE_READ_HEADER_TIMEOUT_S / SEEDCORE_READ_BODY_TIMEOUT_S to send its request."""

    status_code = 408
