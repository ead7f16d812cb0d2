"""The load client: runs in its own process (spawned), N threads, one kept-alive HTTP/1.1 connection each.

`http.client` rather than `requests`: a few tens of microseconds of client CPU per request instead of
hundreds, so on a 2-core machine the client takes as little as possible from the server it measures.
Each thread sends the same JSON body back to back; latency is request start to last response byte.
"""

from __future__ import annotations

import http.client
import threading
import time

from bench._report import percentile

LATE_S = 30.0  # how long past its window a client may go on for its first answered request in the window


def measure(port: int, path: str, body: bytes, clients: int, seconds: float, warmup: float) -> dict:
    """Closed-loop load for `warmup + seconds`; stats cover requests started inside the measured window.

    Each client has one request answered before the clock starts: a fixed warm-up alone left a window with no
    request in it when a loaded machine held the first answer longer than the warm-up (small mode: 0.2 s). A
    client whose requests all started before the window goes on past its end for one more (see `client`)."""
    results: list[list[tuple[float, float]]] = [[] for _ in range(clients)]
    errors = [0] * clients
    window = {}

    def start_clock() -> None:  # run once, when every client has had its first answer
        now = time.perf_counter()
        window.update(begin=now + warmup, end=now + warmup + seconds)

    barrier = threading.Barrier(clients + 1, action=start_clock)

    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}

    def post(conn: http.client.HTTPConnection) -> tuple[http.client.HTTPConnection, bool]:
        """One request on `conn`: the connection to go on with (a new one after a failure) and whether it was a 200."""
        try:
            conn.request("POST", path, body, headers)
            response = conn.getresponse()
            response.read()
            return conn, response.status == 200
        except (OSError, http.client.HTTPException):
            conn.close()
            return http.client.HTTPConnection("127.0.0.1", port, timeout=30), False

    def client(index: int) -> None:
        conn, _ = post(http.client.HTTPConnection("127.0.0.1", port, timeout=30))  # untimed: the loop counts failures
        barrier.wait()
        begin, end = window["begin"], window["end"]
        own = results[index]
        while True:
            start = time.perf_counter()
            # Past the window, once one of this client's answered requests started at or after its beginning: a
            # request a loaded machine held across the whole window (small mode: 0.5 s) would otherwise leave it
            # empty. Failures never extend it, nor does anything past LATE_S.
            if start >= end and ((own and own[-1][0] >= begin) or start >= end + LATE_S):
                break
            conn, ok = post(conn)
            if ok:
                own.append((start, time.perf_counter() - start))
            else:
                errors[index] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    for thread in threads:
        thread.join()
    latencies = [lat for own in results for start, lat in own if start >= window["begin"]]
    return summarize(latencies, seconds, sum(errors))


def summarize(latencies_s: list[float], seconds: float, errors: int = 0) -> dict:
    ms = [x * 1000 for x in latencies_s]
    return {"p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "requests": len(ms),
            "throughput": len(ms) / seconds, "errors": errors}


def floor(booster_raw: bytes, row: list[float], seconds: float, warmup: float) -> dict:
    """In-process `inplace_predict` of one row, back to back, one thread (nthread=1, as our server sets)."""
    import numpy as np
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(booster_raw))
    booster.set_param({"nthread": 1})
    x = np.array([row], dtype=np.float32)
    latencies = []
    begin = time.perf_counter() + warmup
    end = begin + seconds
    while True:
        start = time.perf_counter()
        if start >= end:
            break
        booster.inplace_predict(x)
        if start >= begin:
            latencies.append(time.perf_counter() - start)
    return summarize(latencies, seconds)
