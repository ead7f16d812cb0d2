"""`scripts/local-cluster partition A B` / `heal` on real processes and real nftables rules, without Ray: two
parts of a cluster's state dir started the way `up` starts them (each on its own address, under its own group
id), a third one beside them. The partition cuts exactly the pair, `heal` restores it, `down` removes the
cluster's table.
"""

from __future__ import annotations

import importlib.util
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from _cluster import ROOT, SCRIPT, marked_processes

pytestmark = pytest.mark.e2e

# A part that answers HTTP on its address, and a part that connects to two others every 0.1 s (at most 60 s)
# and appends `<target> ok|fail` lines to a file.
SERVE = [sys.executable, "-m", "http.server", "--bind"]
PROBE = """
import socket, sys, time
out, targets = sys.argv[1], [t.split(":") for t in sys.argv[2:]]
for _ in range(600):
    for host, port in targets:
        try:
            socket.create_connection((host, int(port)), timeout=0.3).close()
            state = "ok"
        except OSError:
            state = "fail"
        with open(out, "a") as f:
            f.write(f"{host} {state}\\n")
    time.sleep(0.1)
"""


def _module():
    spec = importlib.util.spec_from_file_location("local_cluster", ROOT / "scripts" / "local_cluster.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(state: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), "--state", str(state), *args], capture_output=True, text=True, timeout=120)


def _nft_table(name: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nft", "list", "table", "inet", name], capture_output=True, text=True)


def _latest(out: Path, host: str, after: int) -> list[str]:
    lines = out.read_text().splitlines()[after:] if out.exists() else []
    return [line.split()[1] for line in lines if line.split()[0] == host]


def _wait_for(out: Path, host: str, state: str, seen: int, within_s: float = 20) -> int:
    """Wait until the probe's lines after line `seen` show `host` in `state` three times running."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        lines = out.read_text().splitlines() if out.exists() else []
        states = _latest(out, host, seen)
        if states[-3:] == [state] * 3:
            return len(lines)
        time.sleep(0.2)
    raise AssertionError(f"{host} never {state} 3 times in a row after line {seen}: {_latest(out, host, seen)[-10:]}")


def test_partition_cuts_exactly_the_pair_and_heal_and_down_restore_it():
    module = _module()
    state = Path(f"/tmp/seedcore-lc-{uuid.uuid4().hex[:8]}")
    base = f"127.0.{secrets.randbelow(200) + 20}.10"
    where = module.addresses(base)
    instance = secrets.token_hex(8)
    module._fresh_state(state, instance, where)
    table = f"seedcore_lc_{instance}"
    out = state / "probe.log"
    try:
        ports = {part: module._free_port() for part in (module.MLFLOW, module.SERVES[0])}
        for part, port in ports.items():
            module._spawn(state, part, [*SERVE, where[part], str(port)])
        module._spawn(state, module.API, [sys.executable, "-c", PROBE, str(out),
                                          *(f"{where[p]}:{port}" for p, port in ports.items())])
        mlflow, serve = where[module.MLFLOW], where[module.SERVES[0]]
        seen = _wait_for(out, mlflow, "ok", 0)
        _wait_for(out, serve, "ok", 0)

        cut = _run(state, "partition", module.API, module.MLFLOW)
        assert cut.returncode == 0, cut.stderr
        assert f"partition {module.API} {module.MLFLOW}" in _run(state, "status").stdout
        rules = _nft_table(table).stdout
        gids = module.cluster_info(state)["gids"]
        assert f"meta skgid {gids[module.API]} ip daddr {mlflow}" in rules, rules
        assert f"meta skgid {gids[module.MLFLOW]} ip daddr {where[module.API]}" in rules, rules
        seen = _wait_for(out, mlflow, "fail", seen)
        assert _latest(out, serve, seen - 6)[-2:] == ["ok", "ok"]  # the other part is still reachable

        healed = _run(state, "heal")
        assert healed.returncode == 0, healed.stderr
        assert _nft_table(table).returncode != 0  # the table is gone
        seen = _wait_for(out, mlflow, "ok", seen)

        assert _run(state, "partition", module.SERVES[0], module.API).returncode == 0
        _wait_for(out, serve, "fail", seen)
        down = _run(state, "down")
        assert down.returncode == 0, down.stderr
        assert _nft_table(table).returncode != 0 and marked_processes(state) == [] and not state.exists()
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True)
        module._stop_all(state)
        shutil.rmtree(state, ignore_errors=True)
