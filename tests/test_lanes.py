"""Every test is in exactly one lane (unit, integration, e2e): the whole suite collects under the lane check
of tests/conftest.py (it runs before `-m` deselects), and that check stops a collection holding a test with no
lane or with two."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parent


def _collect(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _collected(out: str) -> list[str]:
    return [line for line in out.splitlines() if "::" in line]


def test_the_whole_suite_collects_under_the_lane_check():
    everything = _collect(str(TESTS), cwd=TESTS.parent)
    assert everything.returncode == 0, everything.stdout[-3000:] + everything.stderr[-3000:]
    tests = _collected(everything.stdout)
    assert len(tests) > 1000, everything.stdout[-500:]
    assert "tests/test_lanes.py::test_the_whole_suite_collects_under_the_lane_check" in tests


def test_a_test_with_no_lane_or_two_lanes_stops_the_collection(tmp_path):
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n")
    (tmp_path / "test_one.py").write_text("import pytest\npytestmark = pytest.mark.unit\ndef test_a(): pass\n")
    (tmp_path / "test_none.py").write_text("def test_b(): pass\n")
    (tmp_path / "test_two.py").write_text("import pytest\npytestmark = pytest.mark.unit\n"
                                          "@pytest.mark.e2e\ndef test_c(): pass\n")
    done = _collect("--rootdir", str(tmp_path), str(tmp_path), cwd=tmp_path)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert "test_none.py::test_b: no lane" in done.stderr, done.stderr
    assert "test_two.py::test_c: ['e2e', 'unit']" in done.stderr, done.stderr
    assert "test_one.py" not in done.stderr, done.stderr
