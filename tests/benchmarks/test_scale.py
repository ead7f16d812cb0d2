"""The small mode of the scale benchmarks (scale), run once per test session so the harness cannot
rot. No timing asserts."""

from __future__ import annotations

import pytest

from _bench import group_tests

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

small_run, test_small_mode_produces_well_formed_rows = group_tests("scale")


def test_scale_dataset_is_real_large_and_leaks_no_answer():
    """The scale benchmark's real data ships inside a pip package: 250k+ rows, numeric, nothing from after take-off."""
    from bench._datasets import flights_frame
    from seedcore.datasets import split_frame

    frame = flights_frame()
    assert len(frame) >= 250_000
    assert not {"dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"} & set(frame.columns)
    assert 0.1 < frame["target"].mean() < 0.5
    split_frame(frame, "target", [c for c in frame.columns if c != "target"], "flights")  # the platform takes it


def test_small_scale_sweeps_are_the_default_space_with_fewer_rounds():
    import json
    from pathlib import Path

    from bench.cold import _tune_command
    from seedcore.tuning.spaces import describe_space, resolve_space

    command = _tune_command(Path("flights.parquet"), 3, 0, rounds=10)
    custom = resolve_space("default", json.loads(command[command.index("--custom-space") + 1]))
    assert describe_space(custom) == describe_space({**resolve_space("default", None), "num_boost_round": 10})
    assert "--custom-space" not in _tune_command(Path("flights.parquet"), 3, 0, rounds=200)
