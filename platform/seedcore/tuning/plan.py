"""A sweep's plan: the request checked and resolved (space, tune config, objectives, selection).

Everything here can be checked before Ray starts and without MLflow: a caller's mistake is a 400 naming the
field, found in the time it takes to check the data (its header, then its values in chunks) and train one
round per corner of the space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from seedcore.config import Settings
from seedcore.errors import ValidationError
from seedcore.request_models import SweepRequest
from seedcore.tuning.cluster import check_trial_fits
from seedcore.tuning.objectives import Objective, Selection, resolve_objectives, resolve_selection
from seedcore.tuning.params_check import check_request_params
from seedcore.tuning.spaces import TuneSettings, max_rounds, resolve_space, resolve_tune_config


@dataclass
class SweepPlan:
    request: SweepRequest
    space: dict[str, Any]
    tune: TuneSettings
    max_t: int = field(default=0)
    objectives: tuple[Objective, ...] = ()
    selection: Selection = field(default_factory=Selection)


def tune_settings(settings: Settings, request: SweepRequest) -> TuneSettings:
    """The request's tune config (preset, trimmed to SEEDCORE_PRESET_MAX_TRIALS, plus overrides) under the
    platform's trial and time caps."""
    return resolve_tune_config(request.config_type, request.custom_tune_config, max_trials=settings.max_trials,
                               max_time_budget_s=settings.max_time_budget_s,
                               preset_max_trials=settings.preset_max_trials)


def plan_sweep(settings: Settings, request: SweepRequest) -> SweepPlan:
    """Validate the space, the tune config and the budget; raise our errors naming the field."""
    if not isinstance(request.experiment_name, str) or not request.experiment_name.strip():
        raise ValidationError("experiment_name must be a non-empty string", field="experiment_name")
    space = resolve_space(request.space_type, request.custom_search_space)
    check_request_params(settings, request, space, "custom_search_space")  # the data + XGBoost dry run
    config = tune_settings(settings, request)
    check_trial_fits(settings.cpus_per_trial)  # a trial no node can hold would wait out the whole budget
    objectives = resolve_objectives(request.objectives)
    return SweepPlan(request, space, config, max_rounds(space), objectives,
                     resolve_selection(request.select, objectives))
