"""Run a command tied to the process that started us: `python tether.py PARENT_PID GRACE_S LABEL COMMAND_JSON`.

We lead the command's process group (the caller starts us in a group of our own). When PARENT_PID is no
longer our parent, however it ended (SIGKILL and crashes too), or when the command ends, the whole group
gets SIGTERM, then SIGKILL after GRACE_S seconds: nothing the command started outlives it or its parent.
When the command ends on its own, the last lines of its stderr go to our stderr under LABEL, with its exit
code: a child that cannot start (a port taken) says why. Standard library only, run by path, so it costs a
bare interpreter and no package import.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque

POLL_S = 0.5  # how often the parent is looked for
TAIL_LINES = 12  # lines of the command's stderr shown when it ends on its own


def main(argv: list[str]) -> int:
    parent, grace, label, command = int(argv[0]), float(argv[1]), argv[2], json.loads(argv[3])
    child = subprocess.Popen(command, stderr=subprocess.PIPE)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    drain = threading.Thread(target=_drain, args=(child.stderr, tail), daemon=True)
    drain.start()
    while child.poll() is None and os.getppid() == parent:
        try:
            child.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            pass
    if child.returncode is not None:  # it ended on its own: say so, with what it said last
        drain.join(POLL_S)  # its own children may hold the pipe open longer
        lines = "".join(f"  {line}\n" for line in tail)
        sys.stderr.write(f"{label} exited with code {child.returncode}{':' if lines else ''}\n{lines}")
        sys.stderr.flush()
    _end_group(child, grace)
    return 1 if child.returncode is None else child.returncode


def _drain(stream, tail: deque) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            tail.append(line)


def _end_group(child: subprocess.Popen, grace: float) -> None:
    """SIGTERM our process group (us spared), SIGKILL it (us too) if anything is left after `grace` s."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(0, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _others_in_group() and time.monotonic() < deadline:
        child.poll()  # reap it: a zombie is not left
        time.sleep(0.05)
    if _others_in_group():
        os.killpg(0, signal.SIGKILL)


def _others_in_group() -> bool:
    """Whether a live process other than us is in our process group (from /proc: Linux)."""
    me, group = os.getpid(), os.getpgrp()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                state, _ppid, pgrp = stat.read().rsplit(b")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if state != b"Z" and int(pgrp) == group:
            return True
    return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
