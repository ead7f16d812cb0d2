"""Two processes promoting at once (two `seedcore promote` commands) are serialised: the second sees the
first's result as its champion, and the registry, the blessed files and flashbulb memory agree at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from _flywheel import add_version, blessed_as_read, holdout_rows, promotion_incidents, same_predictions
from seedcore.promotion.registry import Registry

pytestmark = pytest.mark.e2e

# Each process reads the champion, then lingers 2 s before acting on it: without serialisation both read
# version 1 as the champion. A barrier makes both start promoting at the same moment.
PROMOTER = r"""
import pathlib, sys, time
from seedcore.promotion.registry import Registry

real = Registry.production_version

def slow(self):
    found = real(self)
    time.sleep(2.0)
    return found

Registry.production_version = slow
barrier = pathlib.Path(sys.argv[2])
(barrier / f"ready-{sys.argv[1]}").touch()
while len(list(barrier.glob("ready-*"))) < 2:
    time.sleep(0.01)
from seedcore.cli import main
sys.exit(main(["promote", "--version", sys.argv[1], "--force"]))
"""


def _json_output(stdout: str) -> dict:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("{"))
    return json.loads("\n".join(lines[start:]))


def test_two_processes_promoting_at_once_are_serialised(migrated_settings, tmp_path):
    settings = migrated_settings
    registry = Registry(settings)
    add_version(settings, registry, seed=1, promote=True)
    boosters = {v: b for v, b in (add_version(settings, registry, seed=s, depth=3, promote=False) for s in (2, 3))}
    env = {**os.environ, "SEEDCORE_DATA_DIR": str(settings.data_dir), "SEEDCORE_MLRUNS_DIR": str(settings.mlruns_dir)}
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", PROMOTER, str(v), str(barrier)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for v in boosters]
    outputs = [proc.communicate(timeout=180) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    records = sorted((_json_output(out) for out, _ in outputs), key=lambda r: r["promoted_at"])

    first, second = records
    assert first["status"] == second["status"] == "success"
    assert first["previous_version"] == 1
    assert second["previous_version"] == first["version"]  # it waited, then saw the first one's result

    winner = second["version"]
    assert int(registry.production_version().version) == winner
    metadata, served = blessed_as_read(settings)
    assert metadata["version"] == winner
    assert same_predictions(served, boosters[winner], holdout_rows(settings, 50))
    promoted = [(i["model_version"], i["payload"]["previous_version"]) for i in promotion_incidents(settings)]
    assert promoted == [(str(first["version"]), 1), (str(winner), first["version"])]  # one incident each
