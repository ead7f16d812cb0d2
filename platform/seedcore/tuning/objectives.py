"""What a sweep optimises: one or more objectives, the Pareto front, and the rule that picks the winner.

The first objective drives the search and ASHA (when it is a per-round metric). With several
objectives, every trial that trained to the end is a point; the front holds the non-dominated ones,
and `select` picks the one to register: the best on the first objective ("best"), the knee of the
front ("knee", nearest to the ideal point once each objective is scaled to [0, 1]), or the best on
the first objective among those that meet constraints such as `{"model_bytes": {"max": 200000}}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from seedcore.errors import ValidationError
from seedcore.names import AUC, LOGLOSS
from seedcore.tuning.trainable import MODEL_BYTES, PREDICT_US, TRAINING_TIME

METRICS = (AUC, LOGLOSS, MODEL_BYTES, PREDICT_US, TRAINING_TIME)
PER_ROUND = (AUC, LOGLOSS)  # reported every round: ASHA can prune on these
MEASURED = (MODEL_BYTES, PREDICT_US)  # measured by the trainable only when an objective names them
SELECT_RULES = ("best", "knee")


@dataclass(frozen=True)
class Objective:
    metric: str
    mode: str  # "max" | "min"

    def better(self, a: float, b: float) -> bool:
        return a > b if self.mode == "max" else a < b

    def describe(self) -> dict:
        """As an answer and its Pareto front's follow-up name it."""
        return {"metric": self.metric, "mode": self.mode}


DEFAULT_OBJECTIVES = (Objective(AUC, "max"),)


@dataclass(frozen=True)
class Selection:
    """How the winner is picked: a rule, or constraints per metric as (min, max)."""

    rule: str = "best"
    constraints: tuple[tuple[str, float | None, float | None], ...] = ()

    def describe(self) -> Any:
        if not self.constraints:
            return self.rule
        return {m: {k: v for k, v in (("min", lo), ("max", hi)) if v is not None} for m, lo, hi in self.constraints}


def resolve_objectives(objectives: Sequence[Any] | None) -> tuple[Objective, ...]:
    """The request's objectives (pydantic models or dicts) as ours; none means validation AUC, maximised."""
    if not objectives:
        return DEFAULT_OBJECTIVES
    out = []
    for i, item in enumerate(objectives):
        spec = item if isinstance(item, Mapping) else item.model_dump()
        metric, mode = spec.get("metric"), spec.get("mode")
        if metric not in METRICS:
            raise ValidationError(f"unknown metric {metric!r}; choose from {list(METRICS)}", field=f"objectives.{i}.metric")
        if mode not in ("max", "min"):
            raise ValidationError(f"mode must be 'max' or 'min', got {mode!r}", field=f"objectives.{i}.mode")
        if any(o.metric == metric for o in out):
            raise ValidationError(f"{metric} is named twice", field=f"objectives.{i}.metric")
        out.append(Objective(metric, mode))
    return tuple(out)


def resolve_selection(select: Any, objectives: Sequence[Objective]) -> Selection:
    """The request's `select` as a Selection; constraints may name any metric we measure."""
    if select is None or isinstance(select, str):
        rule = select or "best"
        if rule not in SELECT_RULES:
            raise ValidationError(f"select must be one of {list(SELECT_RULES)} or constraints", field="select")
        if rule == "knee" and len(objectives) < 2:
            raise ValidationError("select 'knee' needs at least two objectives", field="select")
        return Selection(rule)
    if not isinstance(select, Mapping) or not select:
        raise ValidationError("select constraints must be a non-empty object", field="select")
    constraints = []
    for metric, bound in select.items():
        spec = bound if isinstance(bound, Mapping) else bound.model_dump()
        lo, hi = spec.get("min"), spec.get("max")
        if metric not in METRICS:
            raise ValidationError(f"unknown metric {metric!r}; choose from {list(METRICS)}", field=f"select.{metric}")
        if lo is None and hi is None:
            raise ValidationError("give min, max or both", field=f"select.{metric}")
        if lo is not None and hi is not None and lo > hi:
            raise ValidationError(f"min {lo} is above max {hi}", field=f"select.{metric}")
        constraints.append((metric, lo, hi))
    return Selection("constraints", tuple(constraints))


def measured_metrics(objectives: Sequence[Objective], selection: Selection) -> tuple[str, ...]:
    """Which costly measurements the trainable must take (only those asked for)."""
    wanted = {o.metric for o in objectives} | {m for m, _, _ in selection.constraints}
    return tuple(m for m in MEASURED if m in wanted)


def dominates(a: Mapping[str, float], b: Mapping[str, float], objectives: Sequence[Objective]) -> bool:
    """a is at least as good as b on every objective and strictly better on one."""
    not_worse = all(not o.better(b[o.metric], a[o.metric]) for o in objectives)
    return not_worse and any(o.better(a[o.metric], b[o.metric]) for o in objectives)


def pareto_front(points: Sequence[Mapping[str, float]], objectives: Sequence[Objective]) -> list[Mapping]:
    """The non-dominated points, best first on the first objective."""
    front = [p for p in points if not any(dominates(q, p, objectives) for q in points if q is not p)]
    first = objectives[0]
    return sorted(front, key=lambda p: p[first.metric], reverse=first.mode == "max")


def meets(point: Mapping[str, float], selection: Selection) -> bool:
    return all((lo is None or point[m] >= lo) and (hi is None or point[m] <= hi) for m, lo, hi in selection.constraints)


def select_point(points: Sequence[Mapping[str, float]], objectives: Sequence[Objective],
                 selection: Selection) -> Mapping | None:
    """The point to register, or None when no point meets the constraints."""
    candidates = [p for p in points if meets(p, selection)]
    if not candidates:
        return None
    if selection.rule == "knee":
        return knee(pareto_front(candidates, objectives), objectives)
    first = objectives[0]
    return pareto_front(candidates, objectives)[0] if len(objectives) > 1 else \
        max(candidates, key=lambda p: p[first.metric] if first.mode == "max" else -p[first.metric])


def knee(front: Sequence[Mapping[str, float]], objectives: Sequence[Objective]) -> Mapping:
    """The front point nearest the ideal one, each objective scaled to [0, 1] over the front."""
    def gap(point: Mapping[str, float]) -> float:
        total = 0.0
        for o in objectives:
            values = [p[o.metric] for p in front]
            lo, hi = min(values), max(values)
            best = hi if o.mode == "max" else lo
            total += ((best - point[o.metric]) / (hi - lo)) ** 2 if hi > lo else 0.0
        return math.sqrt(total)

    return min(front, key=gap)
