"""Prediction logging's cost: `/xgboost/predict` p50 and throughput with the prediction log on vs off.

Two `seedcore serve` servers over the same store and migrated SQLite database, identical but for
SEEDCORE_PREDLOG_SAMPLE_RATE (1.0: every row written by the background writer; 0.0: ids still issued,
nothing written). Windows alternate between them; the client is a separate spawned process.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor

from bench import _load
from bench._report import Section, log, median
from bench._ports import free_port
from bench._serving import ROW, _base_env, _spawn, ours_body, ours_ready, promoted_store, wait_until
from bench._workspace import Workspace

NAME = "predlog"
TITLE = "Prediction logging: predict p50 and throughput, log on vs off (one row, loopback, warm)"
PATH = "/xgboost/predict"


def _start(settings, workers: int, sample_rate: float, log_dir):
    port = free_port()
    env = {**_base_env(), "SEEDCORE_DATA_DIR": str(settings.data_dir), "SEEDCORE_MLRUNS_DIR": str(settings.mlruns_dir),
           "SEEDCORE_TRACKING_URI": settings.tracking_uri, "SEEDCORE_HOST": "127.0.0.1", "SEEDCORE_PORT": str(port),
           "SEEDCORE_PREDLOG_SAMPLE_RATE": str(sample_rate)}
    name = "log-on" if sample_rate else "log-off"
    return _spawn(name, [sys.executable, "-m", "seedcore.cli", "serve", "--workers", str(workers)], env, port, log_dir)


def run(ws: Workspace, small: bool = False, repeats: int | None = None) -> Section:
    from seedcore.db.migrations import upgrade

    workers = 2
    seconds, warmup = (0.5, 0.2) if small else (5.0, 1.0)
    repeats = repeats or (1 if small else 3)
    settings, version = promoted_store(ws, "predlog")
    upgrade(settings.database_url)
    logs = ws.new_dir("predlog-logs")
    servers = {"on": _start(settings, workers, 1.0, logs), "off": _start(settings, workers, 0.0, logs)}
    body = json.dumps(ours_body(ROW)).encode()
    try:
        for server in servers.values():
            wait_until(server, lambda s=server: ours_ready(s, version))
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as client:
            stats = _windows(client, servers, body, seconds, warmup, repeats)
    finally:
        for server in servers.values():
            server.stop()
    section = _section(stats, _logged_rows(settings), workers, seconds, repeats)
    section.add("request-path cost of logging one row", *_inline_cost(settings), "a one-row inplace_predict",
                unit="µs", note="in-process: ids, sampling, queueing; the write is off the request path")
    return section


def _inline_cost(settings, calls: int = 20_000) -> tuple[float, float]:
    """Median µs of `PredictionLogger.log` for one row vs a one-row `inplace_predict` of the served model."""
    import time

    import numpy as np

    from seedcore.db.database import Database
    from seedcore.monitoring.predlog import PredictionLogger
    from seedcore.serving.model import prepare_booster
    from seedcore.promotion.registry import Registry

    registry = Registry(settings)
    booster = prepare_booster(registry.load_booster(registry.production_version()))
    x = np.array([ROW], dtype=np.float32)
    db = Database(settings.database_url)
    logger = PredictionLogger(settings.replace(predlog_queue_rows=calls + 100), lambda: db)
    timings = {"log": [], "predict": []}
    for _ in range(calls):
        started = time.perf_counter()
        logger.log(settings.model_name, 1, x.tolist(), [0.5])
        timings["log"].append(time.perf_counter() - started)
        started = time.perf_counter()
        booster.inplace_predict(x, validate_features=False)
        timings["predict"].append(time.perf_counter() - started)
    logger.flush(120)
    logger.stop()
    return median(timings["log"]) * 1e6, median(timings["predict"]) * 1e6


def _windows(client, servers, body, seconds, warmup, repeats) -> dict:
    stats = {(name, clients): [] for name in servers for clients in (1, 8)}
    for r in range(repeats):
        for clients in (1, 8):
            for name in (["on", "off"] if r % 2 == 0 else ["off", "on"]):
                result = client.submit(_load.measure, servers[name].port, PATH, body, clients, seconds, warmup).result()
                if result["errors"] or not result["requests"]:
                    raise RuntimeError(f"log {name}, {clients} clients: {result}")
                stats[(name, clients)].append(result)
                log(f"{NAME}: repeat {r + 1}/{repeats} log {name} {clients} client(s): p50 {result['p50_ms']:.2f} ms,"
                    f" {result['throughput']:.0f} req/s")
    return stats


def _logged_rows(settings) -> int:
    from seedcore.db.database import Database
    from seedcore.monitoring.predlog import PredictionLogger

    db = Database(settings.database_url)
    try:
        return PredictionLogger(settings, lambda: db).count()
    finally:
        db.dispose()


def _section(stats, logged: int, workers: int, seconds: float, repeats: int) -> Section:
    def med(name, clients, key):
        return median(s[key] for s in stats[(name, clients)])

    setup = (f"`seedcore serve --workers {workers}` twice over one promoted version (200 trees, depth 6) and one "
             "migrated SQLite database: SEEDCORE_PREDLOG_SAMPLE_RATE=1 (every row queued and written in batches by a "
             "background thread) vs 0 (ids issued, nothing written). `{\"features\": [10 floats]}`, keep-alive "
             f"client in a spawned process, {seconds:g} s windows after warm-up, alternating.")
    section = Section(NAME, TITLE, setup)
    peer = "same server, log off"
    section.add("p50, 1 client", med("on", 1, "p50_ms"), med("off", 1, "p50_ms"), peer, "<= 1.1", "ms")
    section.add("throughput, 1 client", med("on", 1, "throughput"), med("off", 1, "throughput"), peer, ">= 0.9",
                "req/s")
    section.add("p50, 8 clients", med("on", 8, "p50_ms"), med("off", 8, "p50_ms"), peer, "<= 1.1", "ms")
    section.add("throughput, 8 clients", med("on", 8, "throughput"), med("off", 8, "throughput"), peer, ">= 0.9",
                "req/s")
    answered = sum(s["requests"] for s in stats[("on", 1)] + stats[("on", 8)])
    section.notes.append(f"rows in the prediction log after the run: {logged:,} (the log-on server answered "
                         f"{answered:,} measured requests plus warm-up ones; none were dropped if the two agree)")
    section.notes.append(f"medians of {repeats} window(s) per setting; {os.cpu_count()} CPUs shared by both servers "
                         "and the client")
    return section
