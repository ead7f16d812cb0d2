"""The flywheel's heartbeat in `seedcore up`: every `monitor_interval_s`, tick schedules and check monitors."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from seedcore.monitoring.monitors import MonitorService
from seedcore.monitoring.schedules import ScheduleService

log = logging.getLogger(__name__)


def run_once(schedules: ScheduleService, monitors: MonitorService) -> None:
    """One beat; a failure is logged and the next beat tries again."""
    for name, beat in (("schedules", schedules.tick), ("monitors", monitors.check_all)):
        try:
            beat()
        except Exception:  # noqa: BLE001 - the loop must outlive any one failure
            log.exception("flywheel %s check failed", name)


def start_loop(schedules: ScheduleService, monitors: MonitorService, interval_s: float) -> Callable[[], None]:
    """A daemon thread that runs one beat every `interval_s`; returns `stop()`."""
    stopped = threading.Event()

    def loop():
        # Fixed rate, not fixed delay: a breach is seen at most one interval (plus one check) after it happens.
        next_beat = time.monotonic() + interval_s
        while not stopped.wait(max(0.0, next_beat - time.monotonic())):
            run_once(schedules, monitors)
            next_beat = max(next_beat + interval_s, time.monotonic())

    thread = threading.Thread(target=loop, name="seedcore-flywheel", daemon=True)
    thread.start()

    def stop() -> None:
        stopped.set()
        if thread is not threading.current_thread():
            thread.join(timeout=30)
    return stop
