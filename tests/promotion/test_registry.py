"""The registry: register a version (logged once, signature, input example, tags), the champion gate,
promotion (alias + stage + blessed files) — on tiny boosters, without sweeps."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from seedcore import names
from seedcore.promotion.blessed import MODEL_UBJ_FILE
from seedcore.datasets import load_dataset
from seedcore.errors import NotFoundError, ValidationError
from seedcore.scoring import evaluate
from seedcore.promotion.model_logging import Candidate, booster_from
from seedcore.promotion.gate import ChampionGate
from seedcore.promotion.production import Production
from seedcore.promotion.registry import Registry, ensure_experiment

pytestmark = pytest.mark.integration

EXPERIMENT = "registry_tests"
WEAK = {"rounds": 1, "max_depth": 1, "eta": 0.3}
MEDIUM = {"rounds": 4, "max_depth": 2, "eta": 0.3}
STRONG = {"rounds": 40, "max_depth": 3, "eta": 0.2}


@pytest.fixture
def dataset(settings):
    return load_dataset(settings.data_dir)


@pytest.fixture
def registry(settings):
    return Registry(settings)


def train(dataset, rounds: int, max_depth: int, eta: float, features=None) -> xgb.Booster:
    cols = list(features or range(len(dataset.feature_names)))
    names_ = [dataset.feature_names[i] for i in cols]
    dtrain = xgb.DMatrix(dataset.x_train[:, cols], dataset.y_train, feature_names=names_)
    return xgb.train({"objective": "binary:logistic", "max_depth": max_depth, "eta": eta, "nthread": 1, "seed": 0},
                     dtrain, rounds)


def register(registry: Registry, settings, dataset, strength: dict, trial_id: str = "t"):
    """Train a tiny booster, give it a run of its own, register it; returns (version, booster, run_id)."""
    booster = train(dataset, **strength)
    experiment_id = ensure_experiment(registry.client, settings, EXPERIMENT)
    run_id = registry.client.create_run(experiment_id, run_name=trial_id).info.run_id
    validation = evaluate(booster, dataset.x_valid, dataset.y_valid)
    params = {"max_depth": strength["max_depth"], "eta": strength["eta"], "num_boost_round": strength["rounds"]}
    mv = registry.register(Candidate(booster, params, dataset, validation, run_id, EXPERIMENT, trial_id))
    return mv, booster, run_id


def holdout_auc(booster, dataset) -> float:
    return evaluate(booster, dataset.x_holdout, dataset.y_holdout)[names.AUC]


def alias_version(registry: Registry) -> int | None:
    mv = registry.production_version()
    return None if mv is None else int(mv.version)


def stage(registry: Registry, version) -> str:
    return registry.client.get_model_version(registry.name, str(version)).current_stage


def blessed_predictions(settings, dataset) -> np.ndarray:
    booster = xgb.Booster()
    booster.load_model(str(settings.blessed_dir / MODEL_UBJ_FILE))  # the same bytes, a name XGBoost knows
    return booster.predict(xgb.DMatrix(dataset.x_holdout, feature_names=list(dataset.feature_names)))


def production_pyfunc_predictions(dataset) -> np.ndarray:
    model = mlflow.pyfunc.load_model(f"models:/utility_risk_model@{names.PRODUCTION_ALIAS}")
    return np.asarray(model.predict(pd.DataFrame(dataset.x_holdout, columns=list(dataset.feature_names))))


def metadata(settings) -> dict:
    return json.loads((settings.blessed_dir / names.METADATA_FILE).read_text())


def test_strengths_are_ordered(dataset):
    """The tests below rely on it: WEAK < MEDIUM < STRONG on the holdout."""
    aucs = [holdout_auc(train(dataset, **s), dataset) for s in (WEAK, MEDIUM, STRONG)]
    assert aucs[0] < aucs[1] < aucs[2]


def test_register_logs_the_model_once_with_signature_example_and_tags(settings, registry, dataset):
    mv, booster, run_id = register(registry, settings, dataset, MEDIUM, trial_id="trial_7")
    assert (mv.name, int(mv.version), mv.run_id) == ("utility_risk_model", 1, run_id)

    holdout = evaluate(booster, dataset.x_holdout, dataset.y_holdout)
    tags = mv.tags
    assert float(tags["holdout_auc"]) == holdout[names.AUC]
    assert float(tags["holdout_logloss"]) == holdout[names.LOGLOSS]
    assert tags["source_run_id"] == run_id and tags["trial_id"] == "trial_7"
    assert tags["experiment_name"] == EXPERIMENT and tags["dataset_fingerprint"] == dataset.fingerprint
    assert json.loads(tags["feature_names"]) == list(dataset.feature_names)
    assert json.loads(tags["params"]) == {"max_depth": 2, "eta": 0.3, "num_boost_round": 4}
    described = registry.describe(registry.get_version(1))
    assert described["holdout"] == holdout and described["source_run_id"] == run_id

    experiment_id = registry.client.get_experiment_by_name(EXPERIMENT).experiment_id
    logged = registry.client.search_logged_models(experiment_ids=[experiment_id])
    assert [m.source_run_id for m in logged] == [run_id]  # logged once, into its own run
    run = registry.client.get_run(run_id)
    assert run.data.metrics["holdout_auc"] == holdout[names.AUC]
    assert run.info.status == "FINISHED"

    uri = f"models:/utility_risk_model/{mv.version}"
    info = mlflow.models.get_model_info(uri)
    assert "xgboost" in info.flavors and info.run_id == run_id
    assert info.signature.inputs.input_names() == [f"f{i}" for i in range(10)]
    example = mlflow.models.Model.load(uri).load_input_example(mlflow.artifacts.download_artifacts(uri))
    assert list(example.columns) == list(dataset.feature_names)
    assert np.allclose(example.to_numpy(), dataset.x_holdout[:5])

    loaded = registry.load_booster(mv)
    assert np.array_equal(loaded.inplace_predict(dataset.x_holdout), booster.inplace_predict(dataset.x_holdout))

    second, _, _ = register(registry, settings, dataset, WEAK)
    assert int(second.version) == 2


def _logged_model_bytes(registry: Registry, version) -> bytes:
    """The version's model file as MLflow keeps it."""
    folder = mlflow.artifacts.download_artifacts(f"models:/{registry.name}/{version}")
    return (Path(folder) / "model.ubj").read_bytes()  # mlflow.xgboost names it model.<format>


