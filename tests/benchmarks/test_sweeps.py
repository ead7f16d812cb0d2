"""The small mode of the sweeps benchmarks (sweep, scaling, quality, warmstart), run once per test session so the harness cannot
rot. No timing asserts."""

from __future__ import annotations

import pytest

from _bench import group_tests
from bench._report import document, machine

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

small_run, test_small_mode_produces_well_formed_rows = group_tests("sweeps")


def test_results_document_names_machine_versions_and_command(small_run):
    text = document(list(small_run.values()), "python -m bench --small", machine(), small=True)
    for needle in ("CPUs", "ray ", "mlflow ", "xgboost ", "optuna ", "python ", "`python -m bench --small`",
                   *(s.title for s in small_run.values())):
        assert needle in text
