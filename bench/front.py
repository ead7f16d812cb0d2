"""Reliability of the HTTP front: slow clients and oversized predicts against one worker with 8 request threads.

Ours: `seedcore serve --workers 1` (gunicorn's asyncio worker; each request read whole in the event loop
before one of 8 threads runs the app). Peer: the same app under gunicorn's `gthread` worker, 1 worker × 8
threads (how `seedcore serve` ran before), same store and version.
1. Slow clients: 64 connections (32 sending their headers, 32 their body, a byte a second each; one the
   server closes is opened again) held for 60 s. Meanwhile a separate client process times `GET /health`
   (one after another, fresh connections, 5 s timeout: a timeout counts as 5 s) and predict (one row, one
   kept-alive connection; ours only: under the peer it would wait out its timeout). Predict p50 is compared
   with the same server idle.
2. Oversized predicts: 8 clients at once post 380,000 rows (8.4 MB of JSON); time from a request's first
   byte to its answer's status line (each client reads while it sends); the worker's peak RSS growth.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import multiprocessing
import socket
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import psutil

from bench import _load
from bench._report import Section, log, median, percentile
from bench._ports import free_port
from bench._serving import (ROW, RssSampler, _base_env, _spawn, ours_body, ours_ready, promoted_store,
                            start_ours, wait_until)
from bench._workspace import Workspace

NAME = "front"
TITLE = "Slow clients and oversized predicts (one worker, 8 request threads)"
PEER = "gunicorn gthread, 1 worker × 8 threads"
SLOW = 64
HEALTH_TIMEOUT_S = 5.0
ATTACK_ROWS, ATTACKERS = 380_000, 8
MIB = 2**20


def run(ws: Workspace, small: bool = False, repeats: int | None = None) -> Section:
    hold = 3.0 if small else 60.0
    idle_s = 2.0 if small else 10.0
    settings, version = promoted_store(ws, "front")
    logs = ws.new_dir("front-logs")
    ours = start_ours(settings, 1, logs)
    peer = _start_gthread(settings, logs)
    body = json.dumps(ours_body(ROW)).encode()
    try:
        for server in (ours, peer):
            wait_until(server, lambda: ours_ready(server, version))
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as clients:
            idle = _measure(clients, ours.port, body, idle_s)
            log(f"{NAME}: ours idle: /health p99 {idle['health_p99_s'] * 1000:.0f} ms, predict p50 "
                f"{idle['predict']['p50_ms']:.2f} ms")
            held = {"ours": _held(clients, ours.port, body, hold), "peer": _held(clients, peer.port, None, hold)}
        refused = _oversized(ours)
    finally:
        ours.stop()
        peer.stop()
    return _section(idle, held, refused, hold, small)


def _start_gthread(settings, log_dir):
    """The peer: gunicorn `gthread` (1 worker, 8 threads) running the same app factory over the same store."""
    port = free_port()
    env = {**_base_env(), "SEEDCORE_DATA_DIR": str(settings.data_dir), "SEEDCORE_MLRUNS_DIR": str(settings.mlruns_dir),
           "SEEDCORE_TRACKING_URI": settings.tracking_uri, "SEEDCORE_PORT": str(port)}
    command = [sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", "8", "-w", "1", "-b", f"127.0.0.1:{port}",
               "--timeout", "120", "seedcore.api:create_app(role='serve')"]
    return _spawn("gthread", command, env, port, log_dir)


def _measure(clients, port: int, body: bytes | None, seconds: float) -> dict:
    """/health latencies and (with a `body`) predict latency, at the same time, from the spawned client processes."""
    health = clients.submit(health_latencies, port, seconds)
    predict = clients.submit(_load.measure, port, "/xgboost/predict", body, 1, seconds, 0.2) if body else None
    latencies, predicted = health.result(), predict.result() if predict else None
    return {"health_p99_s": percentile(latencies, 99), "health_max_s": max(latencies),
            "health_timeouts": sum(lat >= HEALTH_TIMEOUT_S for lat in latencies), "health_n": len(latencies),
            "predict": predicted}


def _held(clients, port: int, body: bytes | None, hold: float) -> dict:
    """`_measure` while SLOW slow connections are held against the server for `hold` s."""
    with SlowClients(port, SLOW) as slow:
        time.sleep(min(1.0, hold / 4))  # all of them connected and part-way through a request
        result = _measure(clients, port, body, hold - min(1.0, hold / 4))
    result.update(opened=slow.opened, answered=dict(slow.answers))
    log(f"{NAME}: {port}: /health p99 {result['health_p99_s'] * 1000:.0f} ms ({result['health_timeouts']} timeouts "
        f"of {result['health_n']}){_predicted(result)}; {slow.opened} slow connections opened, the server's "
        f"answers to them: {dict(slow.answers)}")
    return result


def _predicted(result: dict) -> str:
    predict = result["predict"]
    if predict is None:
        return ""
    return f", predict p50 {predict['p50_ms']:.2f} ms ({predict['requests']} requests, {predict['errors']} failed)"


def health_latencies(port: int, seconds: float) -> list[float]:
    """GET /health back to back on fresh connections for `seconds`; a timeout counts as HEALTH_TIMEOUT_S."""
    latencies = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HEALTH_TIMEOUT_S)
        try:
            conn.request("GET", "/health")
            response = conn.getresponse()
            response.read()
            latencies.append(time.perf_counter() - started if response.status == 200 else HEALTH_TIMEOUT_S)
        except (OSError, http.client.HTTPException):
            latencies.append(max(HEALTH_TIMEOUT_S, time.perf_counter() - started))
        finally:
            conn.close()
        time.sleep(0.02)
    return latencies


class SlowClients:
    """`count` connections in an asyncio loop of their own: half send headers, half a body, one byte a
    second; a connection the server answers or closes is counted and opened again."""

    def __init__(self, port: int, count: int):
        self.port, self.count = port, count
        self.opened = 0
        self.answers: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._all()), daemon=True)

    def __enter__(self) -> "SlowClients":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    async def _all(self) -> None:
        await asyncio.gather(*(self._one(i % 2 == 0) for i in range(self.count)))

    async def _one(self, in_headers: bool) -> None:
        head = (b"POST /xgboost/predict HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n" % self.port)
        head += b"X-Slow: " if in_headers else b"\r\n{\"features\": "
        while not self._stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            self.opened += 1
            try:
                writer.write(head)
                while not self._stop.is_set():
                    try:
                        answer = await asyncio.wait_for(reader.read(200), 1.0)
                    except TimeoutError:
                        writer.write(b"a" if in_headers else b" ")
                        continue
                    status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "closed"
                    self.answers[status] = self.answers.get(status, 0) + 1
                    break
            except OSError:
                self.answers["reset"] = self.answers.get("reset", 0) + 1
            finally:
                writer.close()


def _oversized(server) -> dict:
    """ATTACKERS concurrent predicts of ATTACK_ROWS rows: the slowest refusal and the worker's RSS growth."""
    body = json.dumps({"instances": [[0] * 10] * ATTACK_ROWS}, separators=(",", ":")).encode()
    head = (b"POST /xgboost/predict HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (server.port, len(body)))
    (worker,) = psutil.Process(server.process.pid).children()

    def attack(_) -> tuple[int, float]:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        try:
            started = time.perf_counter()
            sender = threading.Thread(target=_send_all, args=(sock, head + body), daemon=True)
            sender.start()  # a client that sends its whole body, reading the answer meanwhile
            status_line = sock.makefile("rb").readline()
            refused_in = time.perf_counter() - started
            sender.join(10)
            return int(status_line.split()[1]), refused_in
        finally:
            sock.close()

    with RssSampler([worker]) as rss, ThreadPoolExecutor(ATTACKERS) as pool:
        answers = list(pool.map(attack, range(ATTACKERS)))
    peak, baseline = rss.busiest()
    if {status for status, _ in answers} != {413}:
        raise RuntimeError(f"oversized predicts were answered {answers}, not 413")
    result = {"slowest_s": max(s for _, s in answers), "median_s": median(s for _, s in answers),
              "rss_growth_mb": (peak - baseline) / MIB, "rss_baseline_mb": baseline / MIB, "bytes": len(body)}
    log(f"{NAME}: {ATTACKERS} x {ATTACK_ROWS:,}-row predicts ({len(body) / 1e6:.1f} MB): slowest refusal "
        f"{result['slowest_s'] * 1000:.1f} ms; worker RSS +{result['rss_growth_mb']:.1f} MB")
    return result


def _send_all(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:  # the server stopped reading after its answer: what a refusal may do
        pass


def _section(idle: dict, held: dict, refused: dict, hold: float, small: bool) -> Section:
    ours, peer = held["ours"], held["peer"]
    setup = (f"One worker with 8 request threads each. {SLOW} slow connections ({SLOW // 2} mid-headers, "
             f"{SLOW // 2} mid-body, a byte a second, reopened when the server closes them) held for {hold:g} s; "
             "meanwhile a spawned client process times `GET /health` (fresh connections back to back, "
             f"{HEALTH_TIMEOUT_S:g} s timeout counted as {HEALTH_TIMEOUT_S:g} s) and one-row predicts (one kept-alive "
             f"connection). Then {ATTACKERS} clients at once send a {ATTACK_ROWS:,}-row predict "
             f"({refused['bytes'] / 1e6:.1f} MB) to ours; refusal time is first byte sent to status line read.")
    section = Section(NAME, TITLE, setup)
    section.add("/health p99, slow connections held", ours["health_p99_s"], unit="s", target="<= 1")
    section.add("/health p99, slow connections held", ours["health_p99_s"], peer["health_p99_s"], PEER, unit="s")
    section.add("predict p50, slow connections held vs idle", ours["predict"]["p50_ms"], idle["predict"]["p50_ms"],
                "ours idle", "<= 1.2", "ms")
    section.add(f"slowest refusal of {ATTACKERS} concurrent {ATTACK_ROWS:,}-row predicts", refused["slowest_s"] * 1000,
                unit="ms", target="<= 100")
    section.notes.append(f"refusals: median {refused['median_s'] * 1000:.1f} ms, slowest {refused['slowest_s'] * 1000:.1f} "
                         "ms (each client sends its whole body meanwhile; the server drops it unread for up to 2 s so "
                         "that the client reads the 413 rather than a reset)")
    section.add("worker RSS growth during them", refused["rss_growth_mb"], unit="MB", target="<= 50")
    for name, result in (("ours", ours), (PEER, peer)):
        section.notes.append(
            f"{name}: /health max {result['health_max_s'] * 1000:.0f} ms, {result['health_timeouts']} of "
            f"{result['health_n']} timed out{_predicted(result)}; {result['opened']} slow connections opened, the "
            f"server's answers to them {result['answered']}")
    section.notes.append(f"ours idle: /health p99 {idle['health_p99_s'] * 1000:.0f} ms, predict p50 "
                         f"{idle['predict']['p50_ms']:.2f} ms; the worker's RSS before the oversized predicts "
                         f"{refused['rss_baseline_mb']:.0f} MB")
    if small:
        section.notes.append("small mode: the deadlines (10 s headers, 60 s body) are longer than the hold, so no "
                             "slow connection is answered")
    return section
