"""The MLflow trial logger's background threads: the tracking-store writer and the progress hand-over."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable

log = logging.getLogger(__name__)
RETRY_FOR_S = 300.0  # how long one write is retried while the tracking store does not answer
_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 5.0)
# MLflow's answers that may pass: the store failing or busy, or no answer at all (MLflow's REST client gives
# up on a server that is down with INTERNAL_ERROR). A refusal (bad value, no such run) would only repeat.
_TRANSIENT_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED"}


class Writer:
    """One background thread doing the tracking-store writes in order, off Tune's control loop.

    A write the store cannot take now (the tracking server down or unreachable) is tried again, with a
    growing pause, for up to `retry_for_s`; the writes behind it wait, so they still land in order.
    """

    def __init__(self, retry_for_s: float = RETRY_FOR_S):
        self.retry_for_s = retry_for_s
        self.retries = 0  # writes tried again, in all
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="seedcore-mlflow-writer", daemon=True)
        self._thread.start()
        self.errors: list[str] = []

    def submit(self, fn: Callable, *args) -> None:
        self._queue.put((fn, args))

    def drain(self) -> None:
        """Wait until every submitted write is done."""
        self._queue.join()

    def close(self) -> None:
        self.drain()
        self._queue.put(None)
        self._thread.join(5)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._until_done(*item)
            except Exception as exc:  # a tracking failure must not kill the sweep; it is reported
                log.exception("MLflow write failed")
                self.errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                self._queue.task_done()

    def _until_done(self, fn: Callable, args: tuple) -> None:
        deadline = time.monotonic() + self.retry_for_s
        for attempt in range(1_000_000):  # bounded by the deadline
            try:
                fn(*args)
            except Exception as exc:
                if not transient(exc) or time.monotonic() >= deadline:
                    raise
                if attempt == 0:
                    log.warning("MLflow write failed (%s); retrying for up to %.0f s", type(exc).__name__,
                                self.retry_for_s)
                self.retries += 1
                time.sleep(_BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)])
            else:
                if attempt:
                    log.warning("MLflow write went through after %d retries", attempt)
                return


def transient(exc: Exception) -> bool:
    """Whether a failed tracking-store call may succeed when tried again."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return exc.error_code in _TRANSIENT_CODES
    return isinstance(exc, (OSError, TimeoutError)) or type(exc).__module__.startswith(("requests", "urllib3"))


class Newest:
    """One background thread handing its consumer the newest value put (unsent older ones are dropped), so
    a slow consumer (progress rows in SQL) never holds up Tune's control loop nor falls behind it."""

    def __init__(self, consume: Callable[[Any], None]):
        self._consume = consume
        self._ready = threading.Condition()
        self._value: Any = None
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="seedcore-progress", daemon=True)
        self._thread.start()

    def put(self, value: Any) -> None:
        with self._ready:
            self._value = value
            self._ready.notify()

    def close(self) -> None:
        """Hand over what is pending, then stop."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(5)

    def _loop(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._value is not None or self._closed)
                value, self._value = self._value, None
            if value is None:
                return
            self._consume(value)
