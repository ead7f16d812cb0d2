"""The benchmarks' load client (bench/_load.py) against a real HTTP server on a free port."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench._load import LATE_S, measure

pytestmark = pytest.mark.integration


@contextmanager
def slow_server(delay_s: float):
    """The port of a real HTTP server answering every POST after `delay_s`; stopped and closed after."""
    class Slow(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(delay_s)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Slow) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()


def test_a_window_shorter_than_one_answer_still_measures_a_request():
    """The small mode's 0.2 s warm-up and 0.5 s window, against answers that take 1 s (a loaded machine): the
    one client's request that started before the window ends after it, and the window used to come out empty."""
    with slow_server(1.0) as port:
        result = measure(port, "/", b"{}", clients=1, seconds=0.5, warmup=0.2)
    assert result["requests"] >= 1 and result["errors"] == 0, result
    assert 0.9 < result["p50_ms"] / 1000 < 5, result


def test_a_fast_server_is_measured_inside_the_window_only():
    with slow_server(0.01) as port:
        started = time.perf_counter()
        result = measure(port, "/", b"{}", clients=2, seconds=0.5, warmup=0.2)
        took = time.perf_counter() - started
    assert result["requests"] > 10 and result["errors"] == 0, result
    assert took < LATE_S / 2, took  # no client went on past the window for lack of a request in it
