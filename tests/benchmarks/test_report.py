"""The benchmark harness's report: targets judged on the ratio, unknown names refused, hand-written notes kept."""

from __future__ import annotations

import pytest

from bench import main
from bench._report import Row

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("row, met", [
    (Row("t", 1.0, 10.0, "p", "<= 0.2"), True),
    (Row("t", 3.0, 10.0, "p", "<= 0.2"), False),
    (Row("q", 300.0, 100.0, "p", ">= 2"), True),
    (Row("q", 150.0, 100.0, "p", ">= 2"), False),
    (Row("g", 1.05, None, "", "<= 1.1"), True),
    (Row("r", 1.0, 2.0, "p"), None),
])
def test_target_is_judged_on_the_ratio(row, met):
    assert row.met is met


def test_unknown_benchmark_is_refused():
    with pytest.raises(SystemExit) as exc:
        main(["nonsense"])
    assert exc.value.code == 2


def test_hand_written_notes_survive_a_regeneration():
    from bench._report import KEEP_MARKER, kept_notes

    previous = f"# old tables\n| a | b |\n\n{KEEP_MARKER}\n\n## Analysis\nwhy the sweep is slow\n"
    assert kept_notes(previous) == f"{KEEP_MARKER}\n\n## Analysis\nwhy the sweep is slow\n"
    assert kept_notes("# no notes here\n") == ""
