"""A real `seedcore serve` under the attacks an outside tester ran: connections that send their headers or
body slowly (more of them than the worker has threads), and concurrent predicts of 380,000 rows (8.4 MB).
The API keeps answering; slow requests end in a 408, oversized ones in a 413 read from the headers alone."""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import socket
import statistics
import struct
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests

from _lifecycle import clean_env, describe, session_processes, start, wait_until_gone
from bench._ports import free_port
from _serving import GUIDE_ROW, add_version, wait_for
from seedcore.config import Settings
from seedcore.names import MAX_REQUEST_ROWS
from seedcore.db.migrations import upgrade
from seedcore.promotion.registry import Registry

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT_S, BODY_TIMEOUT_S = 5.0, 5.0
ATTACK_ROWS = 380_000  # the tester's predict: 8.4 MB of JSON
STOP_WITHIN_S = 10.0


def _stores(root, mlflow_template) -> Settings:
    """Fresh stores under `root` (where clean_env points `seedcore`) holding one promoted version."""
    (root / "mlruns").mkdir()
    shutil.copy(mlflow_template, root / "mlruns" / "mlflow.db")
    settings = Settings(data_dir=root / "data", mlruns_dir=root / "mlruns")
    settings.ensure_dirs()
    upgrade(settings.database_url)
    add_version(settings, Registry(settings), promote=True)
    return settings


def _serve(root, workers: int = 1, **env):
    port = free_port()
    env = {"SEEDCORE_PORT": str(port), "SEEDCORE_READ_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
           "SEEDCORE_READ_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S), **env}
    server = start(["serve", "--workers", str(workers)], root, port, clean_env(root, **env), name=f"serve-{port}")
    server.port = port
    wait_for(lambda: server.process.poll() is not None or _model_loaded(server), timeout=120, interval=0.3)
    assert server.process.poll() is None, server.text()[-3000:]
    return server


def _model_loaded(server) -> bool:
    try:
        return requests.get(f"{server.url}/xgboost/model_info", timeout=5).json().get("version") == 1
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory, mlflow_template):
    root = tmp_path_factory.mktemp("front")
    _stores(root, mlflow_template)
    serve = _serve(root)
    try:
        yield serve
    finally:
        serve.stop()
    log = serve.text()
    for symptom in ("Worker was sent SIGKILL", "WORKER TIMEOUT", "Traceback"):
        assert symptom not in log, log[-4000:]


def _worker(server) -> psutil.Process:
    (worker,) = psutil.Process(server.process.pid).children()
    return worker


def _connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def _head(server, path: str = "/xgboost/predict", length: int | None = None, extra: bytes = b"") -> bytes:
    lines = [b"POST %s HTTP/1.1" % path.encode(), b"Host: 127.0.0.1:%d" % server.port,
             b"Content-Type: application/json"]
    if length is not None:
        lines.append(b"Content-Length: %d" % length)
    return b"\r\n".join(lines) + b"\r\n" + extra


def _response(sock: socket.socket) -> tuple[int, dict, dict]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    raw = response.read()
    return response.status, (json.loads(raw) if raw else {}), {k.lower(): v for k, v in response.getheaders()}


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _health(server) -> None:
    answer = requests.get(f"{server.url}/health", timeout=30)
    assert answer.status_code == 200, answer.text


def _predict(server) -> None:
    answer = requests.post(f"{server.url}/xgboost/predict", json={"features": GUIDE_ROW}, timeout=30)
    assert answer.status_code == 200 and answer.json()["model_version"] == 1, answer.text


class _Trickle:
    """Every 0.2 s, one more byte on each socket: a client that never quite finishes its request."""

    def __init__(self, sockets: list[socket.socket], byte: bytes):
        self.sockets, self.byte, self.stopped = sockets, byte, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopped.wait(0.2):
            for sock in self.sockets:
                try:
                    sock.send(self.byte)
                except OSError:  # the server gave up on it (its deadline): what we expect in the end
                    pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join()


