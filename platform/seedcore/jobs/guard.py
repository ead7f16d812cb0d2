"""Steps a job runner must survive: each is run guarded (its error noted, None returned) or retried with
backoff, and the newest error is kept for `/health` (`JobRunner.status`)."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from seedcore.db.base import iso_utc, utcnow
from seedcore.errors import ConflictError, SeedcoreError

log = logging.getLogger("seedcore.jobs.runner")

BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # after the 1st, 2nd, ... consecutive failure of a step
RECORD_ATTEMPTS = 6


def backoff(failures: int) -> float:
    """Seconds to pause after `failures` consecutive failures of one step."""
    return BACKOFF_S[min(max(failures, 1), len(BACKOFF_S)) - 1]


class StepGuard:
    """Runs a runner's steps so that none of them ends it; `stop` cuts a retry's pauses short."""

    def __init__(self, stop: threading.Event):
        self._stop = stop
        self._lock = threading.Lock()
        self._last_error: tuple[str, str] | None = None

    @property
    def last_error(self) -> tuple[str, str] | None:
        """(what failed and why, when) of the newest error, or None."""
        with self._lock:
            return self._last_error

    def retry(self, what: str, step: Callable, *args, **kwargs) -> None:
        """Run `step` until it succeeds, with backoff; a ConflictError (the row moved on) ends it."""
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                step(*args, **kwargs)
                return
            except ConflictError as exc:
                log.info("%s: %s", what, exc.message)
                return
            except Exception as exc:
                self.note(what, exc)
                if attempt == RECORD_ATTEMPTS or self._stop.wait(backoff(attempt)):
                    return

    def guarded(self, what: str, step: Callable, *args) -> Any:
        """`step(*args)`, or None after noting its error: a helper step must never end the runner."""
        try:
            return step(*args)
        except Exception as exc:
            self.note(what, exc)
            return None

    def note(self, what: str, exc: Exception) -> None:
        """Log `exc` and keep it as the newest error."""
        message = exc.message if isinstance(exc, SeedcoreError) else f"{type(exc).__name__}: {exc}"
        log.error("job runner could not %s: %s", what, message)
        with self._lock:
            self._last_error = (f"{what}: {message}"[:500], iso_utc(utcnow()))
