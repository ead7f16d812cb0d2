"""The small mode of the organism benchmarks (organism), run once per test session so the harness cannot
rot. No timing asserts."""

from __future__ import annotations

import pytest

from _bench import group_tests

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

small_run, test_small_mode_produces_well_formed_rows = group_tests("organism")