def test_a_registered_model_is_serialised_once_the_blessed_file_is_the_registered_bytes(settings, registry,
                                                                                        dataset):
    """The blessed file is the very bytes the registry logged, not a second serialisation of the booster in hand
    (here changed after it was registered, so that a second one would differ)."""
    mv, booster, _ = register(registry, settings, dataset, MEDIUM)
    logged = _logged_model_bytes(registry, mv.version)
    booster.set_attr(note="changed after it was registered")
    assert bytes(booster.save_raw("ubj")) != logged
    assert Production(registry).promote(mv.version, challenger=booster)["status"] == "success"
    assert (settings.blessed_dir / names.BLESSED_MODEL_FILE).read_bytes() == logged


def test_a_booster_read_from_a_checkpoint_is_registered_with_the_checkpoints_bytes(settings, registry, dataset):
    """A sweep that registers a trial's own model (refit: false) reads it from the checkpoint's bytes; the version's
    model file and the blessed file are those bytes."""
    raw = bytes(train(dataset, **MEDIUM).save_raw("ubj"))
    booster = booster_from(raw)
    booster.set_attr(note="changed after it was read")  # a serialisation of it now would differ from `raw`
    experiment_id = ensure_experiment(registry.client, settings, EXPERIMENT)
    run_id = registry.client.create_run(experiment_id).info.run_id
    mv = registry.register(Candidate(booster, {}, dataset, evaluate(booster, dataset.x_valid, dataset.y_valid),
                                     run_id, EXPERIMENT, "t"))
    assert _logged_model_bytes(registry, mv.version) == raw
    Production(registry).promote(mv.version, challenger=booster)
    assert (settings.blessed_dir / names.BLESSED_MODEL_FILE).read_bytes() == raw


