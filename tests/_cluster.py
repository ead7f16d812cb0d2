"""The loopback cluster for the cluster tests: `scripts/local-cluster` run on free ports of loopback addresses
of its own (a /24 drawn per cluster), with a PostgreSQL server of its own."""

from __future__ import annotations

import json
import random
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench._ports import free_port, reserve

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "local-cluster"
POLL_S = 2.0  # the serving replicas' poll interval in the loopback layout


UP_TIMEOUT_S = 420  # `up --timeout`: past it, `up` stops what it started and says which part did not answer


def local_cluster(state: Path, *args: str, timeout: float = UP_TIMEOUT_S + 120) -> subprocess.CompletedProcess:
    """The script run to its end; its own deadlines come first, so a failure is its own message and log tails."""
    return subprocess.run([str(SCRIPT), "--state", str(state), *args], capture_output=True, text=True,
                          timeout=timeout)


def marked_processes(state: Path) -> list[int]:
    """Live processes started by the script for `state` (they carry its mark in their environment)."""
    mark = f"LOCAL_CLUSTER_STATE={state}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and mark in (entry / "environ").read_bytes().split(b"\0"):
                if (entry / "stat").read_text().split(") ")[1][0] != "Z":
                    found.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return found


@contextmanager
def loopback_cluster(state: Path, pg_url: str | None = None) -> Iterator[dict]:
    """`up` on free ports with two fresh databases (on `pg_url`'s server, or the cluster's own PostgreSQL);
    yields the NAME=URL endpoints; `down` (and drop, on `pg_url`'s server) after."""
    prefix = f"seedcore_lc_{uuid.uuid4().hex[:10]}"
    ports = [free_port() for _ in range(7)]
    args = ["up", "--db-prefix", prefix, "--api-port", str(ports[0]), "--address-base", address_base(),
            "--serve-ports", f"{ports[1]},{ports[2]}", "--mlflow-port", str(ports[3]), "--ray-port", str(ports[4]),
            "--dashboard-port", str(ports[5]), "--pg-port", str(ports[6]), "--head-cpus", "1", "--node2-cpus", "1",
            "--poll-interval", str(POLL_S), "--timeout", str(UP_TIMEOUT_S), *(["--pg-url", pg_url] if pg_url else [])]
    try:
        started = time.monotonic()
        up = local_cluster(state, *args)
        assert up.returncode == 0, f"up failed:\n{up.stderr[-4000:]}"
        endpoints = dict(line.split("=", 1) for line in up.stdout.splitlines() if "=" in line)
        endpoints["_up_s"] = round(time.monotonic() - started, 1)
        yield endpoints
    finally:
        local_cluster(state, "down", timeout=120)
        if pg_url:
            _drop(pg_url, prefix)


def address_base() -> str:
    """A base address in a /24 of 127.0.0.0/8 no other test process holds (the partition tests cut a node's
    addresses off with firewall rules: two clusters at once must not share them)."""
    for third in random.SystemRandom().sample(range(20, 220), 200):
        if reserve(f"loopback-127.0.{third}"):
            return f"127.0.{third}.10"
    raise RuntimeError("every loopback /24 from 127.0.20 to 127.0.219 is held")


def _drop(pg_url: str, prefix: str) -> None:
    engine = create_engine(make_url(pg_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            for suffix in ("mlflow", "app"):
                connection.execute(text(f'DROP DATABASE IF EXISTS "{prefix}_{suffix}" WITH (FORCE)'))
    finally:
        engine.dispose()


def call(method: str, url: str, body: dict | None = None, timeout: float = 300, headers: dict | None = None):
    """(status, JSON body) of one HTTP request."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def ray_nodes(dashboard: str, token: str) -> list[dict]:
    """The cluster's nodes as the head's dashboard lists them (its API needs the cluster's token)."""
    _, body = call("GET", f"{dashboard}/nodes?view=summary", headers={"Authorization": f"Bearer {token}"})
    return body["data"]["summary"]
