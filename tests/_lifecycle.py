"""Helpers for tests that run `seedcore up` / `seedcore serve` as real processes in their own session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

SEEDCORE = Path(sys.executable).parent / "seedcore"
# For a command whose test is not about Ray's dashboard: its Ray without the dashboard (on the 2-CPU machine a Ray
# start with it costs about 6 CPU-seconds more: 18.4-20.4 against 12.4-14.7 for a start, a task and 20 s idle).
# The dashboard as users get it: tests/deploy/test_guide.py, tests/cli/test_beside_server.py,
# tests/tuning/test_cluster_dashboard.py, scripts/local-cluster's tests and the benchmarks' small modes.
NO_RAY_DASHBOARD = {"SEEDCORE_RAY_DASHBOARD_PORT": "0"}


def _ours(key: str) -> bool:
    return key.startswith("SEEDCORE_") or key == "RAY_ADDRESS"


def clean_env(tmp_path: Path, **extra: str) -> dict:
    """The environment of a user on a fresh machine: no SEEDCORE_* of ours, stores under tmp_path."""
    return _stores_env(tmp_path / "data", tmp_path / "mlruns", **extra)


def settings_env(settings, **extra: str) -> dict:
    """`clean_env` for a test's settings: a command started with it uses the test's own stores."""
    return _stores_env(settings.data_dir, settings.mlruns_dir, **extra)


def _stores_env(data_dir: Path, mlruns_dir: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not _ours(k)}
    env.update(SEEDCORE_DATA_DIR=str(data_dir), SEEDCORE_MLRUNS_DIR=str(mlruns_dir), **extra)
    return env


def as_fresh_user(monkeypatch, data_dir: Path, mlruns_dir: Path) -> None:
    """This process's environment as `clean_env` gives a command's (for the CLI called in process): no SEEDCORE_*
    of ours, no RAY_ADDRESS, the stores at `data_dir` and `mlruns_dir`."""
    for key in [k for k in os.environ if _ours(k)]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("SEEDCORE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("SEEDCORE_MLRUNS_DIR", str(mlruns_dir))


@dataclass
class Platform:
    """A `seedcore` command running in a session of its own (as a terminal runs it), with its log."""

    process: subprocess.Popen
    log: Path
    url: str
    seen: list[psutil.Process] = field(default_factory=list)

    @property
    def sid(self) -> int:
        return self.process.pid  # start_new_session: the leader's pid is the session (and group) id

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, path: str, timeout: float = 180) -> requests.Response:
        """The first answer from `path`; fail early, with the log, if the command died."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"exited with {self.process.returncode}:\n{self.text()[-4000:]}"
            try:
                return requests.get(f"{self.url}{path}", timeout=10)
            except (requests.ConnectionError, requests.Timeout):
                pass
            assert time.monotonic() < deadline, f"no answer from {path} after {timeout} s:\n{self.text()[-4000:]}"
            time.sleep(0.3)

    def wait_healthy(self, timeout: float = 180) -> requests.Response:
        """`/health` once it says ok: on a busy machine a first answer may still find a store slow (degraded)."""
        deadline = time.monotonic() + timeout
        while True:
            health = self.wait_for("/health", timeout=max(1.0, deadline - time.monotonic()))
            if health.status_code == 200 and health.json()["status"] == "ok":
                return health
            assert time.monotonic() < deadline, f"/health never said ok within {timeout} s: {health.text}"
            time.sleep(1.0)

    def remember_processes(self) -> list[psutil.Process]:
        """Every live process of the session (gunicorn workers, Ray, the MLflow UI ...), kept for later."""
        self.seen = session_processes(self.sid)
        return self.seen

    def signal_group(self, signum: int) -> float:
        """Send `signum` to the whole process group, as a terminal (Ctrl-C) or `docker stop` does."""
        started = time.monotonic()
        os.killpg(self.sid, signum)
        return started

    def stop(self) -> None:
        """After the test, whatever happened: kill what is left of the session, by pid."""
        for process in [*self.seen, *session_processes(self.sid)]:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)


def start(command: list[str], tmp_path: Path, port: int, env: dict, name: str = "up", seedcore: Path = SEEDCORE,
          cwd: Path | None = None) -> Platform:
    """`seedcore <command>` (this venv's, or `seedcore` of another install) in a session of its own, as a terminal
    runs it, its output in tmp_path/<name>.log."""
    log = tmp_path / f"{name}.log"
    with open(log, "w") as out:
        process = subprocess.Popen([str(seedcore), *command], env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True, cwd=cwd)
    return Platform(process, log, f"http://127.0.0.1:{port}")


def ctrl_c(platform: Platform, timeout: float = 120) -> None:
    """SIGINT to the whole process group, as a terminal's Ctrl-C: the command exits 0 and leaves no process."""
    started = platform.signal_group(signal.SIGINT)
    assert platform.process.wait(timeout) == 0, platform.text()[-4000:]
    wait_until_gone(platform.sid, started, timeout)


def session_processes(sid: int) -> list[psutil.Process]:
    """Live (not zombie) processes whose session is `sid`."""
    found = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == sid and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
            pass
    return found


def describe(processes: list[psutil.Process]) -> list[str]:
    names = []
    for process in processes:
        try:
            names.append(f"{process.pid} {' '.join(process.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            pass
    return names


def wait_until_gone(sid: int, started: float, timeout: float) -> float:
    """Seconds from `started` until no process of the session is left; fails naming the survivors."""
    deadline = started + timeout
    while True:
        left = session_processes(sid)
        if not left:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            raise AssertionError(f"still alive {timeout} s after the signal: {describe(left)}")
        time.sleep(0.1)
