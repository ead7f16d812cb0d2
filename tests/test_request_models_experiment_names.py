"""Experiment names cannot hurt: artifact locations never come from caller text, and names that could
traverse paths or corrupt logs are a 400 naming `experiment_name` on every entry point (REST and CLI)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from _tuning import assert_nothing_happened, mlflow_client
from seedcore.cli import main
from seedcore.tuning.single import train_model

pytestmark = pytest.mark.unit

TINY = {"eta": 0.3, "max_depth": 2, "num_boost_round": 2}

BAD_NAMES = [
    "../../escaped", "..", "a/../../b", "..\\..\\escaped", "runs/..", "nul\x00byte", "tab\there", "new\nline",
    "bell\x07", "del\x7f", "lone\ud800surrogate", "x" * 257, "   ",
]
ENTRY_POINTS = [
    ("/xgboost/tune", {"space_type": "conservative", "config_type": "conservative",
                       "custom_tune_config": {"num_samples": 1}}),
    ("/xgboost/tune/submit", {"space_type": "conservative", "config_type": "conservative",
                              "custom_tune_config": {"num_samples": 1}}),
    ("/xgboost/train", {"params": TINY}),
]


@pytest.mark.parametrize("path,body", ENTRY_POINTS, ids=[p for p, _ in ENTRY_POINTS])
@pytest.mark.parametrize("name", BAD_NAMES, ids=[repr(n)[:20] for n in BAD_NAMES])
def test_a_hostile_experiment_name_is_a_400_and_nothing_happens(module_client, module_settings, path, body, name):
    response = module_client.post(path, json={**body, "experiment_name": name})
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["field"] == "experiment_name", response.get_json()
    assert_nothing_happened(module_settings)
    assert [e.name for e in mlflow_client(module_settings).search_experiments()] in ([], ["Default"])


def test_the_cli_refuses_a_traversing_name_naming_the_field(settings, monkeypatch, capsys):
    for key in [k for k in os.environ if k.startswith("SEEDCORE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("SEEDCORE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SEEDCORE_MLRUNS_DIR", str(settings.mlruns_dir))
    code = main(["tune", "--experiment-name", "../../escaped"])
    assert code == 2
    error = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert error["field"] == "experiment_name", error


def _files_under(root: Path) -> set[Path]:
    return {Path(d) / f for d, _, files in os.walk(root) for f in files}


def test_artifacts_of_hostile_names_stay_in_mlruns_each_in_its_own_dir(settings, tmp_path):
    """Names that were path tricks or URL tricks (`#`, `?`) for a location built from the name.

    `../../escaped` is refused at every entry point; here the library call is made directly, so the
    artifact location itself must be safe.
    """
    before = _files_under(tmp_path)
    hostile = ["../../escaped", "exp#frag", "exp?q=1", "exp"]
    for name in hostile:
        train_model(settings, TINY, experiment_name=name)
    client = mlflow_client(settings)
    locations = {name: client.get_experiment_by_name(name).artifact_location for name in hostile}
    assert len(set(locations.values())) == len(hostile), locations
    new_files = _files_under(tmp_path) - before
    outside = [p for p in new_files if settings.mlruns_dir not in p.parents and settings.data_dir not in p.parents]
    assert outside == [], outside
    assert not (tmp_path.parent / "escaped").exists() and not (settings.mlruns_dir.parent / "escaped").exists()
    for name in hostile:  # every experiment's model files are inside its own directory under mlruns/
        where = Path(locations[name].removeprefix("file://"))
        assert settings.mlruns_dir in where.parents, (name, where)
        assert any(p.name == "MLmodel" for p in _files_under(where)), (name, where)
