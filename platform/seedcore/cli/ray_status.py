"""`seedcore ray ...`: Ray's own commands pointed at the platform's Ray, whichever of several Ray sessions
on this machine that is (plain `ray status` refuses to choose between them).

The address comes from SEEDCORE_RAY_ADDRESS when the platform joins a cluster, else from the session file
that a running `seedcore up` writes once its local Ray is up (`<data dir>/ray/session.json`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from seedcore.config import Settings
from seedcore.errors import SeedcoreError
from seedcore.tuning.cluster import LOOPBACK_ENV

# The `ray` subcommands we point at the platform's session (each takes the GCS address as --address).
RAY_COMMANDS = {"status": "Ray's `ray status` (nodes, resources, demands) for the platform's Ray"}


class NoPlatformRay(SeedcoreError):
    status_code = 503


def add_commands(sub) -> None:
    ray = sub.add_parser("ray", help="Ray's own commands for the platform's Ray: status, address")
    actions = ray.add_subparsers(required=True, metavar="action")
    for name, what in RAY_COMMANDS.items():
        # no pass-through of further arguments: `ray status` takes only --address (ours) and --help
        actions.add_parser(name, help=what).set_defaults(handler=_ray_command, ray_command=name)
    actions.add_parser("address", help="print the address of the platform's Ray").set_defaults(handler=_address)


def platform_ray_address(settings: Settings) -> str:
    """SEEDCORE_RAY_ADDRESS, else the address a running `seedcore up` announced for its local Ray."""
    if settings.ray_address:
        return settings.ray_address
    import psutil

    path = settings.ray_session_file
    try:
        session = json.loads(path.read_text())
    except (OSError, ValueError):
        session = None
    if not session or not session.get("gcs_address") or not psutil.pid_exists(int(session.get("pid") or 0)):
        raise NoPlatformRay(f"no running `seedcore up` has a Ray session for the data dir {settings.data_dir} "
                            f"({path} is missing or its server has ended); start `seedcore up`, or set "
                            "SEEDCORE_RAY_ADDRESS to a cluster")
    return session["gcs_address"]


def _ray_executable() -> str:
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else (shutil.which("ray") or "ray")


def _ray_command(settings: Settings, args) -> int:
    address = platform_ray_address(settings)
    command = [_ray_executable(), args.ray_command, "--address", address]
    # A local Ray (2.59+) authenticates with a token it saved under ~/.ray; Ray's CLI only sends it in token mode.
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE") or "token"}
    if address.startswith("127."):  # our local Ray listens on loopback: Ray's CLI must not swap in the outward address
        env.update(LOOPBACK_ENV)
    return subprocess.run(command, env=env).returncode


def _address(settings: Settings, args) -> int:
    print(platform_ray_address(settings))
    return 0
