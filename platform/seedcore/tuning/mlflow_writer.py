"""The MLflow trial logger's background threads: the tracking-store writer and the progress hand-over."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)


class Writer:
    """One background thread doing the tracking-store writes in order, off Tune's control loop."""

    def __init__(self):
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
                fn, args = item
                fn(*args)
            except Exception as exc:  # a tracking hiccup must not kill the sweep; it is reported
                log.exception("MLflow write failed")
                self.errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                self._queue.task_done()


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
