"""Ray: a local session by default, or attach to the cluster SEEDCORE_RAY_ADDRESS names.

Also what a sweep needs to know about the cluster: its nodes and their resources (a trial that fits
on no node is refused at once), where Tune keeps checkpoints, and the dashboard's address.
"""

from __future__ import annotations

import logging
import os
import threading

from seedcore.config import Settings
from seedcore.errors import ValidationError
from seedcore.runtime.logs import quiet_noise
from seedcore.runtime.observability import telemetry_off
from seedcore.runtime.ports import port_problem
from seedcore.tuning.retries import retry_only_lost_workers

log = logging.getLogger(__name__)
_LOCK = threading.Lock()
_STATE: dict = {"dashboard_url": None, "gcs_address": None, "one_sweep": False, "ending": None}

# Fewer moving parts per trial: our MLflow callback is the logger; Tune's own file loggers and
# its SIGINT handler stay off (Ctrl-C reaches our code, which closes the runs).
TUNE_ENV = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "1000",
    "RAY_DEDUP_LOGS": "1",
    # the experiment's state is saved every 2 s (not Tune's 10 s or more), so that a sweep resumed after its
    # driver died (seedcore.tuning.resume) knows nearly every trial the dead one started
    "TUNE_GLOBAL_CHECKPOINT_S": "2",
}
TAG_NODE = "seedcore.node"  # on each trial's run: the Ray node id it ran on
CLUSTER_TAG_PREFIX = "seedcore.cluster."  # on a sweep's parent run: the cluster's resources
# A local Ray prestarts a worker per CPU for its first driver. While Tune gave its trial actors a runtime_env, no
# trial could run in one and they only took CPU from a cold sweep (50 trials from the CLI, 6 runs each way
# alternating on 2 CPUs: median exit 23.4 s without them, 26.0 s with). Since plain_trial_workers, the first
# sweep's trials do run in them, for no gain worth keeping two idle ~200 MB processes in a server until its
# first sweep: 6 runs each way, median exit 19.1 s without, 18.6 s with, the same CPU-seconds.
NO_PRESTART = {"enable_worker_prestart": False, "prestart_worker_first_driver": False}
RAY_START_TRIES = 3  # a local Ray whose raylet did not register in Ray's fixed 30 s is started again
STARTUP_TIMEOUT = "timed out during startup"  # Ray's words for that


