"""Ray: a local session by default, or attach to the cluster SEEDCORE_RAY_ADDRESS names."""

from __future__ import annotations

import logging
import os
import threading

from seedcore.config import Settings

_LOCK = threading.Lock()

# Fewer moving parts per trial: our MLflow callback is the logger; Tune's own file loggers and
# its SIGINT handler stay off (Ctrl-C reaches our code, which closes the runs).
TUNE_ENV = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "1000",
    "RAY_DEDUP_LOGS": "1",
}


def ensure_ray(settings: Settings) -> None:
    """Start (or attach to) Ray once per process; later sweeps reuse the same session."""
    for key, value in TUNE_ENV.items():
        os.environ.setdefault(key, value)
    import ray

    with _LOCK:
        if ray.is_initialized():
            return
        if settings.ray_address:
            ray.init(address=settings.ray_address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING,
                     log_to_driver=False, configure_logging=True)


def cluster_cpus() -> int:
    import ray

    return int(ray.cluster_resources().get("CPU", 1))


def shutdown_ray() -> None:
    """End the Ray session this process started (a no-op when attached elsewhere or not started)."""
    import ray

    with _LOCK:
        if ray.is_initialized():
            ray.shutdown()