def test_slow_clients_hold_no_thread_and_end_in_408(server):
    """24 slow connections (the worker has 8 request threads) and 4 idle ones: /health and predict answer
    fast throughout; each slow request ends in a 408 at its deadline although it kept sending, and an
    idle connection is closed."""
    opened = time.monotonic()
    heads = [_connect(server) for _ in range(12)]
    for sock in heads:
        sock.sendall(_head(server, length=30) + b"X-Slow: ")  # headers that never end
    bodies = [_connect(server) for _ in range(12)]
    for sock in bodies:
        sock.sendall(_head(server, length=10_000) + b"\r\n{\"features\": ")  # a body that never ends
    idle = [_connect(server) for _ in range(4)]
    with _Trickle(heads, b"a"), _Trickle(bodies, b" "):
        health, predict = [], []
        while time.monotonic() - opened < HEADER_TIMEOUT_S - 1.0:  # all 28 held meanwhile
            health.append(_timed(lambda: _health(server)))
            predict.append(_timed(lambda: _predict(server)))
        assert len(health) >= 3
        print(f"while held: /health max {max(health) * 1000:.0f} ms, predict median "
              f"{statistics.median(predict) * 1000:.1f} ms over {len(health)} each")
        # the threads held, these would wait for the deadline: 4 s and more
        assert max(health) < 2.0 and max(predict) < 2.0, (health, predict)

        for sock in heads:
            status, body, headers = _response(sock)
            assert status == 408 and headers["connection"] == "close", body
            assert "SEEDCORE_READ_HEADER_TIMEOUT_S" in body["error"], body
        for sock in bodies:
            status, body, headers = _response(sock)
            assert (status, body["field"]) == (408, "body") and headers["connection"] == "close", body
            assert "SEEDCORE_READ_BODY_TIMEOUT_S" in body["error"], body
        for sock in idle:
            assert sock.recv(100) == b""  # closed without an answer: it never asked anything
        took = time.monotonic() - opened
    assert took < max(HEADER_TIMEOUT_S, BODY_TIMEOUT_S) + 3, f"the deadlines ended them only after {took:.1f} s"
    for sock in heads + bodies + idle:
        sock.close()
    _health(server)


def test_a_keep_alive_connection_waits_no_longer_than_the_header_deadline(server):
    sock = _connect(server)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % server.port)
    assert _response(sock)[0] == 200
    started = time.monotonic()
    assert sock.recv(100) == b""  # nothing more asked: closed at the deadline
    assert HEADER_TIMEOUT_S - 0.5 < time.monotonic() - started < HEADER_TIMEOUT_S + 2
    sock.close()


def test_a_client_that_leaves_before_its_answer_is_logged_499_not_500(server):
    """A client that sends its request and goes away before the answer gets nothing: the access log says 499
    (nginx's "client closed request"), not the 500 gunicorn logs by default for an answer it never sent. A
    client that stays gets its 200, logged as 200."""
    body = json.dumps({"instances": [GUIDE_ROW] * MAX_REQUEST_ROWS}, separators=(",", ":")).encode()
    mark = uuid.uuid4().hex
    for _ in range(3):
        sock = _connect(server)
        sock.sendall(_head(server, length=len(body), extra=b"User-Agent: leaves-%s\r\n\r\n" % mark.encode())
                     + body)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # a reset, at once
        sock.close()
    sock = _connect(server)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: stays-%s\r\n\r\n"
                 % (server.port, mark.encode()))
    assert _response(sock)[0] == 200
    sock.close()

    def lines(who: str) -> list[str]:
        return [line for line in server.text().splitlines() if f'"{who}-{mark}"' in line]

    wait_for(lambda: len(lines("leaves")) == 3 and lines("stays"), timeout=30, interval=0.2)
    assert all('" 499 0 ' in line for line in lines("leaves")), lines("leaves")
    assert '"GET /health HTTP/1.1" 200 ' in lines("stays")[0], lines("stays")


def test_oversized_predicts_are_refused_from_their_headers(server):
    """8 clients at once announce a 380,000-row predict (8.4 MB): each gets a 413 naming the cap and the
    field before sending a byte of the body; sending it anyway, each still reads the 413 (no reset), and
    the worker's memory hardly moves."""
    body = json.dumps({"instances": [[0] * 10] * ATTACK_ROWS}, separators=(",", ":")).encode()
    assert len(body) > 8_000_000
    worker = _worker(server)
    baseline = worker.memory_info().rss
    peak = [baseline]
    sampling = threading.Event()

    def sample():
        while not sampling.wait(0.01):
            peak[0] = max(peak[0], worker.memory_info().rss)

    def attack(_):
        sock = _connect(server)
        try:
            started = time.perf_counter()
            sock.sendall(_head(server, length=len(body)) + b"\r\n")
            status, answer, _ = _response(sock)
            refused_in = time.perf_counter() - started
            return status, answer, refused_in
        finally:
            sock.close()

    def naive(_):  # sends everything first, then reads (what http.client and requests do)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            conn.request("POST", "/xgboost/predict", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            refused = list(pool.map(attack, range(8)))
            naive_answers = list(pool.map(naive, range(8)))
        _health(server)
    finally:
        sampling.set()
        sampler.join()
    for status, answer, _ in refused:
        assert (status, answer["field"]) == (413, "body"), answer
        assert "4194304-byte cap (SEEDCORE_MAX_PREDICT_BYTES)" in answer["error"], answer
    slowest = max(seconds for *_, seconds in refused)
    print(f"8 concurrent {ATTACK_ROWS:,}-row predicts: slowest refusal {slowest * 1000:.0f} ms; worker RSS "
          f"{baseline / 2**20:.0f} MB -> peak {peak[0] / 2**20:.0f} MB")
    assert slowest < 2.0, refused
    assert all(status == 413 and answer["field"] == "body" for status, answer in naive_answers), naive_answers
    assert peak[0] - baseline < 50 * 2**20, f"the worker grew by {(peak[0] - baseline) / 2**20:.0f} MB"


