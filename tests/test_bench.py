"""The benchmarks' small mode, run once per test session so the harness cannot rot. No timing asserts."""

from __future__ import annotations

import math

import pytest

from bench import BENCHMARKS, main, run_benchmarks
from bench._report import Row, Section, document, machine, section_markdown

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def small_run(ray_session, tmp_path_factory) -> dict[str, Section]:
    """Every benchmark's small mode, once, sharing the test session's Ray."""
    sections = run_benchmarks(small=True, workdir=tmp_path_factory.mktemp("bench"))
    return {s.name: s for s in sections}


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_small_mode_produces_well_formed_rows(small_run, name):
    section = small_run[name]
    assert not section.failed, section.notes
    assert section.rows, f"{name} produced no rows"
    for row in section.rows:
        assert row.metric and _finite(row.ours), row
        if row.peer is not None:
            assert row.peer_name and _finite(row.peer) and _finite(row.ratio), row
    assert any(row.peer is not None for row in section.rows), f"{name} compares with no peer"
    table = section_markdown(section)
    assert table.count("\n| ") == len(section.rows) + 1  # header + one line a row


def test_results_document_names_machine_versions_and_command(small_run):
    text = document(list(small_run.values()), "python -m bench --small", machine(), small=True)
    for needle in ("CPUs", "ray ", "mlflow ", "xgboost ", "optuna ", "python ", "`python -m bench --small`",
                   *(s.title for s in small_run.values())):
        assert needle in text


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
