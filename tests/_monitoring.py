"""Helpers for the schedule and monitor tests: a settable clock, job submitters over real runners."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from seedcore.db.database import Database
from seedcore.jobs.store import JobStore
from seedcore.jobs.runner import JobRunner

# A sweep small enough to validate quickly; it is never run by these helpers.
TINY_TUNE = {"space_type": "conservative", "config_type": "conservative", "custom_tune_config": {"num_samples": 1},
             "experiment_name": "flywheel_tests"}


class Clock:
    """An injectable clock: `now()` returns what the test set."""

    def __init__(self, start: datetime):
        self.value = start

    def __call__(self) -> datetime:
        return self.value

    def advance(self, **delta) -> datetime:
        self.value += timedelta(**delta)
        return self.value


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def runner_submit(settings, db: Database):
    """`submit(request, trigger)` through a real (unstarted) JobRunner: validates and queues a job row."""
    runner = JobRunner(settings, db)

    def submit(request, trigger):
        return runner.submit(request, trigger=trigger)
    return submit


def jobs(db: Database) -> list[dict]:
    return JobStore(db).list(limit=500)["items"]


def race(*calls) -> list:
    """Run the calls at the same moment in threads; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list = []

    def run(i, call):
        barrier.wait()
        try:
            results[i] = call()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results