def test_a_chunked_body_is_cut_at_the_cap(server):
    sock = _connect(server)
    try:
        sock.sendall(_head(server, extra=b"Transfer-Encoding: chunked\r\n\r\n"))
        chunk = b"[" + b"0," * 32767 + b"0"  # 64 KiB a chunk, with no end in sight
        for _ in range(70):  # 4.4 MB in all, past the 4 MiB cap
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                break
        status, body, _ = _response(sock)
    finally:
        sock.close()
    assert (status, body["field"]) == (413, "body") and "SEEDCORE_MAX_PREDICT_BYTES" in body["error"], body


def test_expect_100_continue(server):
    """curl sends `Expect: 100-continue` for large bodies: a body we take is invited (100 Continue), one
    over the cap is refused at once, so the client never sends it."""
    payload = json.dumps({"features": GUIDE_ROW}).encode()
    sock = _connect(server)
    try:
        sock.sendall(_head(server, length=len(payload), extra=b"Expect: 100-continue\r\n\r\n"))
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(payload)
        status, body, _ = _response(sock)
        assert status == 200 and body["rows"] == 1, body
    finally:
        sock.close()
    sock = _connect(server)
    try:
        sock.sendall(_head(server, length=50_000_000, extra=b"Expect: 100-continue\r\n\r\n"))
        status, body, _ = _response(sock)
        assert (status, body["field"]) == (413, "body"), body
    finally:
        sock.close()


def test_rebound_hosts_are_refused_at_the_real_port(server):
    for host, status in ((f"attacker.example:{server.port}", 403), (f"localhost:{server.port}", 200),
                         (f"127.0.0.1:{server.port}", 200)):
        answer = requests.get(f"{server.url}/health", headers={"Host": host}, timeout=30)
        assert answer.status_code == status, (host, answer.text)
    answer = requests.post(f"{server.url}/xgboost/predict", data=json.dumps({"features": GUIDE_ROW}),
                           headers={"Host": f"attacker.example:{server.port}",
                                    "Origin": f"http://attacker.example:{server.port}",
                                    "Content-Type": "application/x-www-form-urlencoded"}, timeout=30)
    assert answer.status_code == 403 and answer.json()["field"] == "Host", answer.text


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_slow_and_idle_connections_do_not_hold_up_a_stop(tmp_path, mlflow_template, signum):
    """`docker stop` or Ctrl-C with slow and kept-alive connections open: all gone within ten seconds."""
    _stores(tmp_path, mlflow_template)
    serve = _serve(tmp_path, workers=2, SEEDCORE_READ_HEADER_TIMEOUT_S="60", SEEDCORE_READ_BODY_TIMEOUT_S="60")
    try:
        held = [_connect(serve) for _ in range(6)]
        for sock in held[:2]:
            sock.sendall(_head(serve, length=30))
        for sock in held[2:4]:
            sock.sendall(_head(serve, length=1000) + b"\r\n{")
        sock = held[4]
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % serve.port)
        assert _response(sock)[0] == 200  # then kept alive, idle
        serve.remember_processes()
        started = serve.signal_group(signum)
        serve.process.wait(STOP_WITHIN_S + 5)
        took = wait_until_gone(serve.sid, started, STOP_WITHIN_S)
        print(f"{signal.Signals(signum).name} with 6 connections held: stopped in {took:.2f} s")
        assert not session_processes(serve.sid), describe(session_processes(serve.sid))
        assert "Worker was sent SIGKILL" not in serve.text(), serve.text()[-3000:]
        for sock in held:
            sock.close()
    finally:
        serve.stop()
