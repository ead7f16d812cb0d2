"""Sweeps with the search features, end to end on real Ray, MLflow (SQLite) and XGBoost: the algorithm
really used (random, tpe, qmc), each preset with its own space and scheduler, the refit on training +
validation rows, warm start from history, objectives and selection.

Sweeps run once per module; the warm-start ones share the first sweep's store (its history).
"""

from __future__ import annotations

import json
import shutil
import warnings
from types import SimpleNamespace

import optuna
import pytest
from mlflow import MlflowClient
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.sample import Categorical, Domain

from seedcore import names
from seedcore.config import REFIT_ALL_CPUS_ROWS, Settings
from seedcore.datasets import load_dataset
from seedcore.errors import ValidationError
from seedcore.promotion import followups
from seedcore.scoring import evaluate
from seedcore.promotion.registry import Registry
from seedcore.tuning import run_sweep
from seedcore.tuning import tuner as tuner_module
from seedcore.tuning.search import TPE_STARTUP_TRIALS
from seedcore.tuning.spaces import NUM_BOOST_ROUND, SPACES, TUNE_CONFIGS, describe_space, resolve_space
from seedcore.tuning.trainable import CONFIG_ATTR
from seedcore.tuning.winner import TRAIN_ROWS
from seedcore.tuning.warmstart import TAG_SOURCE

pytestmark = pytest.mark.integration

BASE = {"space_type": "conservative", "config_type": "conservative", "promote": False}
SEARCHED = ("eta", "max_depth", "subsample", "colsample_bytree", "lambda", "alpha")
# Stumps or depth-6 trees: model sizes far apart, so a size bound splits the trials.
SIZE_SPACE = {"max_depth": {"type": "choice", "values": [1, 6]}, "eta": {"type": "uniform", "lower": 0.1, "upper": 0.3},
              "num_boost_round": 20}
SIZE_CAP = 30_000  # 20 stumps take about 18 kB, 20 depth-6 trees about 60 kB


def new_store(tmp_path_factory, mlflow_template, name: str) -> Settings:
    root = tmp_path_factory.mktemp(name)
    (root / "mlruns").mkdir()
    shutil.copy(mlflow_template, root / "mlruns" / "mlflow.db")
    settings = Settings(data_dir=root / "data", mlruns_dir=root / "mlruns")
    settings.ensure_dirs()
    return settings


@pytest.fixture(scope="module")
def store(tmp_path_factory, mlflow_template, ray_session) -> Settings:
    return new_store(tmp_path_factory, mlflow_template, "search")


def sweep(settings: Settings, name: str, **request) -> SimpleNamespace:
    result = run_sweep(settings, experiment_name=name, **{**BASE, **request})
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
    parent = client.get_run(result["mlflow"]["parent_run_id"])
    children = client.search_runs([parent.info.experiment_id], max_results=500,
                                  filter_string=f"tags.`{names.TAG_PARENT_RUN}` = '{parent.info.run_id}'")
    return SimpleNamespace(settings=settings, result=result, client=client, parent=parent, children=list(children))


def configs(s) -> list[dict]:
    return [{k: json.loads(run.data.params[k]) for k in SEARCHED} for run in s.children]


@pytest.fixture(scope="module")
def first(store):
    # history asked for on an empty store: the sweep runs as warm_start none and says so
    return sweep(store, "search_first", warm_start="history",
                 custom_tune_config={"num_samples": 6, "search_alg": "tpe", "seed": 3, "max_concurrent_trials": 2})


@pytest.fixture(scope="module")
def warm_tpe(first):
    return sweep(first.settings, "search_warm_tpe", warm_start="history",
                 custom_tune_config={"num_samples": 3, "search_alg": "tpe", "seed": 4})


@pytest.fixture(scope="module")
def warm_random(first, warm_tpe):
    return sweep(first.settings, "search_warm_random", warm_start="history", refit=False,
                 custom_tune_config={"num_samples": 4, "search_alg": "random", "seed": 5})


def test_tpe_sweep_runs_exactly_the_configs_of_a_seeded_tpe_sampler(first):
    """Trial order from the searcher's own state: a TPE sampler with the same seed suggests the same configs."""
    space = OptunaSearch.convert_search_space(resolve_space("conservative", None))
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=3, n_startup_trials=TPE_STARTUP_TRIALS))
    expected = [study.ask(fixed_distributions=space).params for _ in range(6)]
    rounded = lambda cs: sorted(json.dumps({k: round(v, 9) for k, v in c.items()}, sort_keys=True) for c in cs)
    assert rounded(configs(first)) == rounded(expected)
    assert first.result["tune_config"]["search_alg"] == "tpe"
    assert first.parent.data.params["tune.search_alg"] == "tpe"