def ensure_ray(settings: Settings) -> bool:
    """Start (or attach to) Ray once per process; later sweeps reuse the same session. True when this call
    started or attached it (its caller may shut it down), False when it was running already.

    A local Ray offers every CPU of the machine (SEEDCORE_RAY_NUM_CPUS: fewer) and starts its dashboard on
    127.0.0.1 (SEEDCORE_RAY_DASHBOARD_PORT; 0 turns it off).
    Attaching to a cluster needs this machine to run a node of it (`ray start --address ...`), and
    RAY_AUTH_MODE=token with the cluster's RAY_AUTH_TOKEN when the cluster uses token authentication.
    """
    for key, value in TUNE_ENV.items():
        os.environ.setdefault(key, value)
    retry_only_lost_workers()
    plain_trial_workers()
    telemetry_off()
    quiet_noise()
    import ray

    with _LOCK:
        if ray.is_initialized():
            return False
        if settings.ray_address:
            context = ray.init(address=settings.ray_address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            _loopback_only()
            port = _dashboard_port(settings.ray_dashboard_port)
            # "local": always a Ray of our own, never one that another program started on this machine
            # (with no address, ray.init joins the newest `ray start` session it finds under /tmp/ray)
            context = _start_local(dict(address="local", num_cpus=settings.local_cpus,
                                        include_dashboard=port != 0,
                                        dashboard_host="127.0.0.1", dashboard_port=port or None,
                                        logging_level=logging.WARNING, log_to_driver=False, configure_logging=True,
                                        _system_config=NO_PRESTART))
        url = getattr(context, "dashboard_url", None)
        _STATE["dashboard_url"] = f"http://{url}" if url and "://" not in url else url or None
        _STATE["gcs_address"] = (getattr(context, "address_info", None) or {}).get("gcs_address")
        return True


def plain_trial_workers() -> None:
    """Trial actors without the runtime_env Tune gives them by default: PL_DISABLE_FORK=1, for PyTorch Lightning.
    Ray starts the worker of an actor with a runtime_env through a shim (a Python process that imports Ray, sets
    the variables, then execs the worker, which imports Ray again): about 0.6 CPU-seconds of every trial worker's
    start, for a variable XGBoost never reads. Variables Tune passes on from the driver's environment (cloud
    credentials, Ray Train's) still reach the trials, through the shim."""
    from ray.tune.execution import class_cache

    class_cache.DEFAULT_ENV_VARS.pop("PL_DISABLE_FORK", None)


def _start_local(kwargs: dict):
    """`ray.init(**kwargs)` of a local Ray, tried up to RAY_START_TRIES times. Ray gives its raylet a fixed 30 s
    to register (ray/_private/node.py); on a loaded machine (load average 8 on 2 CPUs, seen in a test run) it
    can take longer, and the first sweep of a server failed with "The current node timed out during startup".
    The processes a failed start left are killed before the next try."""
    import psutil
    import ray

    for attempt in range(1, RAY_START_TRIES + 1):
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        try:
            return ray.init(**kwargs)
        except Exception as exc:
            if STARTUP_TIMEOUT not in str(exc) or attempt == RAY_START_TRIES:
                raise
            log.warning("Ray did not start in time (try %d of %d); trying again", attempt, RAY_START_TRIES)
            left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and _is_ray(p)]
            for process in left:
                try:
                    process.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(left, timeout=5)


def _is_ray(process) -> bool:
    import psutil

    try:
        return "ray" in " ".join(process.cmdline())  # gcs_server, raylet and Ray's Python processes
    except psutil.Error:
        return False


def _dashboard_port(wanted: int | None) -> int | None:
    """The dashboard port to ask Ray for. A set port that is taken now (by anything: the port was free when
    it was picked, or another program holds it) gives way to Ray's own choice, 8265 or the next free port,
    said in the log: the dashboard is a viewer, and Ray refusing to start over it would fail the sweep."""
    if not wanted:
        return wanted
    taken = port_problem("127.0.0.1", wanted)
    if taken is None:
        return wanted
    log.warning("Ray dashboard port %s cannot be bound (%s); Ray picks another (SEEDCORE_RAY_DASHBOARD_PORT)",
                wanted, taken)
    return None


# A local Ray is one machine's: its GCS, raylet and worker ports listen on loopback only, never on every
# interface. Ray binds to its node address and turns 127.0.0.1 into the machine's outward address unless
# multi-node clustering is off: Ray's own switch, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which Ray reads at call
# time from its constants. Set there for this process only (not in os.environ, which `ray start` in a child
# process would inherit); a separate Ray CLI pointed at our session needs LOOPBACK_ENV (`seedcore ray status`).
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _loopback_only() -> None:
    import ray._private.ray_constants as ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def gcs_address() -> str | None:
    """The address `ray status --address` takes for the session this process started or joined."""
    return _STATE["gcs_address"]


def dashboard_url() -> str | None:
    """The Ray dashboard of the session this process started or joined (None before Ray starts)."""
    return _STATE["dashboard_url"]


def cluster_cpus() -> int:
    import ray

    return int(ray.cluster_resources().get("CPU", 1))


def alive_nodes() -> list[dict]:
    """The cluster's live nodes: [{"node_id", "address", "cpus", "memory_gb"}, ...]."""
    import ray

    nodes = []
    for node in ray.nodes():
        if node.get("Alive"):
            resources = node.get("Resources", {})
            nodes.append({"node_id": node["NodeID"], "address": node.get("NodeManagerAddress"),
                          "cpus": int(resources.get("CPU", 0)),
                          "memory_gb": round(resources.get("memory", 0) / 2**30, 2)})
    return nodes


