"""A registered version described in words (MLflow shows it, as Markdown, on the version's page): what it
was trained on, how it scored on validation and holdout, its parameters, and the champion gate's decision."""

from __future__ import annotations

import json
import logging

from seedcore.promotion import version_tags as vt
from seedcore.vocabulary import PromotionStatus

log = logging.getLogger(__name__)

_GATE = {PromotionStatus.SUCCESS: "promoted to production", PromotionStatus.REJECTED: "not promoted",
         PromotionStatus.UNCHANGED: "already in production"}



def version_description(tags: dict, decision: dict | None = None) -> str:
    """The text for a version with registry `tags` (see seedcore.promotion.version_tags) and, once the
    champion gate has spoken, its promotion record (`status`, `reason`, `previous_version`)."""
    lines = [
        f"XGBoost binary classifier from experiment `{tags.get(vt.T_EXPERIMENT) or '?'}`"
        + (f", trial `{tags[vt.T_TRIAL]}`" if tags.get(vt.T_TRIAL) else "")
        + f" (run `{tags.get(vt.T_SOURCE_RUN, '?')}`).",
        f"Trained on `{tags.get(vt.T_DATA_SOURCE) or 'the built-in dataset'}` (label `{tags.get(vt.T_LABEL)}`, "
        f"{len(json.loads(tags.get(vt.T_FEATURES) or '[]'))} features, fingerprint `{tags.get(vt.T_FINGERPRINT)}`).",
        f"Validation: AUC {_fmt(tags.get(vt.T_VALID_AUC))}, logloss {_fmt(tags.get(vt.T_VALID_LOGLOSS))}. "
        f"Holdout (never seen in tuning): AUC {_fmt(tags.get(vt.T_HOLDOUT_AUC))}, "
        f"logloss {_fmt(tags.get(vt.T_HOLDOUT_LOGLOSS))}.",
        "Parameters: " + (", ".join(f"{k}={_short(v)}" for k, v in json.loads(tags.get(vt.T_PARAMS) or "{}").items())
                          or "XGBoost's defaults") + ".",
        _gate_line(decision),
    ]
    return "\n\n".join(lines)


def describe(client, name: str, version, tags: dict, decision: dict | None = None) -> None:
    """Set the version's description; raises what the registry raises."""
    client.update_model_version(name, str(version), description=version_description(tags, decision))


def write_description(client, name: str, version, tags: dict, decision: dict | None = None) -> None:
    """`describe`, with a registry hiccup logged, never raised (a promotion must not fail for a nicety)."""
    try:
        describe(client, name, version, tags, decision)
    except Exception:
        log.warning("could not describe %s version %s", name, version, exc_info=True)


def _gate_line(decision: dict | None) -> str:
    if decision is None:
        return "Champion gate: not decided yet."
    what = _GATE.get(decision.get("status"), str(decision.get("status")))
    previous = decision.get("previous_version")
    before = f" Production before: version {previous}." if previous is not None else ""
    return f"Champion gate: {what} — {decision.get('reason', '')}.{before}"


def _short(value):
    return f"{value:.4g}" if isinstance(value, float) else value


def _fmt(value) -> str:
    try:
        return f"{float(value):.4f}"
    except (TypeError, ValueError):
        return "?"