@pytest.fixture(scope="module")
def other_store(tmp_path_factory, mlflow_template, ray_session) -> Settings:
    """A store apart from `store`, whose sweeps are the history the warm-start sweeps read."""
    return new_store(tmp_path_factory, mlflow_template, "search-apart")


@pytest.fixture(scope="module")
def qmc(other_store):
    return sweep(other_store, "search_qmc", refit=False,
                 custom_tune_config={"num_samples": 4, "search_alg": "qmc", "seed": 7})


def test_qmc_sweep_runs_exactly_the_configs_of_a_seeded_qmc_sampler(qmc):
    """The scrambled Sobol sequence of Optuna's QMC sampler with the same seed (its first point is random)."""
    space = OptunaSearch.convert_search_space(resolve_space("conservative", None))
    with warnings.catch_warnings():  # "QMCSampler is experimental": stable since Optuna 3
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.QMCSampler(seed=7, scramble=True, warn_independent_sampling=False)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    expected = [study.ask(fixed_distributions=space).params for _ in range(4)]
    rounded = lambda cs: sorted(json.dumps({k: round(v, 9) for k, v in c.items()}, sort_keys=True) for c in cs)
    assert rounded(configs(qmc)) == rounded(expected)
    assert qmc.result["tune_config"]["search_alg"] == "qmc" and qmc.parent.data.params["tune.search_alg"] == "qmc"
    assert qmc.result["trials"]["completed"] >= 1 and qmc.result["model_version"] >= 1


def test_random_search_is_not_tpe(warm_random):
    assert warm_random.parent.data.params["tune.search_alg"] == "random"
    assert warm_random.result["tune_config"]["search_alg"] == "random"


def test_refit_trains_on_training_plus_validation_rows_and_registers_that_model(first):
    dataset = load_dataset(first.settings.data_dir)
    rows = len(dataset.y_train) + len(dataset.y_valid)
    result = first.result
    assert result["refit"] == {"enabled": True, "train_rows": rows, "rounds": result["best_trial"]["best_iteration"] + 1}
    registry = Registry(first.settings)
    version = registry.get_version(result["model_version"])
    assert version.tags[TRAIN_ROWS] == str(rows)
    assert first.client.get_run(version.run_id).data.tags[TRAIN_ROWS] == str(rows)
    booster = registry.load_booster(version)
    assert booster.num_boosted_rounds() == result["best_trial"]["best_iteration"] + 1
    # small data: trained on a trial's one thread (every CPU from REFIT_ALL_CPUS_ROWS rows: test_winner.py)
    assert rows < REFIT_ALL_CPUS_ROWS and first.settings.cpus_per_trial == 1
    assert json.loads(booster.attr(CONFIG_ATTR))["learner"]["generic_param"]["nthread"] == "1"
    # the result's holdout scores are the registered (refit) model's
    assert evaluate(booster, dataset.x_holdout, dataset.y_holdout) == pytest.approx(result["holdout"])


def test_refit_false_registers_the_trials_own_model(warm_random):
    dataset = load_dataset(warm_random.settings.data_dir)
    assert warm_random.result["refit"]["enabled"] is False
    version = Registry(warm_random.settings).get_version(warm_random.result["model_version"])
    assert version.tags[TRAIN_ROWS] == str(len(dataset.y_train))


def test_history_without_history_runs_as_none_and_says_so(first):
    warm = first.result["warm_start"]
    assert warm["mode"] == "history" and warm["seeded"] == 0 and warm["sources"] == []
    assert "ran as warm_start none" in warm["note"]


def completed(s) -> dict[str, object]:
    return {run.info.run_id: run for run in s.children if "final_auc" in run.data.metrics}


