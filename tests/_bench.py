"""The benchmarks' small mode for the tests: the benchmarks in groups, one test module each, so parallel
workers run the groups side by side (each group's run is a module fixture); and what a well-formed section is."""

from __future__ import annotations

import math

import pytest

from bench import BENCHMARKS, run_benchmarks
from bench._report import Section, section_markdown

GROUPS = {  # tests/benchmarks/test_<group>.py runs its group's small mode once
    "sweeps": ("sweep", "scaling", "quality", "warmstart"),  # in process, on the worker's Ray
    "cold": ("cold",),  # fresh CLI processes, each starting its own Ray
    "scale": ("scale",),  # fresh processes on the real 327k-row data, cut down
    "serving": ("predict", "batch", "predlog", "feedback", "front"),  # servers in their own processes
    "promotion_crash": ("promotion_crash",),  # processes killed mid-promotion
    "organism": ("organism",),  # the energy meter, working memory, the page, estimated_auc
}
assert sorted(n for group in GROUPS.values() for n in group) == sorted(BENCHMARKS), "a benchmark in no group"


def run_small(group: str, workdir) -> dict[str, Section]:
    """The small mode of one group's benchmarks, by name."""
    return {s.name: s for s in run_benchmarks(list(GROUPS[group]), small=True, workdir=workdir)}


def group_tests(group: str):
    """A test module's fixture running `group`'s small mode once, and its test of each benchmark's section:
    `small_run, test_small_mode_produces_well_formed_rows = group_tests("cold")`."""

    @pytest.fixture(scope="module")
    def small_run(ray_session, tmp_path_factory) -> dict[str, Section]:
        return run_small(group, tmp_path_factory.mktemp("bench"))

    @pytest.mark.parametrize("name", GROUPS[group])
    def test_small_mode_produces_well_formed_rows(small_run, name):
        assert_well_formed(small_run[name])

    return small_run, test_small_mode_produces_well_formed_rows


def assert_well_formed(section: Section) -> None:
    """Ran, has rows, every number finite, compares with a peer, and renders one table line a row."""
    assert not section.failed, section.notes
    assert section.rows, f"{section.name} produced no rows"
    for row in section.rows:
        assert row.metric and _finite(row.ours), row
        if row.peer is not None:
            assert row.peer_name and _finite(row.peer) and _finite(row.ratio), row
    assert any(row.peer is not None for row in section.rows), f"{section.name} compares with no peer"
    assert section_markdown(section).count("\n| ") == len(section.rows) + 1  # header + one line a row


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