def check_trial_fits(cpus: int, field: str = "cpus_per_trial") -> None:
    """Refuse at once a trial that needs more CPUs than the cluster's largest node has.

    Tune would otherwise keep such trials pending until the time budget ends. Checked only once
    Ray runs in this process (the sweep checks again after starting it).
    """
    import ray

    if not ray.is_initialized():
        return
    nodes = alive_nodes()
    largest = max(nodes, key=lambda n: n["cpus"], default=None)
    if largest is None or cpus > largest["cpus"]:
        has = "no live node" if largest is None else (
            f"the largest node ({largest['address']}, {largest['node_id'][:12]}) has {largest['cpus']}")
        raise ValidationError(f"{field} {cpus} is more CPUs than any Ray node has: {has}", field=field)


def cluster_tags() -> dict[str, str]:
    """The cluster's resources as parent-run tags: node count, CPUs, memory, and each node's CPUs."""
    nodes = alive_nodes()
    tags = {"nodes": len(nodes), "cpus": sum(n["cpus"] for n in nodes),
            "memory_gb": round(sum(n["memory_gb"] for n in nodes), 2),
            "largest_node_cpus": max((n["cpus"] for n in nodes), default=0),
            "node_cpus": ",".join(f"{n['node_id'][:12]}={n['cpus']}" for n in nodes)}
    return {f"{CLUSTER_TAG_PREFIX}{key}": str(value)[:5000] for key, value in tags.items()}


def tune_storage(settings: Settings, local_path: str) -> dict:
    """RunConfig arguments saying where Tune keeps checkpoints so that every node can write them.

    SEEDCORE_RAY_STORAGE (an NFS path or s3:// URI) when set; on a cluster otherwise the driver's disk
    through a relay (no shared disk assumed); a local Ray simply uses `local_path`.
    """
    if settings.ray_storage:
        return {"storage_path": settings.ray_storage}
    if not settings.ray_address:
        return {"storage_path": local_path}
    from seedcore.tuning.relay_storage import driver_storage

    return {"storage_path": local_path, "storage_filesystem": driver_storage()}


def end_after_trials() -> None:
    """Declare this process's Ray session to be for one sweep (the command line's): it shuts down in the
    background as soon as the sweep's trials end, while the winner is refit and registered without Ray."""
    _STATE["one_sweep"] = True


def trials_ended() -> None:
    """A sweep's trials are over (called at the end of the thread that ran Tune): a one-sweep session starts
    shutting down once that thread has ended (shutdown_ray waits for it)."""
    with _LOCK:
        if _STATE["one_sweep"] and _STATE["ending"] is None:
            ending = threading.Thread(target=_shutdown_after, args=(threading.current_thread(),),
                                      name="seedcore-ray-shutdown", daemon=True)
            ending.start()  # before it is published: shutdown_ray joins what it finds there, without the lock
            _STATE["ending"] = ending


def _shutdown_after(tune_thread: threading.Thread) -> None:
    """Shut Ray down beside the rest of the process without racing it. Ray ends the whole process when a Ray
    handle or object ref is released into a core worker that is shutting down ("The core worker has already
    been shutdown ... The process will exit"); Tune's objects hold such handles. So: the thread that ran Tune
    ends first (its last references to Tune's objects go with it), Tune's garbage in reference cycles is
    collected here, and no collection runs while Ray shuts down (the sweep goes on meanwhile with plain
    values: its trials' results and checkpoint paths)."""
    import gc

    if tune_thread is not threading.current_thread():
        tune_thread.join()
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        _shutdown()
    finally:
        if enabled:
            gc.enable()


def shutdown_ray() -> None:
    """End the Ray session this process started (a no-op when attached elsewhere or not started)."""
    ending = _STATE["ending"]
    if ending is not None:
        ending.join()
    _shutdown()
    _STATE.update(one_sweep=False, ending=None)


def _shutdown() -> None:
    import ray

    with _LOCK:
        if ray.is_initialized():
            ray.shutdown()
        _STATE["dashboard_url"] = _STATE["gcs_address"] = None
