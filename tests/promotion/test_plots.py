"""A registered version carries its pictures (ROC, precision-recall, calibration, gain importance) and a
description in words that follows the champion gate's decision. Both are follow-ups: they come after the
answer of the training that registered the version."""

from __future__ import annotations

import pytest
import mlflow

from _serving import add_version
from seedcore.promotion import plots
from seedcore.promotion.production import Production
from seedcore.promotion.registry import Registry
from seedcore.promotion import followups
from seedcore.tuning.single import train_model

pytestmark = pytest.mark.unit

PNG = b"\x89PNG\r\n\x1a\n"


def _trained(settings, **params) -> int:
    """A version registered by a real training run, once its follow-ups ended (all done)."""
    result = train_model(settings, {"eta": 0.3, "num_boost_round": 5, **params})
    assert followups.wait(result["mlflow"]["run_id"], 120) == dict.fromkeys(followups.STEPS, followups.DONE)
    return result["model_version"]


def test_a_version_carries_its_pictures(migrated_settings, tmp_path):
    settings = migrated_settings
    registry = Registry(settings)
    version = _trained(settings, max_depth=2)
    mv = registry.client.get_model_version(settings.model_name, str(version))
    model_id = mv.source.removeprefix("models:/")  # the version's logged model
    listed = {f.path for f in registry.client.list_logged_model_artifacts(model_id, plots.PLOTS_DIR)}
    assert listed == {f"{plots.PLOTS_DIR}/{name}" for name in plots.MODEL_PLOTS}
    for name in plots.MODEL_PLOTS:  # reachable from the version itself, as real PNG files
        local = mlflow.artifacts.download_artifacts(f"models:/{settings.model_name}/{version}/plots/{name}",
                                                    dst_path=str(tmp_path))
        with open(local, "rb") as f:
            assert f.read(8) == PNG


def test_the_description_says_what_the_version_is_and_what_the_gate_decided(migrated_settings):
    settings = migrated_settings
    registry = Registry(settings)
    first, _ = add_version(settings, registry, seed=5, depth=3)  # promoted: no champion to beat
    described = registry.client.get_model_version(settings.model_name, str(first)).description
    assert "Validation: AUC 0." in described and "Holdout (never seen in tuning): AUC 0." in described
    assert "max_depth=3" in described and "experiment `serving-tests`" in described
    assert "Champion gate: promoted to production — forced." in described

    second = _trained(settings, max_depth=1, num_boost_round=1)  # not promoted: the follow-up describes it
    described = registry.client.get_model_version(settings.model_name, str(second)).description
    assert "Champion gate: not decided yet." in described and "experiment `xgboost_training`" in described
    record = Production(registry).promote(second)
    assert record["status"] == "rejected"
    described = registry.client.get_model_version(settings.model_name, str(second)).description
    assert f"Champion gate: not promoted — {record['reason']}. Production before: version {first}." in described
