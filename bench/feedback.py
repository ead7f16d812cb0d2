"""Feedback ingestion and monitor detection delay.

1. Ingestion: 100,000 logged predictions (written by the background log writer), then their labels
   posted through the feedback service in batches of 1,000; labels/s. SQLite, one process.
2. Detection delay: a live-AUC monitor checked by the flywheel loop every `interval`; from the moment the
   feedback that fills its window is stored to the moment the monitor has fired (its job queued).
   Target: at most one interval.
"""

from __future__ import annotations

import time

from bench._report import Section, log, median
from bench._serving import promoted_store
from bench._workspace import Workspace

NAME = "feedback"
TITLE = "Feedback ingestion (labels/s) and monitor detection delay"
BATCH = 1000
TUNE = {"space_type": "conservative", "config_type": "conservative", "custom_tune_config": {"num_samples": 1},
        "experiment_name": "bench_retune"}


def run(ws: Workspace, small: bool = False, repeats: int | None = None) -> Section:
    from seedcore.db.database import Database

    rows = 10_000 if small else 100_000
    interval = 0.5 if small else 1.0
    repeats = repeats or (1 if small else 3)
    settings, version = promoted_store(ws, "feedback")
    db = Database(settings.database_url)
    try:
        write_rate, label_rate = _ingest(settings, db, version, rows)
        delays = [_detection_delay(settings, db, version, interval, r) for r in range(repeats)]
    finally:
        db.dispose()
    setup = (f"SQLite (WAL) in the bench's data dir, one process. {rows:,} predictions of 10 features logged through "
             f"the prediction log (background writer, batched inserts), then their labels sent to the feedback service "
             f"in batches of {BATCH:,} (each batch: one SELECT of the ids, one executemany UPDATE). Detection: a live_auc "
             f"monitor (threshold 0.7, min_samples 200, window 200 rows) checked by the flywheel loop every {interval:g} s;"
             " 200 wrongly labelled outcomes stored at t0; delay = t0 to the monitor's job being queued.")
    section = Section(NAME, TITLE, setup)
    section.add("feedback ingestion", label_rate, unit="labels/s")
    section.add("prediction log writes", write_rate, unit="rows/s", note="background writer, batches of 1,000")
    section.add("detection delay after the window fills", median(delays), interval, "one monitor interval", "<= 1", "s")
    section.notes.append(f"detection delays: {', '.join(f'{d:.3f} s' for d in delays)} (interval {interval:g} s)")
    return section


def _ingest(settings, db, version: int, rows: int) -> tuple[float, float]:
    import numpy as np

    from seedcore.monitoring.feedback import record_feedback
    from seedcore.monitoring.predlog import PredictionLogger

    logger = PredictionLogger(settings.replace(predlog_queue_rows=rows + BATCH), lambda: db)
    x = np.random.default_rng(0).normal(size=(BATCH, 10)).round(6).tolist()
    started = time.perf_counter()
    ids = [i for _ in range(rows // BATCH) for i in logger.log(settings.model_name, version, x, [0.5] * BATCH)]
    if not logger.flush(600) or logger.status()["dropped"]:
        raise RuntimeError(f"the prediction log lost rows: {logger.status()}")
    write_rate = rows / (time.perf_counter() - started)
    labels = np.random.default_rng(1).integers(0, 2, size=rows).tolist()
    started = time.perf_counter()
    for start in range(0, rows, BATCH):
        result = record_feedback(db, settings, ids[start:start + BATCH], labels[start:start + BATCH])
        if result["accepted"] != BATCH:
            raise RuntimeError(f"feedback batch at {start}: {result['accepted']} accepted")
    label_rate = rows / (time.perf_counter() - started)
    log(f"{NAME}: {write_rate:,.0f} rows/s logged, {label_rate:,.0f} labels/s ingested")
    _clear_labels(db)
    return write_rate, label_rate


def _clear_labels(db) -> None:
    from sqlalchemy import update

    from seedcore.db.tables_flywheel import PredictionRecord

    with db.session() as session:
        session.execute(update(PredictionRecord).values(label=None, labelled_at=None))


def _detection_delay(settings, db, version: int, interval: float, attempt: int) -> float:
    from seedcore.monitoring.feedback import record_feedback
    from seedcore.monitoring.loops import start_loop
    from seedcore.monitoring.monitors import MonitorBody, MonitorService
    from seedcore.monitoring.predlog import PredictionLogger
    from seedcore.monitoring.scenario import drifted_rows
    from seedcore.promotion.registry import Registry
    from seedcore.jobs.runner import JobRunner
    from seedcore.monitoring.schedules import ScheduleService

    _clear_labels(db)
    runner = JobRunner(settings, db)  # queues only: the benchmark times detection, not the sweep

    def submit(request, trigger):
        return runner.submit(request, trigger=trigger)

    monitors = MonitorService(settings, db, submit)
    monitor = monitors.create(MonitorBody(name=f"bench-{attempt}", metric="live_auc", threshold=0.7, min_samples=200,
                                          window={"rows": 200}, tune=TUNE))
    rows, labels = drifted_rows(200, seed=attempt)
    booster = Registry(settings).load_booster(Registry(settings).production_version())
    logger = PredictionLogger(settings, lambda: db)
    ids = logger.log(settings.model_name, version, rows, booster.inplace_predict(rows).tolist())
    logger.flush(60)
    stop = start_loop(ScheduleService(settings, db, submit), monitors, interval)
    try:
        time.sleep(interval * 0.37)  # land the window's filling at an arbitrary point of the loop's period
        record_feedback(db, settings, ids, labels)
        filled = time.monotonic()
        while monitors.get(monitor["id"])["last_job_id"] is None:
            if time.monotonic() - filled > 30 * interval:
                raise RuntimeError(f"the monitor never fired: {monitors.get(monitor['id'])}")
            time.sleep(0.005)
        delay = time.monotonic() - filled
    finally:
        stop()
    from seedcore.monitoring.monitors import MonitorPatch

    monitors.update(monitor["id"], MonitorPatch(enabled=False))
    log(f"{NAME}: monitor fired {delay:.3f} s after its window filled (interval {interval:g} s)")
    return delay
