"""Process accounting for the energy ledger: the CPU time of this process and every process under it."""

from __future__ import annotations

import os
import threading

import psutil

SAMPLE_S = 0.5  # how often the known processes of a running job's tree are read
DISCOVER_EVERY = 4  # readings; finding the tree's processes scans every process of the machine


def _cpu(times) -> float:
    return times.user + times.system


def tree_cpu_seconds(root: int | None = None) -> tuple[float, int]:
    """CPU-seconds (user + system, reaped children included) of `root` (default: this process) and every
    process under it now, and how many processes that was."""
    top = psutil.Process(root or os.getpid())
    total, count = 0.0, 0
    for process in [top, *top.children(recursive=True)]:
        try:
            t = process.cpu_times()
        except psutil.Error:
            continue
        total += _cpu(t) + t.children_user + t.children_system
        count += 1
    return total, count


class TreeMeter:
    """CPU-seconds the process tree under this process used between `start()` and `stop()`.

    Every SAMPLE_S a thread reads each process's CPU time (and looks for new processes every DISCOVER_EVERY
    readings): a process that ends between two readings (a Ray trial actor: Ray's raylet does not add its
    workers to its own children's times) loses only what it used since the last one. A process present at the
    start counts from its reading then, a new one from zero. The children this process reaps itself (a
    subprocess it waited for) count through its children's times."""

    def __init__(self, sample_s: float = SAMPLE_S, discover_every: int = DISCOVER_EVERY):
        self.sample_s, self.discover_every = sample_s, discover_every
        self._processes: list[psutil.Process] = []
        self._first: dict[tuple, float] = {}
        self._last: dict[tuple, float] = {}
        self._parent: dict[tuple, int] = {}
        self._reaped0 = self._reaped_last = 0.0
        self._top = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="seedcore-energy-meter", daemon=True)

    def _read(self, initial: bool = False, discover: bool = True) -> None:
        if discover:
            self._processes = [self._top, *self._top.children(recursive=True)]
        for process in self._processes:
            try:
                with process.oneshot():
                    key, value, parent = (process.pid, process.create_time()), _cpu(process.cpu_times()), process.ppid()
            except psutil.Error:
                continue
            self._first.setdefault(key, value if initial else 0.0)
            self._last[key], self._parent[key] = value, parent

    def _reaped(self) -> float:
        t = self._top.cpu_times()
        return t.children_user + t.children_system

    def _run(self) -> None:
        readings = 0
        while not self._stop.wait(self.sample_s):
            readings += 1
            self._read(discover=readings % self.discover_every == 0)
            self._reaped_last = self._reaped()

    def start(self) -> "TreeMeter":
        self._reaped0 = self._reaped_last = self._reaped()
        self._read(initial=True)
        self._thread.start()
        return self

    def so_far(self) -> float:
        """CPU-seconds since start as of the last reading (at most `sample_s` old): what was read, no process
        read now (the promotion's incident takes it). A process that ended since counts to its last reading; a child
        this process waited for may count twice (`stop()` tells those apart, reading which processes are alive)."""
        first, last = dict(self._first), dict(self._last)  # copies: the reading thread writes them
        return sum(last[k] - first.get(k, 0.0) for k in last) + (self._reaped_last - self._reaped0)

    def halt(self) -> None:
        """Stop reading now (the process shuts down); `stop()` still gives what was read until then."""
        self._stop.set()

    def stop(self) -> tuple[float, int]:
        """(CPU-seconds, processes seen) since start."""
        self._stop.set()
        self._thread.join()
        self._read()
        alive = {self._top.pid} | {p.pid for p in self._top.children(recursive=True)}
        ended = {k for k in self._last if k[0] not in alive}
        by_pid = {k[0]: k for k in self._last}

        def reaped_by_us(key: tuple) -> bool:
            # an ended process whose ended parents lead up to us: each was waited for, so its whole time is
            # in our children's times already (a parent still alive, e.g. Ray's raylet, may never add it)
            for _ in range(64):
                parent = self._parent.get(key)
                if parent == self._top.pid:
                    return True
                key = by_pid.get(parent)
                if key is None or key not in ended:
                    return False
            return False
        sampled = sum(self._last[k] - self._first[k] for k in self._last if not (k in ended and reaped_by_us(k)))
        return sampled + (self._reaped() - self._reaped0), len(self._last)
