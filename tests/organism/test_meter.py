"""The process-tree meter: a child we reap and a grandchild that ends under a living parent each count once
(real subprocesses burning CPU)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from seedcore.organism.meter import TreeMeter, tree_cpu_seconds

pytestmark = pytest.mark.integration

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass"


def test_the_meter_counts_finished_children_and_grandchildren_once():
    meter = TreeMeter(sample_s=0.05).start()
    subprocess.run([sys.executable, "-c", BURN.format(s=1.5)], check=True)  # our child: reaped by us
    # a grandchild that ends while its parent lives on: nobody adds it to anyone's children's times (as Ray's
    # trial actors under the raylet); only the readings while it ran count it
    code = (f"import subprocess, sys, time\np = subprocess.Popen([sys.executable, '-c', {BURN.format(s=1.5)!r}])\n"
            "p.wait()\ntime.sleep(0.3)")
    subprocess.run([sys.executable, "-c", code], check=True)
    cpu, seen = meter.stop()
    # 3 s burned, plus three interpreters starting; the grandchild counted twice would make it 4.5 s and more
    assert 2.9 <= cpu < 4.3 and seen >= 3, cpu
    before, _ = tree_cpu_seconds()
    assert before > 0


def test_so_far_is_what_the_readings_saw_while_the_job_runs():
    meter = TreeMeter(sample_s=0.05, discover_every=1).start()
    assert meter.so_far() == pytest.approx(0.0, abs=0.05)
    child = subprocess.Popen([sys.executable, "-c", BURN.format(s=1.0) + "\ntime.sleep(5)"])
    try:
        deadline = time.monotonic() + 10
        while meter.so_far() < 0.9 and time.monotonic() < deadline:  # the child burns, then sleeps: still alive
            time.sleep(0.05)
        running = meter.so_far()
        assert 0.9 <= running < 1.6, running
    finally:
        child.kill()
        child.wait()
    cpu, _ = meter.stop()
    assert cpu >= running - 0.05
