"""Tuner.fit, answered as soon as a sweep's last trial has ended.

Tune stops its trial actors after that: a spare one it started for a trial that then reused another actor
comes up (seconds on a busy machine) only to be stopped, and Tune waits for it. The sweep's answer needs
none of this, so fit runs in a thread of its own and the sweep goes on with the trials' results while Tune
ends in the background.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from ray import tune

log = logging.getLogger(__name__)


class TrialsOver(tune.Callback):
    """Keeps the results of the sweep's `total` trials (as many as its search algorithm runs) the moment the
    last one ends, when every one ended cleanly (an errored trial's error reaches its results only once Tune
    has ended: then fit is waited for)."""

    def __init__(self, total: int):
        self.total = total
        self.results: Results | None = None
        self.event = threading.Event()  # set with the results, or when fit ended first

    def __getstate__(self):  # Tune pickles its callbacks into the experiment state
        return {"total": self.total}

    def __setstate__(self, state):
        self.__init__(state["total"])

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        if total_num_samples:  # what the search algorithm will run in all (a grid multiplies num_samples)
            self.total = total_num_samples

    def on_step_end(self, iteration, trials, **info):
        if self.results is None and len(trials) >= self.total and all(t.status == t.TERMINATED for t in trials):
            self.results = Results(trials)
            self.event.set()


class Results(list):
    """A ray.tune.Result per trial, as ResultGrid makes them of a finished trial, and the experiment's path."""

    def __init__(self, trials):
        super().__init__(tune.Result(metrics=t.last_result.copy(), checkpoint=t.checkpoint, error=None, path=t.path,
                                     _storage_filesystem=t.storage.storage_filesystem) for t in trials)
        self.experiment_path = trials[0].remote_experiment_path


def fit(tuner: tune.Tuner, over: TrialsOver, cancel_event: threading.Event, on_end: Callable[[], None]):
    """`tuner.fit()`'s ResultGrid, or the trials' `Results` as soon as `over` has them (Tune then ends in the
    background); `on_end()` once Tune has ended. Ctrl-C cancels the trials and waits for Tune to end."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["grid"] = tuner.fit()
        except BaseException as exc:  # handed to the sweep, unless it went on without Tune
            outcome["error"] = exc
            if over.results is not None:
                log.warning("Ray Tune failed while ending after the sweep's trials: %s", exc)
        finally:
            try:
                on_end()
            finally:
                over.event.set()

    thread = threading.Thread(target=run, name="seedcore-tune-fit", daemon=True)
    thread.start()
    try:
        over.event.wait()
    except BaseException:  # Ctrl-C: the trials stop (their runs KILLED) and Tune ends before the sweep does
        cancel_event.set()
        thread.join()
        raise
    if over.results is not None:
        return over.results
    if "error" in outcome:
        raise outcome["error"]
    return outcome["grid"]
