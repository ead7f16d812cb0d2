"""Who owns a lease or a job: a process named by host, pid and start time, never by a bare pid.

    me = ProcessIdentity.current()        # host, pid, start "<boot id>+<seconds after boot>"
    token = me.owner_token()              # "vm:4242:463cdd16c2a5483a+81234.56:3f2a9c0d1e2b", a lease's owner
    owner_alive("vm", 4242, "463cdd16c2a5483a+81234.56")  # False once that process is gone

A pid alone repeats: once its process dies another may get it, and a container that restarts hands out the
same small pids again. The start time tells them apart. It is counted from boot (psutil's create time less
the boot time), so a change of the wall clock does not move it, and the boot id (Linux) tells one boot from
the next. A process on another host cannot be seen from here: it is taken to be alive (its lease still ends).
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import psutil

# psutil reads the boot time in whole seconds, so two readings of one start may differ by a second.
START_TOLERANCE_S = 1.5
UNKNOWN_BOOT = "-"
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_TOKEN = re.compile(r"^(?P<host>[^:]+):(?P<pid>\d+):(?P<start>(?:[0-9a-f]{16}|-)\+\d+(?:\.\d+)?):[0-9a-f]{12}$")


@cache
def boot_id() -> str:
    """This boot of this machine: 16 hex characters of the kernel's boot id, or "-" where there is none."""
    try:
        return _BOOT_ID.read_text().strip().replace("-", "")[:16] or UNKNOWN_BOOT
    except OSError:
        return UNKNOWN_BOOT


def start_of(process: psutil.Process) -> float:
    """When `process` started, in seconds after boot."""
    return process.create_time() - psutil.boot_time()


@dataclass(frozen=True)
class ProcessIdentity:
    """One process, for as long as it lives: `start` is None only in rows written by older releases."""

    host: str
    pid: int
    start: str | None

    @classmethod
    def current(cls) -> "ProcessIdentity":
        return _current(os.getpid())  # keyed by pid: a forked child is a process of its own

    def owner_token(self) -> str:
        """A lease owner naming this process, unique to each holder (the same process may hold twice)."""
        return f"{self.host}:{self.pid}:{self.start}:{uuid.uuid4().hex[:12]}"

    @classmethod
    def from_owner(cls, owner: str | None) -> "ProcessIdentity | None":
        """The process an `owner_token` names; None for any other owner text (a URL, an older token)."""
        found = _TOKEN.match(owner or "")
        if found is None:
            return None
        return cls(found["host"], int(found["pid"]), found["start"])

    def alive(self) -> bool:
        return owner_alive(self.pid, self.host, self.start)


@cache
def _current(pid: int) -> ProcessIdentity:
    start = start_of(psutil.Process(pid))
    return ProcessIdentity(socket.gethostname(), pid, f"{boot_id()}+{start:.2f}")


def owner_alive(pid: int | None, host: str | None, start: str | None = None) -> bool:
    """Whether the process (host, pid, start) may still run.

    Another host's process is assumed alive. Here: the pid must exist, not as a zombie, and when `start`
    is known, in this boot and started then (within START_TOLERANCE_S) - a recycled pid is not the owner.
    """
    if host is not None and host != socket.gethostname():
        return True
    if pid is None:
        return False
    boot, since = _split_start(start)
    if boot not in (None, UNKNOWN_BOOT) and boot_id() not in (UNKNOWN_BOOT, boot):
        return False  # the machine restarted since
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return since is None or abs(start_of(process) - since) <= START_TOLERANCE_S
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # it exists; whose it is cannot be read


def owner_token_alive(owner: str | None) -> bool:
    """Whether a lease owner may still run: True for owner text that names no process (it waits for expiry)."""
    identity = ProcessIdentity.from_owner(owner)
    return identity is None or identity.alive()


def _split_start(start: str | None) -> tuple[str | None, float | None]:
    if not start:
        return None, None
    boot, _, since = start.partition("+")
    try:
        return boot, float(since)
    except ValueError:
        return None, None  # unreadable: judged by the pid alone
