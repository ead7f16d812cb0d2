"""Running the platform: gunicorn for the API, the MLflow UI beside it, clean shutdown on Ctrl-C."""

from __future__ import annotations

import atexit
import subprocess
import sys
import threading

from gunicorn.app.base import BaseApplication

from seedcore.config import Settings
from seedcore.observability import child_env, prepare_server, worker_exited


class _Gunicorn(BaseApplication):
    """gunicorn embedded: our app factory, our options, no command line of its own."""

    def __init__(self, settings: Settings, role: str, options: dict):
        self.settings, self.role, self.options = settings, role, options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from seedcore.api import create_app

        app = create_app(self.settings, role=self.role)
        if self.role == "all":  # warm Ray in the worker that runs sweeps, without delaying requests
            from seedcore.tuning.cluster import shutdown_ray

            done = threading.Event()
            threading.Thread(target=_keep_ray, args=(self.settings, done), name="seedcore-ray", daemon=True).start()
            app.extensions.setdefault("seedcore_stop", []).extend([shutdown_ray, done.set])
        atexit.register(_stop_app, app)
        return app


def _keep_ray(settings: Settings, done: threading.Event) -> None:
    """Start local Ray, then stay alive until shutdown: Ray's processes get SIGKILL when the *thread*
    that started them ends (PR_SET_PDEATHSIG), so a short-lived warm-up thread would take Ray down."""
    from seedcore.tuning.cluster import ensure_ray

    ensure_ray(settings)
    done.wait()


def _stop_app(app) -> None:
    for stop in app.extensions.get("seedcore_stop", []):
        try:
            stop()
        except Exception:  # shutting down: keep stopping the rest
            pass


def _worker_exit(server, worker) -> None:
    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        _stop_app(app)


def run_api(settings: Settings, role: str = "all", workers: int = 1, threads: int = 8) -> None:
    """Serve the API with gunicorn. The tuning role runs in one worker (it owns the job runner)."""
    prepare_server(settings)  # before gunicorn forks: the workers inherit it
    options = {
        "bind": f"{settings.host}:{settings.port}",
        "workers": 1 if role == "all" else max(1, workers),
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 0 if role == "all" else 60,  # a synchronous sweep may take its whole time budget
        "graceful_timeout": 30,
        "accesslog": "-",
        "loglevel": "warning",
        "worker_exit": _worker_exit,
        "child_exit": worker_exited,
    }
    _Gunicorn(settings, role, options).run()


def start_mlflow_ui(settings: Settings) -> subprocess.Popen:
    """`mlflow ui` over the same tracking store, as a child process."""
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", settings.tracking_uri,
               "--registry-store-uri", settings.registry_uri, "--default-artifact-root", settings.artifact_root,
               "--host", settings.host, "--port", str(settings.mlflow_ui_port), *mlflow_ui_security(settings)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=child_env())


def mlflow_ui_security(settings: Settings) -> list[str]:
    """MLflow's own Host and CORS checks narrowed to the address the UI binds (and `localhost` for loopback).

    A wildcard bind (0.0.0.0) has no one name to allow; MLflow's defaults (localhost, private IPs) stay then.
    """
    if settings.host in ("0.0.0.0", "::", ""):
        return []
    port = settings.mlflow_ui_port
    hosts = [f"{settings.host}:{port}"] + ([f"localhost:{port}"] if settings.host in ("127.0.0.1", "::1") else [])
    return ["--allowed-hosts", ",".join(hosts), "--cors-allowed-origins", ",".join(f"http://{h}" for h in hosts)]


def stop_process(process: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
