"""`scripts/local-cluster up|down|status|stop PART|start PART|partition A B|heal`: the distributed layout from
real processes on one machine, each service on a loopback address of its own.

Every service listens on its own address in 127.0.0.0/8 (by default 127.0.1.11 to 127.0.1.17: PostgreSQL,
MLflow's tracking server, the Ray head, Ray node 2, the API, two serving replicas) and every URL is built
from those addresses, so an address mix-up shows as a failure. Each service runs under a group id of its
own, which is how `partition A B` tells their packets apart: it drops, in an nftables table of this
cluster's own on lo, what A sends to B's address and what B sends to A's; `heal` (and `down`) remove the table.

Every process started here carries LOCAL_CLUSTER_STATE=<state dir> (and LOCAL_CLUSTER_PART=<part>) in
its environment, inherited by everything it spawns (Ray's workers too), so `down` and `stop` find
and end exactly the processes this script started, and nothing else. `up` refuses a taken port before
it starts anything, and accepts an answer only from its own processes: each `up` draws an instance id
that the API and the replicas echo in `GET /health`, the Ray nodes carry as a label, and MLflow's
server shows as a tag it reads from the database `up` made. `down` stops the processes, drops the two
databases and removes the state dir.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MARK, PART = "LOCAL_CLUSTER_STATE", "LOCAL_CLUSTER_PART"
HEAD, NODE2, MLFLOW, API, PG = "ray-head", "ray-node2", "mlflow", "api", "postgres"
SERVES = ("serve-1", "serve-2")
HOSTED = (PG, MLFLOW, HEAD, NODE2, API, *SERVES)  # in address order: the n-th takes the base address + n
STOP_ORDER = (*SERVES, API, NODE2, HEAD, MLFLOW, PG)
# `ray start`, but a node waits up to 2 minutes (not 30 s) for the GCS to list it: on a busy machine the GCS
# answers slowly and Ray would give the node up although it comes up fine. It stops waiting at once when its
# raylet has exited (e.g. a port taken): the node gives up, and `up` starts it again on fresh ports.
RAYLET_EXITED = "the node's raylet exited while the node started (its log: logs/raylet.out in the node's session)"
PATIENT_RAY_START = f"""
import sys, time
import psutil
import ray._private.services as services
from ray.scripts.scripts import main

_get_node = services.get_node

class RayletExited(Exception):  # not a RuntimeError, which Ray's own wait would catch and retry at once
    pass

def raylet_alive():
    return any(p.name() == "raylet" and p.status() != psutil.STATUS_ZOMBIE for p in psutil.Process().children())

def get_node(*args, **kwargs):
    deadline = time.monotonic() + 120
    while True:
        try:
            return _get_node(*args, **kwargs)
        except RuntimeError:
            if not raylet_alive():
                raise RayletExited({RAYLET_EXITED!r}) from None
            if time.monotonic() > deadline:
                raise
            time.sleep(1)