def test_first_promotion_has_no_champion_to_beat(settings, registry, dataset):
    assert registry.production_version() is None
    mv, booster, run_id = register(registry, settings, dataset, WEAK)
    record = Production(registry).promote(mv.version)

    assert record["status"] == "success" and record["reason"] == "no champion to beat"
    assert record["champion"] is None and record["previous_version"] is None
    assert record["challenger"] == evaluate(booster, dataset.x_holdout, dataset.y_holdout)
    assert alias_version(registry) == 1 and stage(registry, 1) == names.PRODUCTION_STAGE
    assert record["blessed_path"] == str(settings.blessed_dir / "model.xgb")
    assert record["metadata_path"] == str(settings.blessed_dir / "tuning_metadata.json")
    assert settings.blessed_dir == settings.data_dir / "models" / "utility_risk_model_latest"
    assert np.array_equal(blessed_predictions(settings, dataset), booster.inplace_predict(dataset.x_holdout))

    meta = metadata(settings)
    assert meta["version"] == 1 and meta["source_run_id"] == run_id
    assert meta["aliases"] == ["production"] and meta["stage"] == "Production"
    assert meta["holdout"] == record["challenger"]
    assert meta["promotion"]["reason"] == "no champion to beat" and meta["promotion"]["version"] == 1
    assert registry.get_version(1).tags["promoted_at"] == record["promoted_at"]


def test_better_challenger_takes_over_and_the_previous_is_archived(settings, registry, dataset):
    weak, _, _ = register(registry, settings, dataset, WEAK)
    Production(registry).promote(weak.version)
    strong, strong_booster, strong_run = register(registry, settings, dataset, STRONG)
    record = Production(registry).promote(strong.version)

    assert record["status"] == "success" and record["previous_version"] == 1
    assert record["challenger"][names.AUC] > record["champion"][names.AUC]
    assert alias_version(registry) == 2
    assert stage(registry, 2) == names.PRODUCTION_STAGE and stage(registry, 1) == names.ARCHIVED_STAGE
    assert metadata(settings)["version"] == 2 and metadata(settings)["source_run_id"] == strong_run
    blessed = blessed_predictions(settings, dataset)
    assert np.array_equal(blessed, strong_booster.inplace_predict(dataset.x_holdout))
    # The blessed file and the registry's production model are the same model, to the last bit.
    assert np.array_equal(blessed, production_pyfunc_predictions(dataset))


def test_worse_challenger_is_rejected_with_both_scores_unless_forced(settings, registry, dataset):
    strong, strong_booster, _ = register(registry, settings, dataset, STRONG)
    Production(registry).promote(strong.version)
    blessed_before = (settings.blessed_dir / "model.xgb").read_bytes()
    meta_before = metadata(settings)
    weak, weak_booster, _ = register(registry, settings, dataset, WEAK)
    record = Production(registry).promote(weak.version)

    assert record["status"] == "rejected"
    assert record["challenger"] == evaluate(weak_booster, dataset.x_holdout, dataset.y_holdout)
    assert record["champion"] == evaluate(strong_booster, dataset.x_holdout, dataset.y_holdout)
    assert f"{record['challenger']['auc']:.6f}" in record["reason"]
    assert f"{record['champion']['auc']:.6f}" in record["reason"] and "does not beat" in record["reason"]
    assert record["previous_version"] == 1 and "blessed_path" not in record
    assert alias_version(registry) == 1 and stage(registry, 1) == names.PRODUCTION_STAGE
    assert stage(registry, 2) == "None"
    assert (settings.blessed_dir / "model.xgb").read_bytes() == blessed_before
    assert metadata(settings) == meta_before

    # `force` overrides the gate.
    record = Production(registry).promote(weak.version, force=True)
    assert record["status"] == "success" and record["reason"] == "forced"
    assert record["challenger"][names.AUC] < record["champion"][names.AUC]
    assert alias_version(registry) == 2 and stage(registry, 1) == names.ARCHIVED_STAGE
    assert metadata(settings)["version"] == 2
    assert np.array_equal(blessed_predictions(settings, dataset), weak_booster.inplace_predict(dataset.x_holdout))
    assert np.array_equal(blessed_predictions(settings, dataset), production_pyfunc_predictions(dataset))


