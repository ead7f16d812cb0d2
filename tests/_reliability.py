"""Helpers for the reliability suite: our real app under a real threaded WSGI server, on its own stores.

Import into a test module (`from _reliability import ...`).
"""

from __future__ import annotations

import http.client
import json
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from _serving import live_server as serve_over_http, stop_app

from seedcore.api import create_app
from seedcore.config import Settings


def tiny_settings(root: Path, mlflow_template: Path, **changes) -> Settings:
    """Settings on fresh stores under `root`, with sweeps capped tiny (2 trials, a few seconds)."""
    mlruns = root / "mlruns"
    mlruns.mkdir(parents=True)
    shutil.copy(mlflow_template, mlruns / "mlflow.db")
    settings = Settings(data_dir=root / "data", mlruns_dir=mlruns, poll_interval_s=0.5, max_trials=2,
                        max_time_budget_s=5.0, **changes)
    settings.ensure_dirs()
    from seedcore.db.migrations import upgrade

    upgrade(settings.database_url)
    return settings


@dataclass
class LiveServer:
    host: str
    port: int
    app: object

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict | None = None, chunked: bool = False) -> tuple[int, dict | None, dict]:
        """One raw HTTP request (bytes as given, nothing re-encoded): status, JSON body or None, headers."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
            if chunked:
                _send_chunked(conn, method, path, data or b"", headers or {})
            else:
                conn.request(method, path, body=data, headers=headers or {})
            response = conn.getresponse()
            raw = response.read()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = None
            return response.status, parsed, {k.lower(): v for k, v in response.getheaders()}
        finally:
            conn.close()


def _send_chunked(conn: http.client.HTTPConnection, method: str, path: str, data: bytes, headers: dict) -> None:
    """A body with `Transfer-Encoding: chunked` and no Content-Length, in 4 KiB chunks."""
    conn.putrequest(method, path)
    for key, value in {**headers, "Transfer-Encoding": "chunked"}.items():
        conn.putheader(key, value)
    conn.endheaders()
    try:
        for start in range(0, len(data), 4096):
            part = data[start:start + 4096]
            conn.send(b"%x\r\n%s\r\n" % (len(part), part))
        conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):  # the server may answer 413 before reading it all
        pass


@contextmanager
def live_server(settings: Settings):
    """Our app (role "all") served by werkzeug's threaded server on a free 127.0.0.1 port."""
    app = create_app(settings)
    try:
        with serve_over_http(app) as base_url:
            host, port = base_url.removeprefix("http://").split(":")
            yield LiveServer(host, int(port), app)
    finally:
        stop_app(app)