def test_tpe_warm_start_feeds_past_trials_with_their_scores_and_reruns_only_the_best(first, warm_tpe):
    past = completed(first)
    warm = warm_tpe.result["warm_start"]
    assert warm["scored"] is True and warm["seeded"] == len(past) > 0
    assert {s["run_id"] for s in warm["sources"]} == set(past)
    for source in warm["sources"]:
        assert source["auc"] == pytest.approx(past[source["run_id"]].data.metrics["final_auc"])
    best = max(past.values(), key=lambda r: r.data.metrics["final_auc"])
    assert len(warm["seeded_trials"]) == 1  # TPE took the rest as evaluated trials: only the incumbent re-ran
    (rerun,) = [r for r in warm_tpe.children if r.data.tags[names.TAG_TRIAL_ID] in warm["seeded_trials"]]
    assert json.loads(rerun.data.tags[TAG_SOURCE])["run_id"] == best.info.run_id
    new = [json.dumps(c, sort_keys=True) for c in configs(warm_tpe)]
    old = [json.dumps(c, sort_keys=True) for c in configs(first)]
    assert sum(c in old for c in new) == 1
    params = warm_tpe.parent.data.params
    assert params["warm_start.mode"] == "history" and params["warm_start.seeded"] == str(len(past))


def test_random_warm_start_reruns_the_best_past_configs_and_tags_them(first, warm_tpe, warm_random):
    warm = warm_random.result["warm_start"]
    assert warm["scored"] is False and warm["seeded"] == 2 == len(warm["seeded_trials"])
    past = {**completed(first), **completed(warm_tpe)}
    distinct: dict[str, float] = {}  # the best score of each distinct past config
    for run in past.values():
        key = json.dumps({k: json.loads(run.data.params[k]) for k in SEARCHED}, sort_keys=True)
        distinct[key] = max(distinct.get(key, 0.0), run.data.metrics["final_auc"])
    assert [s["auc"] for s in warm["sources"]] == pytest.approx(sorted(distinct.values(), reverse=True)[:2])
    for run in warm_random.children:
        if run.data.tags[names.TAG_TRIAL_ID] not in warm["seeded_trials"]:
            assert TAG_SOURCE not in run.data.tags
            continue
        source = past[json.loads(run.data.tags[TAG_SOURCE])["run_id"]]
        assert {k: json.loads(run.data.params[k]) for k in SEARCHED} == {
            k: json.loads(source.data.params[k]) for k in SEARCHED}


@pytest.fixture(scope="module")
def multi(store):
    return sweep(store, "search_multi", custom_search_space=SIZE_SPACE,
                 objectives=[{"metric": "auc", "mode": "max"}, {"metric": "model_bytes", "mode": "min"}],
                 select={"model_bytes": {"max": SIZE_CAP}},
                 custom_tune_config={"num_samples": 6, "search_alg": "random", "seed": 2, "grace_period": 20})


def test_pareto_front_is_non_dominated_and_constraints_hold_for_the_registered_model(multi):
    front = multi.result["pareto_front"]
    assert front and all(set(p) == {"trial_id", "auc", "model_bytes"} for p in front)
    for a in front:
        for b in front:
            assert a is b or not (a["auc"] >= b["auc"] and a["model_bytes"] <= b["model_bytes"])
    # the best-AUC trial of the whole sweep is on the front
    best = max(completed(multi).values(), key=lambda r: r.data.metrics["final_auc"])
    assert front[0]["auc"] == pytest.approx(best.data.metrics["final_auc"])
    sizes = {p["model_bytes"] for p in front}
    assert min(sizes) <= SIZE_CAP < max(sizes), "the space must give trials on both sides of the cap"
    registry = Registry(multi.settings)
    booster = registry.load_booster(registry.get_version(multi.result["model_version"]))
    assert len(booster.save_raw("ubj")) <= SIZE_CAP
    chosen = multi.result["best_trial"]["trial_id"]
    assert chosen == max((p for p in front if p["model_bytes"] <= SIZE_CAP), key=lambda p: p["auc"])["trial_id"]
    # its table and picture: logged after the answer, a follow-up of its own
    assert multi.result["followups"][followups.PARETO_FRONT] == followups.PENDING
    assert followups.wait(multi.parent.info.run_id, 120)[followups.PARETO_FRONT] == followups.DONE
    artifacts = {a.path for a in multi.client.list_artifacts(multi.parent.info.run_id)}
    assert {"pareto_front.json", "pareto_front.png"} <= artifacts