def test_an_equal_challenger_does_not_replace_the_champion(settings, registry, dataset):
    first, _, _ = register(registry, settings, dataset, MEDIUM)
    Production(registry).promote(first.version)
    same, _, _ = register(registry, settings, dataset, MEDIUM)
    record = Production(registry).promote(same.version)
    assert record["challenger"] == record["champion"]
    assert record["status"] == "rejected" and alias_version(registry) == 1


def test_min_delta_is_honoured(settings, registry, dataset):
    medium, medium_booster, _ = register(registry, settings, dataset, MEDIUM)
    Production(registry).promote(medium.version)
    strong, strong_booster, _ = register(registry, settings, dataset, STRONG)
    delta = holdout_auc(strong_booster, dataset) - holdout_auc(medium_booster, dataset)
    assert delta > 0

    strict = Registry(settings.replace(min_delta=delta * 1.5))
    record = Production(strict).promote(strong.version)
    assert record["status"] == "rejected" and record["min_delta"] == delta * 1.5
    assert str(delta * 1.5) in record["reason"] and alias_version(registry) == 1

    lenient = Registry(settings.replace(min_delta=delta * 0.5))
    record = Production(lenient).promote(strong.version)
    assert record["status"] == "success" and record["min_delta"] == delta * 0.5
    assert alias_version(registry) == 2


def test_promote_reloads_the_versions_own_dataset(settings, registry):
    """Promotion without a dataset in hand rebuilds the same holdout from the version's tags."""
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    frame["label"] = (frame["a"] - frame["c"] + rng.normal(scale=0.3, size=300) > 0).astype(int)
    frame.to_parquet(settings.data_dir / "mine.parquet", index=False)
    dataset = load_dataset(settings.data_dir, "mine.parquet", "label", ["c", "a"])

    mv, booster, _ = register(registry, settings, dataset, MEDIUM)
    record = Production(registry).promote(mv.version)  # no dataset passed: reloaded from the version's tags
    assert record["challenger"] == evaluate(booster, dataset.x_holdout, dataset.y_holdout)
    assert registry.describe(mv)["dataset"]["label_column"] == "label"
    assert registry.describe(mv)["feature_names"] == ["c", "a"]


def test_a_champion_on_other_features_cannot_block(settings, registry, dataset):
    """A champion that cannot score this holdout (other feature count) is no champion to compare, once the
    change of features is allowed (without that it is refused: tests/promotion/test_journal.py)."""
    narrow = train(dataset, features=[0, 1], **STRONG)
    experiment_id = ensure_experiment(registry.client, settings, EXPERIMENT)
    run_id = registry.client.create_run(experiment_id).info.run_id
    narrow_ds = load_dataset(settings.data_dir, None, None, ["f0", "f1"])
    old = registry.register(Candidate(narrow, {}, narrow_ds, {"auc": 0.5, "logloss": 1.0}, run_id, EXPERIMENT))
    Production(registry).promote(old.version)
    mv, _, _ = register(registry, settings, dataset, WEAK)
    record = Production(registry).promote(mv.version, dataset=dataset, allow_schema_change=True)
    assert record["status"] == "success" and record["champion"] is None and record["previous_version"] == 1
    assert record["schema_change"]["added"] == [f"f{i}" for i in range(2, 10)]


