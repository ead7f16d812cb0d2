"""Benchmark 4, batch predict: 1,000,000 rows × 10 features from Parquet into a Parquet of predictions.

Ours: `POST /xgboost/batch_predict` against `seedcore serve --workers 1` (the endpoint streams the file
chunk by chunk through the served model); timed from request to response. Peer: one fresh Python
process that reads the file with pyarrow, calls `inplace_predict` once and writes the result with
`pq.write_table` (same output columns), with the model loaded before its timer. Peak RSS of both is
sampled from outside with psutil every 5 ms (ours: the worker that served the request). Also timed:
our `predict_table` in-process (what the endpoint calls), to separate the HTTP layer from the work.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import psutil

from bench._batch_peer import peer_process
from bench._report import Section, log, median
from bench._serving import RssSampler, ours_ready, promoted_store, request, start_ours, wait_until
from bench._workspace import Workspace
from seedcore.serving.batch import predict_table
from seedcore.datasets import BUILTIN_FEATURES
from seedcore.serving.model import served_from_blessed_file

NAME = "batch"
TITLE = "4. Batch predict (Parquet → Parquet, 10 features)"
PEER = "pyarrow + inplace_predict + pq.write_table"
MIB = 2**20


def run(ws: Workspace, small: bool = False, repeats: int | None = None) -> Section:
    rows = 20_000 if small else 1_000_000
    repeats = repeats or (1 if small else 3)
    data = ws.features_parquet(rows)
    settings, version = promoted_store(ws, "batch", (data,))
    model_path = settings.blessed_dir / "model.xgb"
    server = start_ours(settings, 1, ws.new_dir("batch-logs"))
    ours, peer, inproc = [], [], []
    try:
        wait_until(server, lambda: ours_ready(server, version))
        for r in range(repeats):
            ours.append(_ours(server, data.name))
            peer.append(_peer(model_path, data, ws.new_dir(f"batch-peer-{r}")))
            log(f"{NAME}: repeat {r + 1}/{repeats}: ours {ours[-1]['seconds']:.2f} s, peer {peer[-1]['seconds']:.2f} s")
            _check_same(Path(ours[-1]["output"]), Path(peer[-1]["output"]), rows)
            Path(ours[-1]["output"]).unlink()
    finally:
        server.stop()
    model = served_from_blessed_file(settings)  # our serving code's own loader: the booster as served
    for _ in range(repeats):
        started = time.perf_counter()
        predict_table(model, settings, data.name).output_path.unlink()
        inproc.append(time.perf_counter() - started)
    return _section(ours, peer, inproc, _threads(model.booster), rows, repeats, settings.batch_chunk_rows)


def _threads(booster) -> int:
    """The thread count a booster predicts with (0 = XGBoost's default, all cores)."""
    return int(json.loads(booster.save_config())["learner"]["generic_param"]["nthread"])


def _ours(server, source: str) -> dict:
    worker_procs = server.processes()
    with RssSampler(worker_procs) as sampler:
        started = time.perf_counter()
        status, body = request(server.port, "POST", "/xgboost/batch_predict", {"data_source": source}, timeout=3600)
        seconds = time.perf_counter() - started
    if status != 200:
        raise server.fail(f"batch_predict answered {status}: {body}")
    peak, baseline = sampler.busiest()
    return {"seconds": seconds, "peak": peak, "baseline": baseline, "output": body["output_path"], "rows": body["rows"]}


def _peer(model_path: Path, data: Path, out_dir: Path) -> dict:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=peer_process, args=(child, str(model_path), str(data), str(out_dir / "out.parquet")))
    process.start()
    try:
        parent.recv()  # loaded: libraries imported, model read
        with RssSampler([psutil.Process(process.pid)]) as sampler:
            parent.send("go")
            result = parent.recv()
        peak, baseline = sampler.busiest()
    finally:
        process.join(60)
    return {**result, "peak": peak, "baseline": baseline}


def _check_same(ours: Path, peer: Path, rows: int) -> None:
    a, b = pq.read_table(ours).to_pandas(), pq.read_table(peer).to_pandas()
    if len(a) != rows or len(b) != rows or not np.array_equal(a["row"], b["row"]):
        raise RuntimeError(f"row counts differ: ours {len(a)}, peer {len(b)}, expected {rows}")
    diff = float(np.max(np.abs(a["prediction"].to_numpy() - b["prediction"].to_numpy())))
    if diff > 1e-5:
        raise RuntimeError(f"predictions differ by up to {diff}")


def _section(ours: list[dict], peer: list[dict], inproc: list[float], threads: int, rows: int, repeats: int,
             chunk_rows: int) -> Section:
    setup = (f"{rows:,} rows × {len(BUILTIN_FEATURES)} float32 features in one Parquet file in the data dir; the model "
             "is the promoted version (200 trees, depth 6). **Ours**: `POST /xgboost/batch_predict "
             f"{{\"data_source\": ...}}` to a 1-worker `seedcore serve` (chunks of {chunk_rows:,} rows, the "
             "model as the server holds it), wall time of the HTTP call. **Peer**: a fresh process, model loaded "
             "before the timer, `pq.read_table` → `booster.inplace_predict(table.to_pandas())` (XGBoost's default "
             "threads) → `pq.write_table`. Outputs checked equal (row numbers and predictions).")
    section = Section(NAME, TITLE, setup)
    seconds = (median(o["seconds"] for o in ours), median(p["seconds"] for p in peer))
    section.add("wall time", *seconds, PEER, "<= 1.3", "s")
    section.add("rows per second", rows / seconds[0], rows / seconds[1], PEER, unit="rows/s")
    section.add("ours in-process: `predict_table`, no HTTP", median(inproc), seconds[1], PEER, unit="s",
                note="what the endpoint calls, with the model as our serving code loads it")
    section.add("peak RSS", median(o["peak"] for o in ours) / MIB, median(p["peak"] for p in peer) / MIB, PEER,
                unit="MiB", note="whole process")
    section.add("RSS growth during the job", median(o["peak"] - o["baseline"] for o in ours) / MIB,
                median(p["peak"] - p["baseline"] for p in peer) / MIB, PEER, unit="MiB",
                note="peak − RSS just before")
    section.notes.append(f"medians of {repeats} repeat(s); RSS sampled every 5 ms with psutil from the bench process")
    section.notes.append(f"threads: the served booster answers single requests with nthread={threads} (0 = all "
                         "cores); how `predict_table` spreads a batch over cores is its own choice; the peer uses "
                         "XGBoost's default (all cores)")
    return section
