"""Salience: how much an event matters, in [0, 1]. Higher means remember it first.

The formula, per event type (every result is clamped to [0, 1]):

    lift = clip((auc - champion_auc) / FULL_GAIN, 0, 1)   with a champion
         = clip((auc - 0.5) / 0.5, 0, 1)                   without one (lift over a coin flip)

    model_tuning_completed    0.5 + 0.5 * lift        a gain of FULL_GAIN (0.05 AUC) or more -> 1.0
    model_promoted            0.6 + 0.4 * lift
    model_promotion_rejected  0.3 + 0.1 * drop        drop = clip((champion_auc - auc) / FULL_GAIN, 0, 1):
                                                      a challenger far worse than the champion is notable
    model_tuning_failed       0.6, or 0.9 for a production experiment
    model_refreshed           0.2

Each is monotone (non-decreasing) in its effect size: the AUC gain, or the AUC drop for a rejection.
"""

from __future__ import annotations

import math
import re

from seedcore.errors import ValidationError

FULL_GAIN = 0.05  # an AUC gain this large over the champion is as memorable as it gets
COIN_FLIP_AUC = 0.5
FAILED = 0.6
FAILED_PRODUCTION = 0.9
REFRESHED = 0.2
_PRODUCTION_NAME = re.compile(r"(^|[^a-z])prod(uction)?([^a-z]|$)")


def clamp(value: float) -> float:
    """`value` limited to [0, 1]."""
    return min(1.0, max(0.0, float(value)))


def _check_auc(value: float | None, field: str) -> None:
    if value is None and field == "champion_auc":
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError(f"{field} must be a finite number, got {value!r}", field=field)


def lift(auc: float, champion_auc: float | None = None) -> float:
    """The effect size in [0, 1]: AUC gain over the champion (or over a coin flip when there is none)."""
    _check_auc(auc, "auc")
    _check_auc(champion_auc, "champion_auc")
    if champion_auc is None:
        return clamp((auc - COIN_FLIP_AUC) / (1.0 - COIN_FLIP_AUC))
    return clamp((auc - champion_auc) / FULL_GAIN)


def tuning_completed(auc: float, champion_auc: float | None = None) -> float:
    """A sweep finished: 0.5 plus up to 0.5 for the challenger's lift."""
    return clamp(0.5 + 0.5 * lift(auc, champion_auc))


def model_promoted(auc: float, champion_auc: float | None = None) -> float:
    """A new production model: 0.6 plus up to 0.4 for its lift."""
    return clamp(0.6 + 0.4 * lift(auc, champion_auc))


def promotion_rejected(auc: float, champion_auc: float | None) -> float:
    """The champion gate said no: 0.3 plus up to 0.1 for how far the challenger fell short."""
    _check_auc(auc, "auc")
    _check_auc(champion_auc, "champion_auc")
    drop = 0.0 if champion_auc is None else clamp((champion_auc - auc) / FULL_GAIN)
    return clamp(0.3 + 0.1 * drop)


def tuning_failed(production: bool = False) -> float:
    """A sweep failed: 0.6, or 0.9 when it was meant for production."""
    return FAILED_PRODUCTION if production else FAILED


def model_refreshed() -> float:
    """Serving picked up a new model version: routine, 0.2."""
    return REFRESHED


def looks_production(experiment_name: str | None) -> bool:
    """True when the experiment name has a `prod` or `production` word (e.g. `churn-prod`)."""
    return bool(experiment_name) and bool(_PRODUCTION_NAME.search(experiment_name.lower()))
