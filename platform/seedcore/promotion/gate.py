"""The champion gate: a challenger is promoted only when it beats the champion's holdout AUC by `min_delta`,
and only onto the same features unless a schema change is allowed."""

from __future__ import annotations

import json
from dataclasses import dataclass

from seedcore.promotion.version_tags import T_FEATURES


@dataclass(frozen=True)
class GateDecision:
    accepted: bool
    reason: str


class ChampionGate:
    """Promote a challenger only if it beats the champion's holdout AUC by `min_delta`."""

    def __init__(self, min_delta: float = 0.0):
        self.min_delta = min_delta

    def decide(self, challenger_auc: float, champion_auc: float | None, force: bool = False) -> GateDecision:
        if force:
            return GateDecision(True, "forced")
        if champion_auc is None:
            return GateDecision(True, "no champion to beat")
        if challenger_auc > champion_auc + self.min_delta or (self.min_delta == 0 and challenger_auc == champion_auc == 1.0):
            return GateDecision(True, f"holdout AUC {challenger_auc:.6f} beats champion {champion_auc:.6f} "
                                      f"by more than min_delta {self.min_delta}")
        return GateDecision(False, f"holdout AUC {challenger_auc:.6f} does not beat champion {champion_auc:.6f} "
                                   f"by more than min_delta {self.min_delta}")


def schema_change(mv, champion_mv) -> dict | None:
    """How `mv`'s feature names differ from the champion's (a message and the lists), None when they do not
    (or either is unknown). Order counts: XGBoost reads features by position."""
    if champion_mv is None or champion_mv.version == mv.version:
        return None
    new, old = _feature_names(mv), _feature_names(champion_mv)
    if new is None or old is None or new == old:
        return None
    added = [n for n in dict.fromkeys(new) if n not in old]
    removed = [n for n in dict.fromkeys(old) if n not in new]
    duplicated = sorted({n for n in new if new.count(n) > 1})
    parts = [f"added {added}" if added else "", f"removed {removed}" if removed else "",
             f"duplicated {duplicated}" if duplicated else "",
             "the same names in another order" if not (added or removed or duplicated) else ""]
    message = (f"version {mv.version} was trained on other features than production version "
               f"{champion_mv.version}: {', '.join(p for p in parts if p)}")
    return {"message": message, "production_version": int(champion_mv.version), "production_features": old,
            "features": new, "added": added, "removed": removed, "duplicated": duplicated}


def _feature_names(mv) -> list[str] | None:
    """The feature names a version was trained on, from its tag; None when it has none."""
    try:
        names_ = json.loads((mv.tags or {}).get(T_FEATURES) or "null")
    except ValueError:
        return None
    return [str(n) for n in names_] if isinstance(names_, list) and names_ else None
