"""`seedcore ray address` and `seedcore ray status` in process: the platform's Ray is SEEDCORE_RAY_ADDRESS (or
RAY_ADDRESS), else the one a running `seedcore up` announced in `<data dir>/ray/session.json`; without either
both commands fail (exit 1) saying how to get one, and `ray status` shows the announced Ray (the pytest worker's,
announced as the server announces its own). The stores are the test's own; no SEEDCORE_* of the outer
environment reaches the command."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from _lifecycle import as_fresh_user
from seedcore.cli import main
from seedcore.cli.common import OUR_FAULT

pytestmark = pytest.mark.integration  # `ray status` runs Ray's CLI against the worker's Ray

# A pid no process can have: above Linux's pid_max (at most 2**22), so a server that announced it has ended.
ENDED_PID = 2**22 + 1


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """The command's data dir, under tmp_path; the outer environment's SEEDCORE_* and RAY_ADDRESS removed."""
    as_fresh_user(monkeypatch, tmp_path / "data", tmp_path / "mlruns")
    return tmp_path / "data"


def _announce(data_dir: Path, content: str) -> Path:
    session = data_dir / "ray" / "session.json"
    session.parent.mkdir(parents=True)
    session.write_text(content)
    return session


def test_ray_address_prints_the_address_a_running_seedcore_up_announced(data_dir, capfd):
    _announce(data_dir, json.dumps({"gcs_address": "127.0.0.1:6379", "dashboard_url": None, "pid": os.getpid()}))
    assert main(["ray", "address"]) == 0
    assert capfd.readouterr() == ("127.0.0.1:6379\n", "")


@pytest.mark.parametrize("variable", ["SEEDCORE_RAY_ADDRESS", "RAY_ADDRESS"])
def test_a_cluster_address_in_the_environment_comes_before_any_announced_session(data_dir, monkeypatch, capfd,
                                                                                   variable):
    _announce(data_dir, json.dumps({"gcs_address": "127.0.0.1:6379", "pid": os.getpid()}))
    monkeypatch.setenv(variable, "10.1.2.3:6379")
    assert main(["ray", "address"]) == 0
    assert capfd.readouterr() == ("10.1.2.3:6379\n", "")


NO_PLATFORM_RAY = {
    "no session file": None,
    "not JSON": "{half a file",
    "no address": json.dumps({"gcs_address": None, "dashboard_url": None, "pid": os.getpid()}),
    "server ended": json.dumps({"gcs_address": "127.0.0.1:6379", "dashboard_url": None, "pid": ENDED_PID}),
}


@pytest.mark.parametrize("session", NO_PLATFORM_RAY.values(), ids=NO_PLATFORM_RAY.keys())
@pytest.mark.parametrize("command", ["address", "status"])
def test_without_a_live_platform_ray_both_commands_fail_saying_how_to_get_one(data_dir, capfd, session, command):
    if session is not None:
        _announce(data_dir, session)
    assert main(["ray", command]) == OUR_FAULT == 1
    out, err = capfd.readouterr()
    assert out == ""  # nothing printed, and no `ray status` run
    error = json.loads(err)
    assert error["status"] == "error", error
    message = error["error"]
    assert message.startswith(f"no running `seedcore up` has a Ray session for the data dir {data_dir} "), message
    assert str(data_dir / "ray" / "session.json") in message
    assert "start `seedcore up`" in message and "SEEDCORE_RAY_ADDRESS" in message


def test_ray_status_shows_the_nodes_and_resources_of_the_ray_a_server_announced(ray_session, data_dir, capfd):
    import ray

    from seedcore.config import Settings
    from seedcore.server.ray_keeper import _announce_ray

    _announce_ray(Settings.from_env())  # the session file, as the server writes it for its Ray
    assert (data_dir / "ray" / "session.json").is_file()
    capfd.readouterr()
    deadline = time.monotonic() + 60
    while True:  # Ray's status shows once its monitor reported ("No cluster status. It may take a few seconds")
        code = main(["ray", "status"])
        out, err = capfd.readouterr()
        if code != 0 or "Active:" in out or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert code == 0, out + err[-3000:]
    assert "Active:" in out and "CPU" in out, out
    assert f"node_{ray.get_runtime_context().get_node_id()}" in out, out  # this worker's Ray, not another one
