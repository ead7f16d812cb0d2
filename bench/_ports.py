"""Ports for the servers the tests and benchmarks start: each given to one process only, never one the kernel
hands out.

A port drawn with `bind(port 0)` and released is free only until someone binds it: another test worker or
benchmark drawing its own, or any process's `bind(0)` or outgoing connection (Ray, the MLflow UI, a client). A
server that then finds its port taken retries for seconds, and meanwhile its test's requests reach the other
test's server.

So ports come from below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), which it never hands out
on its own, and above Ray's worker ports (10002-19999 by default). Each is reserved by an exclusive lock on a
file, held while this process lives, so no other process drawing ports here (another worker, another run) is
given it; and it is checked free on every address before it is given.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
from pathlib import Path

LOWEST = 20_000  # above Ray's default worker ports (10002-19999)
LOCKS = Path("/tmp/seedcore-ports")  # one place for every process, whatever its TMPDIR
_held: dict[str, int] = {}  # name -> the descriptor whose lock reserves it, open while this process lives


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def _free_on_every_address(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def reserve(name: str) -> bool:
    """Whether `name` (a port, a loopback /24 ...) is now this process's until it ends: False if another process
    holds it, or this one already does."""
    if name in _held:
        return False
    LOCKS.mkdir(mode=0o777, exist_ok=True)
    descriptor = os.open(LOCKS / name, os.O_CREAT | os.O_RDWR, 0o666)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return False
    _held[name] = descriptor
    return True


def free_port() -> int:
    """A port free on every address now, reserved for this process: no other process drawing here is given it."""
    candidates = list(range(LOWEST, max(LOWEST + 1, _ephemeral_low())))
    start = random.SystemRandom().randrange(len(candidates))  # processes starting together try different ports first
    for port in candidates[start:] + candidates[:start]:
        if reserve(str(port)) and _free_on_every_address(port):
            return port
    raise RuntimeError(f"no free port left between {LOWEST} and {_ephemeral_low()}")
