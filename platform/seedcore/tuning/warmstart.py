"""Warm start: what earlier work tells a new sweep before its first trial.

`production` seeds the production version's hyperparameters (a point to evaluate: it is re-run on
this sweep's data). `history` reads the trials of past sweeps on the same dataset (by fingerprint,
else on the same feature set and label) from MLflow, with their scores: TPE takes them as evaluated
trials and starts informed without re-running them, except the best one, re-run first to check it on
today's data; the other searchers re-run the best few.
A point outside the current search space (or with a different constant) is left out: its score
would not describe this space.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from ray.tune.search.sample import Categorical, Domain, Float, Integer

from seedcore import names
from seedcore.promotion.registry import Registry
from seedcore.promotion.version_tags import T_PARAMS
from seedcore.vocabulary import SearchAlgorithm, WarmStartMode

NONE, PRODUCTION, HISTORY = WarmStartMode.NONE, WarmStartMode.PRODUCTION, WarmStartMode.HISTORY
TAG_SOURCE = "seedcore.warm_start_source"  # on a trial's run: where its config came from
MAX_PAST_SWEEPS = 20
MAX_EVALUATED = 200  # past trials handed to TPE with their scores
MAX_RERUN = 5  # past configs re-run first by searchers that cannot take scores
MAX_LISTED_SOURCES = 20


@dataclass
class WarmStart:
    """Points for the searcher (with rewards when it can take them) and where each came from."""

    mode: str = NONE
    points: list[dict] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    sources: list[dict] = field(default_factory=list)
    rerun: list[dict] = field(default_factory=list)  # scored points that also run again (first)
    note: str | None = None

    @property
    def seeded(self) -> int:
        return len(self.points)

    def describe(self) -> dict:
        out = {"mode": self.mode, "seeded": self.seeded, "scored": bool(self.rewards),
               "sources": self.sources[:MAX_LISTED_SOURCES]}
        if self.note:
            out["note"] = self.note
        return out


def gather(registry: Registry, mode: str, dataset, space: Mapping[str, Any], alg: str, metric: str,
           obj_mode: str, budget: int) -> WarmStart:
    """The warm start for `mode` ("none", "production", "history") on this dataset and space.

    Re-run points never take more than half of the sweep's `budget` trials (at least one).
    """
    if mode == PRODUCTION:
        return _from_production(registry, space)
    if mode == HISTORY:
        return _from_history(registry.client, dataset, space, alg, metric, obj_mode, max(1, min(MAX_RERUN, budget // 2)))
    return WarmStart()


def _from_production(registry: Registry, space: Mapping[str, Any]) -> WarmStart:
    mv = registry.production_version()
    if mv is None:
        return WarmStart(PRODUCTION, note="no production version: the sweep ran without a warm start")
    config = fit_to_space(json.loads(mv.tags.get(T_PARAMS, "{}")), space, partial=True)
    if config is None:
        return WarmStart(PRODUCTION, note=f"version {mv.version}'s hyperparameters lie outside this search space")
    return WarmStart(PRODUCTION, [config], [], [{"model_version": int(mv.version), "run_id": mv.run_id}])


def _from_history(client: MlflowClient, dataset, space: Mapping[str, Any], alg: str, metric: str,
                  obj_mode: str, rerun: int) -> WarmStart:
    trials = past_trials(client, dataset, metric)
    seen, points, rewards, sources = set(), [], [], []
    for run, score in sorted(trials, key=lambda t: t[1], reverse=obj_mode == "max"):
        config = fit_to_space(_params(run), space)
        key = json.dumps(config, sort_keys=True)
        if config is None or key in seen:
            continue
        seen.add(key)
        points.append(config)
        rewards.append(score)
        sources.append({"run_id": run.info.run_id, "parent_run_id": run.data.tags.get(names.TAG_PARENT_RUN),
                        metric: score})
    if not points:
        return WarmStart(HISTORY, note="no past trials on this dataset or feature set: the sweep ran as warm_start none")
    if alg != SearchAlgorithm.TPE:  # re-run the best few; scores only inform TPE
        points, rewards, sources = points[:rerun], [], sources[:rerun]
    return WarmStart(HISTORY, points[:MAX_EVALUATED], rewards[:MAX_EVALUATED], sources, rerun=points[:1])


def past_trials(client: MlflowClient, dataset, metric: str) -> list[tuple[Any, float]]:
    """(run, final score) of every trial that trained to the end in past sweeps on this data."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    parents = _past_sweeps(client, experiments, f"tags.`{names.TAG_FINGERPRINT}` = '{dataset.fingerprint}'")
    if not parents:  # same columns, other rows (e.g. last month's data): still the best prior we have
        features = ",".join(dataset.feature_names).replace("'", "")
        parents = _past_sweeps(client, experiments, f"params.`data.features` = '{features}' and "
                                                    f"params.`data.label_column` = '{dataset.label_column}'")
    out = []
    for parent in parents:
        children = client.search_runs([parent.info.experiment_id], max_results=1000,
                                      filter_string=f"tags.`{names.TAG_PARENT_RUN}` = '{parent.info.run_id}' "
                                                    f"and attributes.status = 'FINISHED'")
        out += [(run, float(run.data.metrics[f"final_{metric}"])) for run in children
                if f"final_{metric}" in run.data.metrics]
    return out


def _past_sweeps(client: MlflowClient, experiments: list[str], condition: str) -> list:
    try:
        return list(client.search_runs(experiments, filter_string=f"tags.`{names.TAG_SWEEP}` = 'true' and {condition}",
                                       order_by=["attributes.start_time DESC"], max_results=MAX_PAST_SWEEPS))
    except MlflowException:  # e.g. a label name MLflow's filter grammar cannot hold: no history, not a failure
        return []


def _params(run) -> dict:
    return {key: _value(text) for key, text in run.data.params.items()}


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def fit_to_space(config: Mapping[str, Any], space: Mapping[str, Any], partial: bool = False) -> dict | None:
    """The config's values for the space's searched keys, or None if any lies outside its domain.

    A past constant that differs from this space's (e.g. another num_boost_round) makes the config
    incomparable, so it is left out; `partial` (production) tolerates that and missing keys.
    """
    out = {}
    for key, domain in space.items():
        if key not in config:
            if partial or not isinstance(domain, Domain):
                continue
            return None
        value = config[key]
        if not isinstance(domain, Domain):
            if value != domain and not partial:
                return None
            continue
        if not _inside(domain, value):
            return None
        out[key] = value
    return out or None


def _inside(domain: Domain, value: Any) -> bool:
    if isinstance(domain, Categorical):
        return value in domain.categories
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(domain, Integer):
        return value == int(value) and domain.lower <= value < domain.upper
    return isinstance(domain, Float) and domain.lower <= value <= domain.upper
