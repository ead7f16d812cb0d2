"""Benchmark 3, predict latency and throughput: our `/xgboost/predict` vs `mlflow models serve`.

Both serve the same registered version (alias `production`) from the same store with the same number
of workers, on loopback, warm. The load client runs in a separate process (spawned once, reused):
1 client, then 8 concurrent clients (8 threads, a kept-alive connection each). Windows alternate
between the servers. With more than one worker, `mlflow models serve -w 1` is measured as well (see
NAGLE_ISSUE). The floor is `inplace_predict` of one row in a process of its own.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

from bench import _load
from bench._report import Section, log, median
from bench._serving import (ROW, mlflow_body, mlflow_ready, ours_body, ours_ready, promoted_store, request,
                            start_mlflow, start_ours, wait_until)
from bench._workspace import Workspace

NAME = "predict"
TITLE = "3. Predict latency and throughput (one row, loopback, warm, same version)"
PEER = "mlflow models serve"
PATHS = {"ours": "/xgboost/predict", "mlflow": "/invocations", "mlflow1": "/invocations"}
# uvicorn's --workers N path binds the socket itself with proto 0, so asyncio never sets TCP_NODELAY on
# accepted connections and each keep-alive response waits for the client's delayed ACK (~40 ms on
# Linux): Kludex/uvicorn#3149. `-w 1` does not have it, so MLflow at 1 worker is measured too.
NAGLE_ISSUE = "https://github.com/Kludex/uvicorn/issues/3149"


def run(ws: Workspace, small: bool = False, repeats: int | None = None) -> Section:
    workers = 2
    seconds, warmup = (0.5, 0.2) if small else (5.0, 1.0)
    repeats = repeats or (1 if small else 3)
    settings, version = promoted_store(ws, "predict")
    logs = ws.new_dir("predict-logs")
    servers = {"ours": start_ours(settings, workers, logs), "mlflow": start_mlflow(settings, workers, logs)}
    if workers > 1:
        servers["mlflow1"] = start_mlflow(settings, 1, logs)
    try:
        wait_until(servers["ours"], lambda: ours_ready(servers["ours"], version))
        for name in servers.keys() - {"ours"}:
            wait_until(servers[name], lambda: mlflow_ready(servers[name]))
        agreement = _same_answer(servers)
        body = {"ours": json.dumps(ours_body(ROW)).encode(), "mlflow": json.dumps(mlflow_body(ROW)).encode()}
        bodies = {name: body["ours" if name == "ours" else "mlflow"] for name in servers}
        raw = (settings.blessed_dir / "model.xgb").read_bytes()
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as client:
            stats = _windows(client, servers, bodies, seconds, warmup, repeats)
            floor = client.submit(_load.floor, raw, ROW, seconds, warmup).result()
    finally:
        for server in servers.values():
            server.stop()
    return _section(stats, floor, agreement, workers, seconds, repeats)


def _same_answer(servers) -> float:
    """Every server must return the same probability for the same row (else the comparison is void)."""
    status, ours = request(servers["ours"].port, "POST", PATHS["ours"], ours_body(ROW))
    if status != 200:
        raise RuntimeError(f"ours: predict answered {status}: {ours}")
    worst = 0.0
    for name in servers.keys() - {"ours"}:
        status, theirs = request(servers[name].port, "POST", PATHS[name], mlflow_body(ROW))
        if status != 200:
            raise RuntimeError(f"{name}: predict answered {status}: {theirs}")
        diff = abs(float(ours["prediction"]) - float(theirs["predictions"][0]))
        if not diff < 1e-5:
            raise RuntimeError(f"the servers disagree: ours {ours['prediction']}, {name} {theirs['predictions'][0]}")
        worst = max(worst, diff)
    return worst


def _windows(client, servers, bodies, seconds, warmup, repeats) -> dict:
    stats = {(name, clients): [] for name in servers for clients in (1, 8)}
    names = list(servers)
    for r in range(repeats):
        for clients in (1, 8):
            for name in (names if r % 2 == 0 else names[::-1]):
                result = client.submit(_load.measure, servers[name].port, PATHS[name], bodies[name], clients,
                                       seconds, warmup).result()
                if result["errors"] or not result["requests"]:
                    raise RuntimeError(f"{name}, {clients} clients: {result}")
                stats[(name, clients)].append(result)
                log(f"{NAME}: repeat {r + 1}/{repeats} {name} {clients} client(s): p50 {result['p50_ms']:.2f} ms, "
                    f"p99 {result['p99_ms']:.2f} ms, {result['throughput']:.0f} req/s")
    return stats


def _section(stats, floor, agreement, workers, seconds, repeats) -> Section:
    def med(name, clients, key):
        return median(s[key] for s in stats[(name, clients)])

    setup = (f"{workers} worker process(es) each (`seedcore serve --workers {workers}`: gunicorn's asyncio worker "
             f"reading each request whole, then one of 8 threads a worker; `mlflow models serve -w {workers} "
             "--env-manager local`: uvicorn), one promoted version (200 trees, depth 6, 10 features) loaded from the "
             "same MLflow registry. Ours gets "
             "`{\"features\": [10 floats]}`, MLflow `{\"dataframe_split\": {\"columns\": [...], \"data\": [[10 floats]]}}`"
             f"; both answers checked equal first (|Δ| = {agreement:.1g}). Client: a separate spawned process, "
             f"`http.client` with keep-alive; {seconds:g} s windows after a warm-up, alternating servers; all servers run "
             "throughout, idle unless measured.")
    section = Section(NAME, TITLE, setup)
    section.add("single-row p50, 1 client", med("ours", 1, "p50_ms"), med("mlflow", 1, "p50_ms"), PEER, "<= 0.5", "ms")
    section.add("single-row p99, 1 client", med("ours", 1, "p99_ms"), med("mlflow", 1, "p99_ms"), PEER, unit="ms")
    section.add("throughput, 1 client", med("ours", 1, "throughput"), med("mlflow", 1, "throughput"), PEER,
                unit="req/s")
    section.add("throughput, 8 clients", med("ours", 8, "throughput"), med("mlflow", 8, "throughput"), PEER,
                ">= 2", "req/s")
    section.add("p50, 8 clients", med("ours", 8, "p50_ms"), med("mlflow", 8, "p50_ms"), PEER, unit="ms")
    section.add("p99, 8 clients", med("ours", 8, "p99_ms"), med("mlflow", 8, "p99_ms"), PEER, unit="ms")
    if ("mlflow1", 1) in stats:
        best = f"{PEER} -w 1"
        section.add("single-row p50, 1 client", med("ours", 1, "p50_ms"), med("mlflow1", 1, "p50_ms"), best,
                    "<= 0.5", "ms", note="MLflow at 1 worker: no Nagle stall")
        section.add("throughput, 8 clients", med("ours", 8, "throughput"), med("mlflow1", 8, "throughput"), best,
                    ">= 2", "req/s", note="MLflow at 1 worker")
        section.add("p99, 8 clients", med("ours", 8, "p99_ms"), med("mlflow1", 8, "p99_ms"), best, unit="ms",
                    note="MLflow at 1 worker")
        section.notes.append(f"`mlflow models serve -w {workers}` runs uvicorn's multi-worker path, which leaves "
                             "Nagle's algorithm on for keep-alive connections (the listening socket is bound with "
                             f"proto 0, so asyncio never sets TCP_NODELAY: {NAGLE_ISSUE}); every response then waits "
                             "for the client's delayed ACK, about 40 ms on Linux. That is what a user of "
                             f"`-w {workers}` gets today, so the rows without a note compare at the same worker "
                             "count as the issue asks; the rows marked 'MLflow at 1 worker' compare with MLflow "
                             "where it has no stall.")
    section.add("single-row p50 vs the floor", med("ours", 1, "p50_ms"), floor["p50_ms"],
                "in-process inplace_predict", unit="ms")
    section.notes.append(f"floor: in-process `inplace_predict` of the same row, nthread=1: p50 {floor['p50_ms']:.3f} ms, "
                         f"p99 {floor['p99_ms']:.3f} ms, {floor['throughput']:,.0f} calls/s on one thread")
    section.notes.append(f"medians of {repeats} window(s) of {seconds:g} s per server and client count; "
                         f"{os.cpu_count()} CPUs shared by the servers and the client")
    if any(math.isnan(r.ours or math.nan) for r in section.rows):
        raise RuntimeError("a measurement came back empty")
    return section