services.get_node = get_node
sys.argv[0] = "ray"
sys.exit(main())
"""
MAX_STATE_PATH = 34  # + "/ray-node2/session_<date>_<time>_<pid>/sockets/plasma_store" stays within 107 bytes
CLUSTER_FILE = "cluster.json"  # in the state dir: instance id, the admin URL and the databases `up` made
INSTANCE_TAG = "seedcore.local_cluster.instance"  # on MLflow's Default experiment
INSTANCE_LABEL = "seedcore-instance"  # on each Ray node
# The ports a Ray node listens on besides --ray-port and --dashboard-port: drawn afresh at each start of the node
# (a node started again after it gave up, or by `start`, never reuses ones a busy machine may have taken since),
# each free on every address: the GCS, the raylet and the agents listen on 0.0.0.0 (or on the loopback one too)
# whatever --node-ip-address says, so a port free on the node's own address only may be a listener's elsewhere.
RAY_NODE_PORTS = ("--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--metrics-export-port",
                  "--runtime-env-agent-port", "--node-manager-port", "--object-manager-port")
RAY_HEAD_PORTS = ("--ray-client-server-port",)
EVERY_ADDRESS = "0.0.0.0"
GID_SPAN = (1 << 20, 1 << 30)  # each service's group id: drawn per cluster from here (no user has one so high)
NFT = "nft"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.state = Path(args.state).resolve()
    return args.handler(args) or 0


def _parser() -> argparse.ArgumentParser:
    """Every option's default is printed by --help; the port defaults avoid every port the README suggests
    (`scripts/up` on 8000/5000, a second one on 8100/5100, Ray's dashboard from 8265, docker compose)."""
    env = os.environ.get
    formatter = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(prog="local-cluster", description=__doc__, formatter_class=formatter)
    parser.add_argument("--state", default=env("LOCAL_CLUSTER_STATE_DIR", "/tmp/seedcore-local-cluster"),
                        help="pid files, logs, data dirs (LOCAL_CLUSTER_STATE_DIR)")
    sub = parser.add_subparsers(required=True, metavar="command")
    up = sub.add_parser("up", help="start everything; print NAME=URL lines once all answer", formatter_class=formatter)
    up.add_argument("--address-base", type=_address_base, default=env("LOCAL_CLUSTER_ADDRESS_BASE", "127.0.1.10"),
                    help=f"a loopback address; the services take the next {len(HOSTED)}, in this order: "
                         f"{', '.join(HOSTED)} (LOCAL_CLUSTER_ADDRESS_BASE)")
    up.add_argument("--api-port", type=_port, default=env("LOCAL_CLUSTER_API_PORT", "8400"),
                    help="the API (LOCAL_CLUSTER_API_PORT)")
    up.add_argument("--serve-ports", type=_serve_ports, default=env("LOCAL_CLUSTER_SERVE_PORTS", "8401,8402"),
                    help="the two serving replicas (LOCAL_CLUSTER_SERVE_PORTS)")
    up.add_argument("--mlflow-port", type=_port, default=env("LOCAL_CLUSTER_MLFLOW_PORT", "5400"),
                    help="the MLflow tracking server (LOCAL_CLUSTER_MLFLOW_PORT)")
    up.add_argument("--ray-port", type=_port, default=env("LOCAL_CLUSTER_RAY_PORT", "6400"),
                    help="the Ray head's GCS (LOCAL_CLUSTER_RAY_PORT)")
    up.add_argument("--dashboard-port", type=_port, default=env("LOCAL_CLUSTER_DASHBOARD_PORT", "8403"),
                    help="the Ray dashboard (LOCAL_CLUSTER_DASHBOARD_PORT)")
    up.add_argument("--pg-port", type=_port, default=env("LOCAL_CLUSTER_PG_PORT", "5440"),
                    help="the cluster's own PostgreSQL server, when no --pg-url is given (LOCAL_CLUSTER_PG_PORT)")
    up.add_argument("--head-cpus", type=int, default=int(env("LOCAL_CLUSTER_HEAD_CPUS", 1)),
                    help="CPUs of the Ray head (LOCAL_CLUSTER_HEAD_CPUS)")
    up.add_argument("--node2-cpus", type=int, default=int(env("LOCAL_CLUSTER_NODE2_CPUS", 1)),
                    help="CPUs of the second Ray node (LOCAL_CLUSTER_NODE2_CPUS)")
    up.add_argument("--poll-interval", type=float, default=float(env("LOCAL_CLUSTER_POLL_S", 2.0)),
                    help="seconds between the serving replicas' checks of the production alias (LOCAL_CLUSTER_POLL_S)")
    up.add_argument("--pg-url", default=env("LOCAL_CLUSTER_PG_URL"),
                    help="PostgreSQL URL of a role that may create databases on a server of its own; None: the "
                         "cluster runs a PostgreSQL server of its own on its address (LOCAL_CLUSTER_PG_URL)")
    up.add_argument("--db-prefix", type=_db_prefix, default=env("LOCAL_CLUSTER_DB_PREFIX", "seedcore_cluster"),
                    help="the databases are <prefix>_mlflow and <prefix>_app (LOCAL_CLUSTER_DB_PREFIX)")
    up.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for everything to answer")
    up.set_defaults(handler=_up)
    sub.add_parser("down", help="stop every process `up` started, drop its databases, remove the state dir"
                   ).set_defaults(handler=_down)
    sub.add_parser("status", help="which parts run; the endpoints").set_defaults(handler=_status)
    stop = sub.add_parser("stop", help="stop one part, e.g. ray-node2 (to see a node fail)")
    stop.add_argument("part", choices=STOP_ORDER)
    stop.add_argument("--kill", action="store_true", help="SIGKILL at once, as a machine that dies")
    stop.set_defaults(handler=_stop)
    start = sub.add_parser("start", help="start a stopped part again, as `up` started it (a restart), and wait "
                                         "until it answers (a Ray node: until the head lists it)")
    start.add_argument("part", choices=STOP_ORDER)
    start.add_argument("--no-wait", action="store_true", help="return once the process is started")
    start.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for it to answer")
    start.set_defaults(handler=_start)
    partition = sub.add_parser("partition", help="drop all traffic between two parts' addresses (nftables on lo)")
    partition.add_argument("a", choices=HOSTED)
    partition.add_argument("b", choices=HOSTED)
    partition.set_defaults(handler=_partition)
    sub.add_parser("heal", help="end every partition (remove the cluster's nftables table)").set_defaults(
        handler=_heal)
    drill = sub.add_parser("drill", help="each fault against a running sweep of the cluster that is up; a table",
                           formatter_class=formatter)
    drill.add_argument("--short", action="store_true", help="one round of each fault, 4 trials a sweep (for CI)")
    drill.add_argument("--rounds", type=int, choices=range(1, 21), default=5, metavar="1-20",
                       help="rounds of each fault (6 trials a sweep)")
    drill.set_defaults(handler=_drill)
    return parser


def _port(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (1-65535)")
    return port


def _serve_ports(text: str) -> list[int]:
    ports = [_port(p) for p in text.split(",") if p.strip()]
    if len(ports) != len(SERVES):
        raise argparse.ArgumentTypeError(f"needs {len(SERVES)} ports, got {text!r}")
    return ports


def _address_base(text: str) -> str:
    """A loopback IPv4 address with room for one address per service after it."""
    import ipaddress

    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IPv4 address: {text!r}") from None
    if not address.is_loopback or not 1 <= address.packed[3] <= 254 - len(HOSTED):
        raise argparse.ArgumentTypeError(f"{text} and the {len(HOSTED)} addresses after it must be in 127.0.0.0/8, "
                                         f"in one /24, none ending in .0 or .255")
    return str(address)


def addresses(base: str) -> dict[str, str]:
    """{part: its address}: the services in HOSTED order on the addresses after `base`."""
    import ipaddress

    first = ipaddress.IPv4Address(base)
    return {part: str(first + i) for i, part in enumerate(HOSTED, start=1)}


def _db_prefix(text: str) -> str:
    if not (text.replace("_", "").isalnum() and text.isascii() and len(text) <= 50):
        raise argparse.ArgumentTypeError(f"letters, digits and _ only (at most 50): {text!r}")
    return text


def log(message: str) -> None:
    print(f"local-cluster: {message}", file=sys.stderr, flush=True)


# -- up -------------------------------------------------------------------------------------------
def _up(args) -> int:
    if len(str(args.state)) > MAX_STATE_PATH:
        log(f"--state {args.state} is too long: Ray's unix sockets under it may not exceed 107 bytes "
            f"(keep it to {MAX_STATE_PATH} characters)")
        return 2
    if _running_parts(args.state):
        log(f"already running in {args.state} ({', '.join(_running_parts(args.state))}); run `down` first")
        return 1
    args.addresses = addresses(args.address_base)
    taken = _taken_ports(args)
    if taken:
        log("; ".join(taken))
        return 1
    if args.state.exists() and any(args.state.iterdir()):
        what = "a cluster's leftovers: run `down` first" if (args.state / CLUSTER_FILE).exists() else \
            "files `up` did not make: choose another --state"
        log(f"--state {args.state} is not empty ({what})")
        return 1
    from seedcore.runtime.observability import telemetry_off

    telemetry_off()  # here and in every process `up` starts
    args.instance_id = secrets.token_hex(8)
    _fresh_state(args.state, args.instance_id, args.addresses)
    try:
        endpoints = _start_all(args)
    except Exception as exc:  # anything that keeps the layout from answering: stop what started, say why
        log(f"up failed: {exc}")
        _stop_all(args.state)
        log(f"logs stay in {args.state / 'logs'}; `down` removes them and the databases")
        return 1
    lines = [f"{name}={url}" for name, url in endpoints.items()]
    (args.state / "endpoints.env").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    return 0


def _taken_ports(args) -> list[str]:
    """Why each address:port `up` needs cannot be ours (given twice, or something listens on it)."""
    where = args.addresses
    wanted = [("--api-port", where[API], args.api_port),
              *(("--serve-ports", where[part], p) for part, p in zip(SERVES, args.serve_ports)),
              ("--mlflow-port", where[MLFLOW], args.mlflow_port),
              ("--ray-port", EVERY_ADDRESS, args.ray_port),  # the GCS listens on every address
              ("--dashboard-port", where[HEAD], args.dashboard_port)]
    if not args.pg_url:
        wanted.append(("--pg-port", where[PG], args.pg_port))
    problems, seen = [], {}
    for option, address, port in wanted:
        if port in seen:  # the same port on two addresses would work, but is a mistake more often than not
            problems.append(f"port {port} is given twice ({seen[port]} and {option})")
            continue
        seen[port] = option
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a listener still conflicts
            try:
                probe.bind((address, port))
            except OSError as exc:
                on = "some address of this machine" if address == EVERY_ADDRESS else address
                problems.append(f"port {port} ({option}) is taken on {on} ({exc.strerror}): free it or "
                                f"choose another with {option}")
    return problems


def _fresh_state(state: Path, instance: str, where: dict[str, str]) -> None:
    """The state dir, marked as made by `up` with the cluster's file (`down` removes only a marked dir): the
    instance id, each service's address and group id."""
    for sub in ("pids", "logs", "parts"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    first = secrets.randbelow((GID_SPAN[1] - GID_SPAN[0]) // 16) * 16 + GID_SPAN[0]
    _write_private(state / CLUSTER_FILE, json.dumps({
        "instance_id": instance, "addresses": where,
        "gids": {part: first + i for i, part in enumerate(HOSTED)}, "partitions": []}))


def cluster_info(state: Path) -> dict:
    return json.loads((state / CLUSTER_FILE).read_text())


def _update_cluster(state: Path, **fields) -> None:
    _write_private(state / CLUSTER_FILE, json.dumps({**cluster_info(state), **fields}))


def _start_all(args) -> dict[str, str]:
    """PostgreSQL, then Ray one node at a time (a Ray node gives up after 30 s when the machine is busy), then
    the rest. Every URL is made of the addresses `up` gave the services."""
    from seedcore.server.mlflow_ui import MLFLOW_SERVER_ENV

    state, deadline, where = args.state, time.monotonic() + args.timeout, args.addresses
    instance = args.instance_id
    token = secrets.token_hex(32)
    _write_private(state / "ray_token", token)
    admin_url = args.pg_url or _start_postgres(args, deadline)
    mlflow_db, app_db = _databases(args, admin_url)
    # A busy machine starts a node's dashboard agent slowly; Ray's raylet would give up on it and exit.
    ray_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_agent_register_timeout_ms": "300000"}
    dashboard = f"http://{where[HEAD]}:{args.dashboard_port}"
    head_command = _ray_start(state / HEAD, args.head_cpus, instance, where[HEAD], head=args)
    _start_ray_node(state, HEAD, lambda: _spawn(state, HEAD, head_command, ray_env),
                    dashboard, token, instance, 1, deadline)
    _start_ray_node(state, NODE2, lambda: _start_node2(args, ray_env), dashboard, token, instance, 2, deadline)
    mlflow_url = f"http://{where[MLFLOW]}:{args.mlflow_port}"
    _spawn(state, MLFLOW, [str(BIN / "mlflow"), "server", "--host", where[MLFLOW], "--port", str(args.mlflow_port),
                           "--backend-store-uri", mlflow_db, "--serve-artifacts",
                           "--artifacts-destination", str(state / "mlartifacts"), "--workers", "1",
                           "--allowed-hosts", f"{where[MLFLOW]}:{args.mlflow_port}"],
           MLFLOW_SERVER_ENV)  # as the platform starts MLflow: none of its GenAI job consumers (8 processes, unused)
    common = {"SEEDCORE_TRACKING_URI": mlflow_url, "SEEDCORE_DATABASE_URL": app_db,
              "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
              "SEEDCORE_POLL_INTERVAL_S": str(args.poll_interval), "SEEDCORE_INSTANCE_ID": instance}
    serve_urls = [f"http://{where[part]}:{port}" for part, port in zip(SERVES, args.serve_ports)]
    api_env = {**common, **ray_env, "SEEDCORE_HOST": where[API], "SEEDCORE_PORT": str(args.api_port),
               "SEEDCORE_REPLICAS": ",".join(serve_urls),
               "SEEDCORE_DATA_DIR": str(state / "api"), "SEEDCORE_MLRUNS_DIR": str(state / "api" / "mlruns"),
               "SEEDCORE_RAY_ADDRESS": f"{where[HEAD]}:{args.ray_port}"}
    _spawn(state, API, [str(BIN / "seedcore"), "up", "--no-mlflow-ui"], api_env)
    endpoints = {"API": f"http://{where[API]}:{args.api_port}", "MLFLOW": mlflow_url}
    for i, (part, port) in enumerate(zip(SERVES, args.serve_ports), start=1):
        _spawn(state, part, [str(BIN / "seedcore"), "serve", "--workers", "1"],
               {**common, "SEEDCORE_HOST": where[part], "SEEDCORE_PORT": str(port),
                "SEEDCORE_DATA_DIR": str(state / part), "SEEDCORE_MLRUNS_DIR": str(state / part / "mlruns")})
        endpoints[f"SERVE_{i}"] = serve_urls[i - 1]
    _wait(f"{mlflow_url}/health", deadline, MLFLOW, state)
    _check_mlflow_is_ours(mlflow_url, mlflow_db, instance)
    for name, part in (("API", API), ("SERVE_1", SERVES[0]), ("SERVE_2", SERVES[1])):
        _wait(f"{endpoints[name]}/health", deadline, part, state, check=_echoes(instance))
    endpoints["RAY_DASHBOARD"] = dashboard
    endpoints["POSTGRES"] = f"{where[PG]}:{args.pg_port}" if not args.pg_url else "external"
    return endpoints


def _start_postgres(args, deadline: float) -> str:
    """A PostgreSQL server of the cluster's own on its address (data and socket in the state dir, run as the
    `postgres` user when we are root): its admin URL, with a password drawn here."""
    import pwd

    state, address = args.state, args.addresses[PG]
    home = state / PG
    home.mkdir()
    user = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        owner = pwd.getpwnam("postgres")
        os.chmod(state, 0o711)  # the postgres user may pass through to its own dir, and list nothing
        os.chown(home, owner.pw_uid, owner.pw_gid)
        user = "postgres"
    password = secrets.token_hex(16)
    pwfile = home / "pwfile"
    _write_private(pwfile, password)
    if user:
        os.chown(pwfile, pwd.getpwnam(user).pw_uid, -1)
    try:
        subprocess.run([_pg_binary("initdb"), "-D", str(home / "data"), "-U", "postgres", "--pwfile", str(pwfile),
                        "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8", "--no-instructions"],
                       user=user, cwd=home, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"initdb failed: {exc.stderr[-2000:]}") from None
    finally:
        pwfile.unlink()
    _spawn(state, PG, [_pg_binary("postgres"), "-D", str(home / "data"), "-p", str(args.pg_port),
                       "-c", f"listen_addresses={address}", "-c", f"unix_socket_directories={home}",
                       "-c", "fsync=off", "-c", "full_page_writes=off"], user=user)
    admin_url = f"postgresql+psycopg://postgres:{password}@{address}:{args.pg_port}/postgres"
    _update_cluster(state, own_postgres=True, pg_url=admin_url)
    _wait_postgres(admin_url, deadline, state)
    return admin_url


def _pg_binary(name: str) -> str:
    """A PostgreSQL server program: on PATH, else the newest Debian install's."""
    found = shutil.which(name) or max(map(str, Path("/usr/lib/postgresql").glob(f"*/bin/{name}")), default=None,
                                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if not found:
        raise RuntimeError(f"no PostgreSQL `{name}` (install the Debian package postgresql, or give --pg-url)")
    return found


def _wait_postgres(url: str, deadline: float, state: Path) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    while True:
        try:
            psycopg.connect(dsn, connect_timeout=5).close()
            return
        except psycopg.OperationalError:
            if PG not in _running_parts(state) or time.monotonic() > deadline:
                tail = (state / "logs" / f"{PG}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"PostgreSQL did not answer; its log ends:\n{tail}") from None
            time.sleep(0.3)


def _echoes(instance: str):
    """A check of a `/health` body: it must carry this cluster's instance id, else another server answered."""
    def check(url: str, body: bytes) -> None:
        try:
            answered = json.loads(body).get("instance_id")
        except (ValueError, AttributeError):
            answered = None
        if answered != instance:
            raise RuntimeError(f"another server answers at {url} (instance_id {answered!r}, not this cluster's "
                               f"{instance!r}): its port was taken after `up` checked it")
    return check


def _check_mlflow_is_ours(url: str, db_url: str, instance: str) -> None:
    """Tag MLflow's Default experiment with the instance id in the database `up` made; the server at `url`
    must show that tag, else it is another MLflow server on another store."""
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=db_url).set_experiment_tag("0", INSTANCE_TAG, instance)
    with urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/get?experiment_id=0", timeout=30) as response:
        tags = {t["key"]: t["value"] for t in json.loads(response.read())["experiment"].get("tags", [])}
    if tags.get(INSTANCE_TAG) != instance:
        raise RuntimeError(f"another MLflow server answers at {url} (its store is not this cluster's database)")


def _start_ray_node(state: Path, part: str, spawn, dashboard: str, token: str, instance: str, count: int,
                    deadline: float, tries: int = 5) -> None:
    """Spawn a Ray node and wait until the head lists `count` live nodes of ours, one of them new (a node just
    killed stays listed as alive for a while); start it again if it gave up."""
    for attempt in range(tries):
        known = _live_nodes(_fetch(*_nodes_url(dashboard, token)), instance)  # none before the head answers
        spawn()
        try:
            _wait(f"{dashboard}/api/gcs_healthz", deadline, part, state)
            _wait_nodes(dashboard, token, instance, count, deadline, state, part, known)
            return
        except RuntimeError:
            if part in _running_parts(state) or attempt == tries - 1 or time.monotonic() > deadline:
                raise
            log(f"{part} gave up while starting (a busy machine); starting it again")
            _stop_part(state, part, kill=True)


def _ray_start(temp_dir: Path, cpus: int, instance: str, address: str, head=None) -> list[str]:
    """`ray start --block` for one node on its address: its own temp dir, CPUs and ports (two nodes share this
    host), labelled with the cluster's instance id."""
    command = [sys.executable, "-c", PATIENT_RAY_START, "start", "--block", "--disable-usage-stats", "--temp-dir",
               str(temp_dir), "--num-cpus", str(cpus), "--node-ip-address", address,
               "--labels", f"{INSTANCE_LABEL}={instance}", *_drawn(RAY_NODE_PORTS)]
    if head is None:
        return command
    return command + ["--head", "--port", str(head.ray_port), "--include-dashboard", "true",
                      "--dashboard-host", address, "--dashboard-port", str(head.dashboard_port),
                      *_drawn(RAY_HEAD_PORTS)]


def _drawn(options: tuple[str, ...]) -> list[str]:
    """Each option with a placeholder port: `_launch` draws the port at each start (RAY_NODE_PORTS)."""
    return [word for option in options for word in (option, "0")]


def _with_fresh_ports(command: list[str]) -> list[str]:
    """`command` with a port free on every address after each option of RAY_NODE_PORTS and RAY_HEAD_PORTS."""
    drawn = set(RAY_NODE_PORTS + RAY_HEAD_PORTS)
    return [str(_free_port()) if i and command[i - 1] in drawn else word for i, word in enumerate(command)]


def _start_node2(args, ray_env: dict) -> None:
    """The second node; as root in a private mount namespace where the state dir (the head's temp dir,
    the API's data dir, the MLflow artifacts) is an empty tmpfs, so relying on a shared disk fails."""
    state, where = args.state, args.addresses
    command = _ray_start(state / NODE2, args.node2_cpus, args.instance_id, where[NODE2]) + [
        "--address", f"{where[HEAD]}:{args.ray_port}"]
    if _can_hide_disk(state):
        script = ('mount -t tmpfs -o size=512m seedcore-node2 "$0" && mkdir -p "$0/ray-node2" && exec "$@"')
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(state), *command]
        (state / "node2-isolated").write_text("tmpfs over the state dir in a private mount namespace\n")
    else:
        log("cannot hide the disk (not root, no unshare, or no mount namespaces): ray-node2 shares this machine's "
            "disk; a shared-disk assumption goes unseen")
    _spawn(state, NODE2, command, ray_env)


def _can_hide_disk(state: Path) -> bool:
    """Whether this machine lets us mount a tmpfs in a private mount namespace (root, not a locked-down container)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "probe",
                            str(state)], capture_output=True)
    return probe.returncode == 0


def _databases(args, admin_url: str) -> tuple[str, str]:
    """Two new databases (MLflow's and ours) next to the admin URL's; their SQLAlchemy URLs. Each one made is
    recorded in the state dir at once, for `down` to drop; one that exists already is refused, not reused."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ProgrammingError

    base = make_url(admin_url).set(drivername="postgresql+psycopg")
    names = [f"{args.db_prefix}_{suffix}" for suffix in ("mlflow", "app")]
    made: list[str] = []
    with _admin(base) as connection:
        for name in names:
            try:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
            except ProgrammingError as exc:
                if getattr(exc.orig, "sqlstate", None) == "42P04":  # duplicate_database
                    raise RuntimeError(f"database {name} exists already (another cluster's, or left by an earlier "
                                       f"version): choose another --db-prefix or drop it") from None
                raise
            made.append(name)
            _update_cluster(args.state, pg_url=base.render_as_string(hide_password=False), databases=made)
    mlflow_db, app_db = (base.set(database=name).render_as_string(hide_password=False) for name in names)
    return mlflow_db, app_db


@contextmanager
def _admin(url):
    """An autocommit connection to the admin URL (CREATE and DROP DATABASE run outside transactions)."""
    from sqlalchemy import create_engine

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def _write_private(path: Path, text: str) -> None:
    """Write `text` readable by this user only (a token, a URL with a password)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _spawn(state: Path, part: str, command: list[str], env: dict | None = None, user: str | None = None) -> None:
    """Start a part and keep how (for `start` after `stop`): under its own group id, which `partition` matches."""
    spec = {"command": command, "env": env or {}, "user": user}
    _write_private(state / "parts" / f"{part}.json", json.dumps(spec))
    _launch(state, part, spec)


def _launch(state: Path, part: str, spec: dict) -> None:
    environment = {**os.environ, **spec["env"], MARK: str(state), PART: part}
    gid = cluster_info(state)["gids"].get(part) if os.geteuid() == 0 else None
    with open(state / "logs" / f"{part}.log", "ab") as out:
        process = subprocess.Popen(_with_fresh_ports(spec["command"]), stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, env=environment, cwd=state, start_new_session=True,
                                   user=spec.get("user"), group=gid, extra_groups=[] if gid is not None else None)
    (state / "pids" / f"{part}.pid").write_text(str(process.pid))


def _free_port() -> int:
    """A port no listener holds on any address now (see RAY_NODE_PORTS)."""
    with socket.socket() as s:
        s.bind((EVERY_ADDRESS, 0))
        return s.getsockname()[1]


def _wait(url: str, deadline: float, part: str, state: Path, headers: dict | None = None, check=None) -> bytes:
    """GET `url` until it answers 200 (and `check(url, body)` accepts the body, else it raises); fail with the
    part's log tail when its process died or time ran out."""
    while True:
        body = _fetch(url, headers)
        if body is not None:
            if check is not None:
                check(url, body)
            return body
        if part not in _running_parts(state) or time.monotonic() > deadline:
            tail = (state / "logs" / f"{part}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{part} did not answer at {url}; its log ends:\n{tail}")
        time.sleep(0.5)


def _wait_nodes(dashboard: str, token: str, instance: str, count: int, deadline: float, state: Path,
                part: str, known: set[str]) -> None:
    """Wait until the head lists `count` live nodes labelled with this cluster's instance id, at least one not
    in `known` (the dashboard's API needs the cluster's token)."""
    url, headers = _nodes_url(dashboard, token)
    while True:
        alive = _live_nodes(_wait(url, deadline, part, state, headers), instance)
        if len(alive) >= count and alive - known:
            return
        if part not in _running_parts(state) or time.monotonic() > deadline:
            tail = (state / "logs" / f"{part}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{part} did not join; its log ends:\n{tail}")
        time.sleep(0.5)


def _fetch(url: str, headers: dict | None = None) -> bytes | None:
    """The body of a 200 answer to GET `url`, or None when it does not answer so."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as response:
            return response.read()
    except (urllib.error.URLError, OSError):
        return None


def _nodes_url(dashboard: str, token: str) -> tuple[str, dict]:
    """The head's list of nodes, and the header its API needs (the cluster's token)."""
    return f"{dashboard}/nodes?view=summary", {"Authorization": f"Bearer {token}"}


def _live_nodes(body: bytes | None, instance: str) -> set[str]:
    """The ids of the live nodes of this cluster in the head's list of nodes (none when there is no list)."""
    summary = json.loads(body).get("data", {}).get("summary", []) if body else []
    raylets = [node.get("raylet") or {} for node in summary]
    return {r.get("nodeId") for r in raylets
            if r.get("labels", {}).get(INSTANCE_LABEL) == instance and r.get("state") == "ALIVE"}


# -- down, stop, status ---------------------------------------------------------------------------
def _down(args) -> int:
    """Stop every marked process, drop the databases `up` made, remove the state dir (only one `up` made)."""
    state = args.state
    if (state / CLUSTER_FILE).exists():
        _remove_table(cluster_info(state))
    left = _stop_all(state)
    if left:
        log(f"still running after SIGKILL: {left}; {state} stays")
        return 1
    if not state.exists():
        log(f"nothing to remove: {state} does not exist")
        return 0
    cluster = state / CLUSTER_FILE
    if not cluster.exists():
        log(f"{state} was not made by `up` (no {CLUSTER_FILE}); left as it is")
        return 1
    info = json.loads(cluster.read_text())
    databases = info.get("databases", [])
    if databases and not info.get("own_postgres"):  # the cluster's own server goes with the state dir
        try:
            with _admin(info["pg_url"]) as connection:
                for name in databases:
                    connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception as exc:  # PostgreSQL away: keep the state so that `down` can be run again
            log(f"could not drop the databases {', '.join(databases)}: {exc}; {state} stays")
            return 1
    shutil.rmtree(state)
    log(f"stopped; dropped the databases {', '.join(databases) or '(none made)'}; removed {state}")
    return 0


def _stop(args) -> int:
    _stop_part(args.state, args.part, kill=args.kill)
    return 0


def _start(args) -> int:
    """Start a stopped part again with the command and environment `up` gave it."""
    spec_file = args.state / "parts" / f"{args.part}.json"
    if not spec_file.exists():
        log(f"{args.part} was never started in {args.state}")
        return 1
    if args.part in _running_parts(args.state):
        log(f"{args.part} runs already")
        return 1
    spec = json.loads(spec_file.read_text())
    if args.no_wait:
        _launch(args.state, args.part, spec)
        return 0
    try:
        _start_and_wait(args.state, args.part, spec, time.monotonic() + args.timeout)
    except RuntimeError as exc:
        log(f"{args.part} started but is not ready: {exc}")
        return 1
    return 0


def _start_and_wait(state: Path, part: str, spec: dict, deadline: float) -> None:
    """Launch a part and wait as `up` waits for it: a Ray node until the head lists it (started again if it gave
    up on a busy machine), PostgreSQL until it takes connections, a server until its /health answers as ours."""
    info, endpoints = cluster_info(state), _endpoints(state)
    if part in (HEAD, NODE2):
        nodes = 1 + sum(p in _running_parts(state) for p in (HEAD, NODE2) if p != part)
        _start_ray_node(state, part, lambda: _launch(state, part, spec), endpoints["RAY_DASHBOARD"],
                        (state / "ray_token").read_text().strip(), info["instance_id"], nodes, deadline)
        return
    _launch(state, part, spec)
    if part == PG:
        _wait_postgres(info["pg_url"], deadline, state)
    elif part == MLFLOW:
        _wait(f"{endpoints['MLFLOW']}/health", deadline, part, state)
    else:
        name = "API" if part == API else f"SERVE_{SERVES.index(part) + 1}"
        _wait(f"{endpoints[name]}/health", deadline, part, state, check=_echoes(info["instance_id"]))


def _endpoints(state: Path) -> dict[str, str]:
    """The endpoints `up` wrote: {name: url}."""
    lines = (state / "endpoints.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def _drill(args) -> int:
    """Run the fault drill (scripts/local_cluster_drill.py) against the cluster in --state."""
    missing = sorted(set(STOP_ORDER) - set(_running_parts(args.state)))
    if missing:
        log(f"the drill needs every part running in {args.state}; not running: {', '.join(missing)} "
            f"(`up` first, or `start` them)")
        return 1
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # the drill lives beside this script
    import local_cluster_drill

    return local_cluster_drill.run(args, Path(__file__).resolve(), _endpoints(args.state),
                                   lambda: _start_stopped(args.state))


def _start_stopped(state: Path, timeout_s: float = 300.0) -> list[str]:
    """Start every part that is not running (in start order) and wait until each answers: the parts started."""
    started, deadline = [], time.monotonic() + timeout_s
    for part in reversed(STOP_ORDER):
        if part not in _running_parts(state):
            log(f"{part} is not running: starting it")
            _start_and_wait(state, part, json.loads((state / "parts" / f"{part}.json").read_text()), deadline)
            started.append(part)
    return started


# -- partitions -----------------------------------------------------------------------------------
def _partition(args) -> int:
    """Drop every packet part A sends to part B's address and B to A's (a new connection never opens, an open
    one stalls) in the cluster's own nftables table on lo. Matched by each part's group id, since clients on
    loopback all send from the same source address, whatever the address they listen on."""
    if args.a == args.b:
        log("a partition needs two different parts")
        return 2
    if not (args.state / CLUSTER_FILE).exists():
        log(f"no cluster in {args.state}")
        return 1
    info = cluster_info(args.state)
    nft = _ensure_nft()
    table, where, gids = _table(info), info["addresses"], info["gids"]
    rules = [f"table inet {table} {{", "  chain output {", "    type filter hook output priority 0; policy accept;",
             "  }", "}"]
    for src, dst in ((args.a, args.b), (args.b, args.a)):
        rules.append(f'add rule inet {table} output oifname "lo" meta skgid {gids[src]} ip daddr {where[dst]} '
                     f'counter drop comment "{src} -> {dst}"')
    subprocess.run([nft, "-f", "-"], input="\n".join(rules) + "\n", text=True, check=True, capture_output=True)
    pair = sorted((args.a, args.b))
    _update_cluster(args.state, partitions=sorted({*map(tuple, info.get("partitions", [])), tuple(pair)}))
    log(f"partitioned {args.a} ({where[args.a]}) from {args.b} ({where[args.b]})")
    return 0


def _heal(args) -> int:
    if not (args.state / CLUSTER_FILE).exists():
        log(f"no cluster in {args.state}")
        return 1
    healed = _remove_table(cluster_info(args.state))
    _update_cluster(args.state, partitions=[])
    log("healed every partition" if healed else "no partition to heal")
    return 0


def _table(info: dict) -> str:
    return f"seedcore_lc_{info['instance_id']}"


def _remove_table(info: dict) -> bool:
    """Delete the cluster's nftables table; False when there was none."""
    nft = shutil.which(NFT)
    if nft is None or "gids" not in info:
        return False
    listed = subprocess.run([nft, "list", "table", "inet", _table(info)], capture_output=True, text=True)
    if listed.returncode != 0:
        return False
    subprocess.run([nft, "delete", "table", "inet", _table(info)], check=True, capture_output=True)
    return True


def _ensure_nft() -> str:
    """nft, installed from Debian's nftables package when missing (root only)."""
    found = shutil.which(NFT)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit("local-cluster: partitions need nftables (`nft`) and root to install or use it")
    log("installing nftables from Debian packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "nftables"], env=env, check=True, stdout=subprocess.DEVNULL)
    return shutil.which(NFT) or "/usr/sbin/nft"


def _status(args) -> int:
    running = _running_parts(args.state)
    for part in reversed(STOP_ORDER):
        print(f"{part}: {'running' if part in running else 'stopped'}")
    if (args.state / "endpoints.env").exists():
        print("".join(f"{name}={url}\n" for name, url in _endpoints(args.state).items()), end="")
    if (args.state / CLUSTER_FILE).exists():
        info = cluster_info(args.state)
        for part, address in info.get("addresses", {}).items():
            print(f"address {part}={address}")
        for a, b in info.get("partitions", []):
            print(f"partition {a} {b}")
    return 0


def _stop_all(state: Path) -> list[int]:
    _stop_parts(state, STOP_ORDER)
    return _marked_pids(state)


def _stop_part(state: Path, part: str, kill: bool = False) -> None:
    _stop_parts(state, (part,), kill)


def _stop_parts(state: Path, parts, kill: bool = False, grace_s: float = 15.0) -> None:
    """SIGTERM (or SIGKILL) each part's process group and every process carrying its mark; SIGKILL leftovers.
    Then SIGKILL whatever is still in the sessions the parts were started in: Ray's agents, which overwrite their
    environment (and so the mark) when they rename themselves `ray::DashboardAgent`, may outlive their raylet,
    and one was seen ignoring SIGTERM. Only once the part's own processes are gone: PostgreSQL ends its
    backends itself, and a backend signalled beside its postmaster left a data dir the next start refused."""
    pid_files = [state / "pids" / f"{part}.pid" for part in parts]
    sessions = {int(f.read_text()) for f in pid_files if f.exists()}  # each part leads a session of its own

    def alive() -> list[int]:
        pids = [pid for part in parts for pid in _marked_pids(state, part)]
        for pid in sessions:
            _reap(pid)
            if Path(f"/proc/{pid}").exists():  # a zombie too: its pid is taken until reaped (PostgreSQL checks it)
                pids.append(pid)
        return pids

    for sig in ((signal.SIGKILL,) if kill else (signal.SIGTERM, signal.SIGKILL)):
        for pid in set(alive()):
            _signal(pid, sig)
        deadline = time.monotonic() + grace_s
        while alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        if not alive():
            break
    deadline = time.monotonic() + 5
    while (left := _in_sessions(sessions)) and time.monotonic() < deadline:
        for pid in left:
            _signal(pid, signal.SIGKILL)
        time.sleep(0.1)
    for f in pid_files:
        f.unlink(missing_ok=True)


def _reap(pid: int) -> None:
    """Reap `pid` if it is an ended child of this process (a part `up` started and stopped again): its pid is
    free then, and no stop waits out its grace for it."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child: its parent (or init) reaps it
        pass


def _signal(pid: int, sig: int) -> None:
    for send in (lambda: os.killpg(pid, sig), lambda: os.kill(pid, sig)):
        try:
            send()
        except (ProcessLookupError, PermissionError):
            pass


def _in_sessions(sessions: set[int]) -> list[int]:
    """Live processes (not zombies) in any of these sessions."""
    found = []
    for entry in Path("/proc").iterdir() if sessions else ():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z" and int(fields[3]) in sessions:
                found.append(int(entry.name))
    return found


def _running_parts(state: Path) -> list[str]:
    return sorted(_marked(state))


def _marked_pids(state: Path, part: str | None = None) -> list[int]:
    """Live processes whose environment carries this state dir's mark (and `part`'s, if given)."""
    marked = _marked(state)
    return [pid for name, pids in marked.items() if part in (None, name) for pid in pids]


def _marked(state: Path) -> dict[str, list[int]]:
    """One pass over /proc: {part: pids} of the live processes carrying this state dir's mark."""
    mark, prefix = f"{MARK}={state}".encode(), f"{PART}=".encode()
    found: dict[str, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if mark in environ and _live(entry):
            part = next((v[len(prefix):].decode() for v in environ if v.startswith(prefix)), "")
            found.setdefault(part, []).append(int(entry.name))
    return found


def _live(proc: Path) -> bool:
    """Whether /proc/<pid> is a process that has not ended: a zombie (ended, not yet reaped by its parent, e.g. a
    part `up` itself started and then stopped) is not."""
    try:
        return (proc / "stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False

if __name__ == "__main__":
    sys.exit(main())
