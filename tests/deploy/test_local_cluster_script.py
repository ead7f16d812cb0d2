"""`scripts/local-cluster`'s refusals and checks, which need no cluster: every default shown by `--help` and
clear of the ports the README suggests; a taken port or a foreign state dir refused before anything starts;
a `/health` answer from another server rejected; `GET /health` echoing the instance id the script checks.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

from _cluster import ROOT, SCRIPT, marked_processes
from _pg import postgres_base_url
from bench._ports import free_port
from seedcore.api import create_app
from seedcore.services import services_of
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.e2e

PORT_OPTIONS = ("--api-port", "--serve-ports", "--mlflow-port", "--ray-port", "--dashboard-port", "--pg-port")
# The part whose address each port option is on.
OPTION_PART = {"--api-port": "api", "--serve-ports": "serve-1", "--mlflow-port": "mlflow", "--ray-port": "ray-head",
               "--dashboard-port": "ray-head", "--pg-port": "postgres"}
RAY_DASHBOARD_TRIES = 51  # Ray's dashboard takes 8265 or one of the 50 ports after it (ray/_private/services.py)


def _module():
    spec = importlib.util.spec_from_file_location("local_cluster", ROOT / "scripts" / "local_cluster.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCAL_CLUSTER_")}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env)


def _state() -> Path:
    """A state dir path that does not exist yet (short: Ray's sockets live under it)."""
    return Path(f"/tmp/seedcore-lc-{uuid.uuid4().hex[:8]}")


@contextmanager
def _health_server(instance_id: str | None, port: int = 0, host: str = "127.0.0.1"):
    """A real HTTP server on `host` answering every GET with 200 and {"status": "ok", "instance_id": ...}."""
    with _json_server(lambda: {"status": "ok", "instance_id": instance_id}, port, host) as bound:
        yield bound


@contextmanager
def _json_server(answer, port: int = 0, host: str = "127.0.0.1"):
    """A real HTTP server on `host` answering every GET with 200 and the JSON of `answer()`; yields its port."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(answer()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _free_ports() -> dict[str, str]:
    ports = [free_port() for _ in range(7)]
    return {"--api-port": str(ports[0]), "--serve-ports": f"{ports[1]},{ports[2]}", "--mlflow-port": str(ports[3]),
            "--ray-port": str(ports[4]), "--dashboard-port": str(ports[5]), "--pg-port": str(ports[6])}


def _readme_ports() -> set[int]:
    """Every port the README suggests for something else: `scripts/up`'s, a second one's, the docker compose
    layout's, PostgreSQL's, and the range Ray's dashboard may take from 8265 on."""
    text = (ROOT / "README.md").read_text()
    ports = {int(p) for p in re.findall(r"(?:127\.0\.0\.1|localhost|0\.0\.0\.0):(\d+)", text)}
    ports |= {int(p) for p in re.findall(r"_PORT=(\d+)", text)}
    ports |= {int(p) for p in re.findall(r"\| `SEEDCORE_\w*_PORT` \| `(\d+)`", text)}
    compose = (ROOT / "docker-compose.yml").read_text()
    ports |= {int(p) for p in re.findall(r'"(\d+):\d+"', compose)}
    assert {8000, 5000, 8100, 5100, 8265, 8001} <= ports, ports  # the parse found what the README says
    return ports | set(range(8265, 8265 + RAY_DASHBOARD_TRIES))


def _help_entries(text: str) -> dict[str, str]:
    """{option: its help text, on one line} from argparse's --help output."""
    entries, current = {}, None
    for line in text.splitlines():
        match = re.match(r"  (--[\w-]+)", line)
        if match:
            current = match.group(1)
            entries[current] = ""
        if current and line.strip():
            entries[current] += " " + line.strip()
        elif not line.strip():
            current = None
    return entries


def test_help_prints_every_default_and_the_default_ports_avoid_the_readmes():
    up = _module()._parser()._subparsers._group_actions[0].choices["up"]
    options = [a for a in up._actions if a.option_strings and a.dest != "help"]
    entries = _help_entries(_run("up", "--help").stdout)
    for action in options:
        assert entries[action.option_strings[0]].endswith(f"(default: {action.default})"), entries
    assert "(default: /tmp/seedcore-local-cluster)" in _help_entries(_run("--help").stdout)["--state"]

    ports = {int(p) for o in PORT_OPTIONS for p in re.search(r"\(default: ([\d,]+)\)$", entries[o]).group(1).split(",")}
    assert len(ports) == 7
    assert ports.isdisjoint(_readme_ports()), ports & _readme_ports()


@pytest.mark.parametrize("option", PORT_OPTIONS)
def test_up_refuses_a_taken_port_before_starting_anything(option):
    """A server already answering /health on an address:port `up` needs makes it stop at once, never print `API=`
    (--ray-port is checked on every address: Ray's GCS listens on all of them)."""
    state = _state()
    address = _module().addresses("127.0.1.10")[OPTION_PART[option]]
    with _health_server(instance_id="someone-else", host=address) as taken:
        ports = _free_ports()
        ports[option] = f"{taken},{free_port()}" if option == "--serve-ports" else str(taken)
        args = [a for pair in ports.items() for a in pair]
        started = time.monotonic()
        up = _run("--state", str(state), "up", *args, "--address-base", "127.0.1.10")
    assert up.returncode == 1, up
    on = "some address of this machine" if option == "--ray-port" else address
    assert f"port {taken} ({option}) is taken on {on}" in up.stderr, up.stderr
    assert "API=" not in up.stdout
    assert not state.exists() and marked_processes(state) == []  # nothing made, nothing started
    assert time.monotonic() - started < 30


def test_up_refuses_a_port_given_twice():
    state, ports = _state(), _free_ports()
    ports["--mlflow-port"] = ports["--api-port"]
    up = _run("--state", str(state), "up", *[a for pair in ports.items() for a in pair])
    assert up.returncode == 1
    assert f"port {ports['--api-port']} is given twice (--api-port and --mlflow-port)" in up.stderr, up.stderr
    assert not state.exists()


def test_up_and_down_leave_a_state_dir_they_did_not_make_alone():
    state = _state()
    state.mkdir()
    try:
        (state / "notes.txt").write_text("mine")
        up = _run("--state", str(state), "up", *[a for pair in _free_ports().items() for a in pair])
        assert up.returncode == 1 and "files `up` did not make" in up.stderr, up.stderr
        down = _run("--state", str(state), "down")
        assert down.returncode == 1 and "was not made by `up`" in down.stderr, down.stderr
        assert sorted(p.name for p in state.iterdir()) == ["notes.txt"]
        assert (state / "notes.txt").read_text() == "mine"
    finally:
        (state / "notes.txt").unlink(missing_ok=True)
        state.rmdir()


def test_up_refuses_a_database_it_did_not_make_and_down_leaves_it():
    state, prefix = _state(), f"seedcore_lc_{uuid.uuid4().hex[:10]}"
    admin = create_engine(make_url(postgres_base_url()).set(drivername="postgresql+psycopg"),
                          isolation_level="AUTOCOMMIT")

    def existing() -> list[str]:
        with admin.connect() as connection:
            return sorted(connection.execute(text("SELECT datname FROM pg_database WHERE datname LIKE :p"),
                                             {"p": f"{prefix}%"}).scalars())

    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{prefix}_app"')  # someone else's
        up = _run("--state", str(state), "up", *[a for pair in _free_ports().items() for a in pair],
                  "--pg-url", postgres_base_url(), "--db-prefix", prefix)
        assert up.returncode == 1
        assert f"database {prefix}_app exists already" in up.stderr, up.stderr
        assert marked_processes(state) == []
        assert existing() == [f"{prefix}_app", f"{prefix}_mlflow"]  # up made only the first one
        down = _run("--state", str(state), "down")
        assert down.returncode == 0, down.stderr
        assert existing() == [f"{prefix}_app"] and not state.exists()  # down dropped what up made, only that
    finally:
        with admin.connect() as connection:
            for suffix in ("app", "mlflow"):
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{prefix}_{suffix}" WITH (FORCE)')
        admin.dispose()
        if state.exists():
            _run("--state", str(state), "down")


def test_a_health_answer_without_this_clusters_instance_id_is_refused(tmp_path):
    module = _module()
    (tmp_path / "logs").mkdir()
    deadline = time.monotonic() + 30
    with _health_server(instance_id="someone-else") as port:
        url = f"http://127.0.0.1:{port}/health"
        with pytest.raises(RuntimeError, match=f"another server answers at {re.escape(url)}"):
            module._wait(url, deadline, module.API, tmp_path, check=module._echoes("ours"))
    with _health_server(instance_id="ours") as port:
        body = module._wait(f"http://127.0.0.1:{port}/health", deadline, module.API, tmp_path,
                            check=module._echoes("ours"))
        assert json.loads(body)["instance_id"] == "ours"


def test_health_echoes_the_instance_id(migrated_settings):
    for instance_id in ("3f9c2a7d1e5b8c40", None):
        app = create_app(migrated_settings.replace(instance_id=instance_id))
        try:
            assert app.test_client().get("/health").get_json()["instance_id"] == instance_id
        finally:
            services_of(app).stop()


def test_the_free_port_probe_sees_a_plain_listener_where_the_part_would_listen():
    """A listener that is not HTTP at all (e.g. a Ray GCS) on the head's address counts as taken. The same port
    on another loopback address is taken for --ray-port (Ray's GCS listens on every address, and would fail to
    start) but free for --dashboard-port (the dashboard listens on the head's address only)."""
    module = _module()
    head = module.addresses("127.0.1.10")["ray-head"]
    with socket.socket() as listener, socket.socket() as elsewhere:
        listener.bind((head, 0))
        listener.listen()
        port = listener.getsockname()[1]
        args = module._parser().parse_args(["up", *[a for pair in _free_ports().items() for a in pair],
                                            "--ray-port", str(port), "--address-base", "127.0.1.10"])
        args.addresses = module.addresses(args.address_base)
        assert module._taken_ports(args) == [
            f"port {port} (--ray-port) is taken on some address of this machine (Address already in use): free it "
            f"or choose another with --ray-port"]
        elsewhere.bind(("127.0.0.1", 0))
        elsewhere.listen()
        args.ray_port = elsewhere.getsockname()[1]
        assert module._taken_ports(args) == [
            f"port {args.ray_port} (--ray-port) is taken on some address of this machine (Address already in use): "
            f"free it or choose another with --ray-port"]
        args.ray_port, args.dashboard_port = free_port(), elsewhere.getsockname()[1]
        assert module._taken_ports(args) == []
    assert module._taken_ports(args) == []


def test_a_ray_node_gets_ports_drawn_at_each_start_free_on_every_address(tmp_path):
    """Ray's raylet and agents listen on every address: their ports are drawn when the node starts (and again
    when it starts after giving up, or by `start`), not once at `up`, so one a busy machine took since is never
    given again (a raylet given a port a listener on 127.0.0.1 holds dies at once, and its node gives up)."""
    module = _module()
    module._fresh_state(tmp_path, "ours", module.addresses("127.0.1.10"))
    command = module._ray_start(tmp_path / "ray-head", 1, "ours", "127.0.1.13",
                                head=argparse.Namespace(ray_port=free_port(), dashboard_port=free_port()))
    assert [command[command.index(o) + 1] for o in module.RAY_NODE_PORTS + module.RAY_HEAD_PORTS] == \
        ["0"] * 7  # placeholders in the spec kept for `start`
    printer = [sys.executable, "-c", "import sys; print(' '.join(sys.argv[1:]))",
               *command[command.index("--dashboard-agent-listen-port"):]]
    drawn = []
    for _ in range(2):
        module._launch(tmp_path, module.HEAD, {"command": printer, "env": {}, "user": None})
        pid = int((tmp_path / "pids" / f"{module.HEAD}.pid").read_text())
        deadline = time.monotonic() + 30
        while len((tmp_path / "logs" / f"{module.HEAD}.log").read_text().splitlines()) < len(drawn) + 1:
            assert time.monotonic() < deadline, f"pid {pid} printed nothing"
            time.sleep(0.05)
        words = (tmp_path / "logs" / f"{module.HEAD}.log").read_text().splitlines()[-1].split()
        drawn.append([int(words[words.index(o) + 1]) for o in module.RAY_NODE_PORTS + module.RAY_HEAD_PORTS])
    for ports in drawn:
        assert len(set(ports)) == 7 and 0 not in ports
        for port in ports:
            with socket.socket() as probe:
                probe.bind(("0.0.0.0", port))  # free on every address, not only on the node's
    assert drawn[0] != drawn[1]


def test_a_node_whose_raylet_dies_gives_up_at_once_and_says_so(tmp_path):
    """A raylet that cannot listen (its port is a listener's on 127.0.0.1 while the node is on another loopback
    address) exits at once: the node's start says so instead of waiting out its 2 minutes for the GCS to list it,
    and leaves no Ray process behind."""
    module = _module()
    temp_dir = Path(f"/tmp/seedcore-lc-{uuid.uuid4().hex[:8]}")  # short: Ray's sockets live under it
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        command = [sys.executable, "-c", module.PATIENT_RAY_START, "start", "--block", "--head",
                   "--disable-usage-stats", "--include-dashboard", "false", "--num-cpus", "1",
                   "--node-ip-address", "127.0.1.13", "--port", str(free_port()), "--temp-dir", str(temp_dir),
                   "--node-manager-port", str(held.getsockname()[1])]
        try:
            started = subprocess.run(command, capture_output=True, text=True, timeout=110)
            leftovers = [p for p in psutil.process_iter(["cmdline"])
                         if str(temp_dir) in " ".join(p.info["cmdline"] or ())]
        finally:
            shutil.rmtree(temp_dir, ignore_errors=True)
    assert started.returncode != 0
    assert module.RAYLET_EXITED in started.stderr, started.stderr[-3000:]
    assert leftovers == []


def test_a_node_started_again_is_waited_for_while_the_killed_one_is_still_listed_alive(tmp_path):
    """A node just killed stays listed as alive by the head for a while: `start` of it waits until the head
    lists a node that was not there before, not only the count of live nodes (which the dead one still made)."""
    module = _module()
    module._fresh_state(tmp_path, "ours", module.addresses("127.0.1.10"))
    joined, served = threading.Event(), []

    def node(node_id: str) -> dict:
        return {"raylet": {"nodeId": node_id, "state": "ALIVE", "labels": {module.INSTANCE_LABEL: "ours"}}}

    def head():
        nodes = [node("head"), node("killed")] + ([node("started")] if joined.is_set() else [])
        served.append([n["raylet"]["nodeId"] for n in nodes])
        return {"data": {"summary": nodes}}

    def spawn():
        module._launch(tmp_path, module.NODE2, {"command": [sys.executable, "-c", "import time; time.sleep(30)"],
                                                "env": {}, "user": None})
        threading.Timer(1.0, joined.set).start()  # the new node registers a moment after its start

    try:
        with _json_server(head) as port:
            module._start_ray_node(tmp_path, module.NODE2, spawn, f"http://127.0.0.1:{port}", "token", "ours", 2,
                                   time.monotonic() + 30)
        assert served[-1] == ["head", "killed", "started"], served
    finally:
        module._stop_all(tmp_path)


def test_a_part_that_ended_as_a_child_of_this_process_is_reaped_when_stopped(tmp_path):
    """A part `up` started and then stops (a Ray node started again) ends as a zombie of `up`: stopping it reaps
    it, so its pid is free (PostgreSQL refuses to start while the pid in its lock file exists) and the stop does
    not wait out its grace period for it; a zombie is not a running part."""
    module = _module()
    module._fresh_state(tmp_path, "ours", module.addresses("127.0.1.10"))
    module._launch(tmp_path, module.NODE2, {"command": [sys.executable, "-c", "pass"], "env": {}, "user": None})
    proc = Path(f"/proc/{(tmp_path / 'pids' / f'{module.NODE2}.pid').read_text()}")
    deadline = time.monotonic() + 30
    while module._live(proc):
        assert time.monotonic() < deadline, "the part never ended"
        time.sleep(0.05)
    assert proc.exists() and module._running_parts(tmp_path) == []  # a zombie, not running
    module._stop_part(tmp_path, module.NODE2)
    assert not proc.exists()


def test_every_service_gets_its_own_loopback_address_and_the_base_is_checked():
    module = _module()
    where = module.addresses("127.0.1.10")
    assert where == {"postgres": "127.0.1.11", "mlflow": "127.0.1.12", "ray-head": "127.0.1.13",
                     "ray-node2": "127.0.1.14", "api": "127.0.1.15", "serve-1": "127.0.1.16", "serve-2": "127.0.1.17"}
    for bad in ("10.0.0.1", "127.0.1.250", "localhost", "127.0.1"):
        up = _run("up", "--address-base", bad)
        assert up.returncode == 2 and "--address-base" in up.stderr, up.stderr
    source = (ROOT / "scripts" / "local_cluster.py").read_text()
    assert "127.0.0.1" not in source and "localhost" not in source  # every URL from the configured addresses


def test_the_drill_and_a_partition_need_a_cluster_that_is_up():
    state = _state()
    drill = _run("--state", str(state), "drill", "--short")
    assert drill.returncode == 1 and "the drill needs every part running" in drill.stderr, drill.stderr
    cut = _run("--state", str(state), "partition", "ray-node2", "ray-head")
    assert cut.returncode == 1 and f"no cluster in {state}" in cut.stderr, cut.stderr
    same = _run("--state", str(state), "partition", "api", "api")
    assert same.returncode == 2 and "two different parts" in same.stderr
    assert not state.exists()
