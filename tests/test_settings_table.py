"""The README's settings table is the one generated from the Settings object: it cannot drift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from seedcore import _settings_table
from seedcore.config import Settings

pytestmark = pytest.mark.integration  # it runs the generator as a command

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_readme_settings_table_is_generated_from_settings():
    text = README.read_text(encoding="utf-8")
    assert _settings_table.replace_in(text) == text, "README's settings table is stale: run scripts/readme-settings"
    table = text.split(_settings_table.BEGIN, 1)[1].split(_settings_table.END, 1)[0]
    for row in Settings.variables():  # every variable, the MLflow UI's port included
        assert f"| `{row['variable']}` |" in table
    assert "`SEEDCORE_MLFLOW_UI_PORT` | `5000`" in table


def test_a_stale_table_is_noticed_and_regenerated(tmp_path):
    stale = tmp_path / "README.md"
    stale.write_text(README.read_text(encoding="utf-8").replace("| `SEEDCORE_PORT` | `8000` |",
                                                                "| `SEEDCORE_PORT` | `80` |"))
    run = lambda *args: subprocess.run([sys.executable, "-m", "seedcore._settings_table", *args],  # noqa: E731
                                       capture_output=True, text=True)
    check = run(str(stale), "--check")
    assert check.returncode == 1 and "out of date" in check.stderr
    assert run(str(stale)).returncode == 0
    assert "| `SEEDCORE_PORT` | `8000` |" in stale.read_text() and run(str(stale), "--check").returncode == 0