def test_constraints_no_trial_meets_register_nothing(store):
    with pytest.raises(ValidationError) as err:
        run_sweep(store, experiment_name="search_unmet", **BASE, custom_search_space=SIZE_SPACE,
                  objectives=[{"metric": "auc", "mode": "max"}, {"metric": "model_bytes", "mode": "min"}],
                  select={"model_bytes": {"max": 10}}, custom_tune_config={"num_samples": 2})
    assert err.value.field == "select" and "nothing was registered" in err.value.message
    client = MlflowClient(tracking_uri=store.tracking_uri, registry_uri=store.registry_uri)
    experiment = client.get_experiment_by_name("search_unmet")
    runs = client.search_runs([experiment.experiment_id])
    assert runs and all(r.info.status != "RUNNING" for r in runs)
    assert all(v.run_id not in {r.info.run_id for r in runs}
               for v in client.search_model_versions(f"name = '{store.model_name}'"))
    (parent,) = [r for r in runs if names.TAG_PARENT_RUN not in r.data.tags]
    # no version, no follow-ups: the front the error describes is on the parent run when it answers
    assert {"pareto_front.json", "pareto_front.png"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}


# -- each preset end to end: its own space, ASHA schedule and search algorithm; two trials -------------
PRESET_TRIALS = 2  # the request's tune config caps the preset's budget (num_samples), nothing else changes


@pytest.fixture(scope="module", params=sorted(SPACES))
def preset(request, other_store):
    name = request.param
    swept = sweep(other_store, f"preset_{name}", space_type=name, config_type=name,
                  custom_tune_config={"num_samples": PRESET_TRIALS})
    swept.name = name
    return swept


def rungs(grace: int, factor: float, rounds: int) -> set[int]:
    """Where the preset's ASHA compares trials: grace * factor**k, below the trial's last round."""
    return {int(grace * factor ** k) for k in range(12) if grace * factor ** k < rounds}


def test_each_preset_sweeps_with_its_own_tune_config(preset):
    own = TUNE_CONFIGS[preset.name]
    assert preset.result["tune_config"] == {**own.as_dict(), "num_samples": PRESET_TRIALS}
    params = preset.parent.data.params
    for key in ("search_alg", "grace_period", "reduction_factor", "max_concurrent_trials", "time_budget_s"):
        assert params[f"tune.{key}"] == str(getattr(own, key)), key
    assert {k: params[f"space.{k}"] for k in SPACES[preset.name]} == describe_space(SPACES[preset.name])
    trials = preset.result["trials"]
    assert trials["total"] == PRESET_TRIALS == trials["completed"] + trials["pruned"] and trials["completed"] >= 1
    assert trials["errored"] == trials["killed"] == 0
    assert 0.5 < preset.result["holdout"]["auc"] <= 1 and preset.result["model_version"] >= 1


def test_each_preset_samples_its_own_space(preset):
    space = resolve_space(preset.name, None)
    assert len(preset.children) == PRESET_TRIALS
    for run in preset.children:
        sampled = run.data.params
        assert set(sampled) == set(space)
        for key, domain in space.items():
            if isinstance(domain, Categorical):
                assert json.loads(sampled[key]) in domain.categories, key
            elif isinstance(domain, Domain):  # uniform, loguniform, randint: [lower, upper)
                assert domain.lower <= float(sampled[key]) < domain.upper, (key, sampled[key])
            else:
                assert sampled[key] == (json.dumps(domain) if isinstance(domain, list) else str(domain)), key


def test_each_preset_prunes_on_its_own_asha_rungs(preset):
    own = TUNE_CONFIGS[preset.name]
    early_stopping = "early_stopping_rounds" in SPACES[preset.name]
    for run in preset.children:
        rounds = int(run.data.params[NUM_BOOST_ROUND])
        steps = sorted(m.step for m in preset.client.get_metric_history(run.info.run_id, names.AUC))
        assert steps == list(range(1, len(steps) + 1))
        if run.data.tags[names.TAG_PRUNED] == "true":
            assert len(steps) in rungs(own.grace_period, own.reduction_factor, rounds), len(steps)
        elif early_stopping:
            assert len(steps) <= rounds
        else:
            assert len(steps) == rounds  # ran every round: not stopped anywhere else


def test_a_cost_first_objective_holds_when_trials_outlast_the_report_interval(store, monkeypatch):
    # progress reports every millisecond: a report without the first objective (known only at the end)
    # would fail Tune's metric check, as a slow round on a busy machine once made it
    monkeypatch.setattr(tuner_module, "REPORT_INTERVAL_S", 0.001)
    result = sweep(store, "search_cost_first", custom_search_space={"max_depth": 6, "num_boost_round": 300},
                   objectives=[{"metric": "training_time", "mode": "min"}, {"metric": "auc", "mode": "max"}],
                   custom_tune_config={"num_samples": 2, "search_alg": "random", "seed": 3}).result
    assert result["trials"]["completed"] == 2, result["trials"]
    assert result["best_trial"]["training_time"] > 0