# Run in a child process: mlflow.set_experiment changes process-wide state no test should leave behind.
_OTHER_ACTIVE_EXPERIMENT = textwrap.dedent("""
    import json, sys
    import mlflow, xgboost as xgb
    from seedcore.config import Settings
    from seedcore.datasets import load_dataset
    from seedcore.promotion.model_logging import Candidate, booster_from
    from seedcore.promotion.registry import Registry, ensure_experiment

    settings = Settings(data_dir=sys.argv[1], mlruns_dir=sys.argv[2])
    registry = Registry(settings)
    mlflow.set_experiment("someone_elses_notebook")  # another library, same process
    dataset = load_dataset(settings.data_dir)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 1, "nthread": 1},
                        xgb.DMatrix(dataset.x_train, dataset.y_train), 2)
    experiment_id = ensure_experiment(registry.client, settings, "ours")
    run_id = registry.client.create_run(experiment_id).info.run_id
    mv = registry.register(Candidate(booster, {}, dataset, {"auc": 0.5, "logloss": 1.0}, run_id, "ours"))
    (logged,) = registry.client.search_logged_models(experiment_ids=[experiment_id])
    from mlflow.utils import requirements_utils
    requirements = mlflow.pyfunc.get_model_dependencies(f"models:/{registry.name}/{mv.version}")
    print(json.dumps({"version": int(mv.version), "run_id": run_id, "logged_run": logged.source_run_id,
                      "mapped_modules": sorted(requirements_utils._MODULES_TO_PACKAGES or {}),
                      "requirements": open(requirements).read().split()}))
""")


@pytest.fixture(scope="module")
def registered_in_a_child(tmp_path_factory, mlflow_template) -> dict:
    """A version registered by a fresh process (its MLflow state is its own) in a store of its own."""
    root = tmp_path_factory.mktemp("child-register")
    (root / "mlruns").mkdir()
    shutil.copy(mlflow_template, root / "mlruns" / "mlflow.db")
    done = subprocess.run([sys.executable, "-c", _OTHER_ACTIVE_EXPERIMENT, str(root / "data"), str(root / "mlruns")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_register_whatever_experiment_the_process_has_active(registered_in_a_child):
    """A sweep must still register its winner after other code in the process called mlflow.set_experiment."""
    assert registered_in_a_child["version"] == 1
    assert registered_in_a_child["logged_run"] == registered_in_a_child["run_id"]


def test_a_model_is_logged_with_pinned_requirements_without_mapping_every_installed_package(registered_in_a_child):
    """The pins are what this environment runs, and MLflow's check of them did not walk every installed
    distribution (seconds of CPU a sweep's trials would lose): its map holds our four modules alone."""
    pins = {f"{name}=={module.__version__}" for name, module in
            {"mlflow": mlflow, "xgboost": xgb, "pandas": pd, "numpy": np}.items()}
    assert set(registered_in_a_child["requirements"]) == pins
    assert registered_in_a_child["mapped_modules"] == ["mlflow", "numpy", "pandas", "xgboost"]


def test_unknown_or_invalid_versions(registry):
    with pytest.raises(NotFoundError) as err:
        registry.get_version(42)
    assert err.value.field == "version" and err.value.status_code == 404
    with pytest.raises(ValidationError) as err:
        Production(registry).promote("latest")
    assert err.value.field == "version"
    assert registry.list_versions() == {"items": [], "total": 0, "limit": 20, "offset": 0}


@pytest.mark.parametrize("challenger, champion, min_delta, force, accepted", [
    (0.80, None, 0.0, False, True),
    (0.80, None, 0.5, False, True),
    (0.81, 0.80, 0.0, False, True),
    (0.80, 0.80, 0.0, False, False),
    (0.79, 0.80, 0.0, False, False),
    (0.805, 0.80, 0.01, False, False),
    (0.811, 0.80, 0.01, False, True),
    (0.50, 0.90, 0.0, True, True),
])
def test_champion_gate(challenger, champion, min_delta, force, accepted):
    decision = ChampionGate(min_delta).decide(challenger, champion, force=force)
    assert decision.accepted is accepted
    assert decision.reason
