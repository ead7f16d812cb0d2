"""Flashbulb incidents of the flywheel: degradation and drift detected, sweeps started by a schedule, and the
energy ledger's (a promoted version's energy once its sweep's cost is known, a break-even missed).

Salience grows with the effect (clamped to [0, 1]):

    model_degradation_detected   0.7 + 0.3 * clip(drop / 0.2, 0, 1)   drop = how far past the rule's baseline
    drift_detected               0.6 + 0.4 * clip(psi / 0.5, 0, 1)
    scheduled_tuning_started     0.3                                   routine
    model_promotion_energy       0.3                                   routine: the promotion's ledger
    energy_break_even_missed     0.7                                   a promotion that did not pay back in time

Each carries the job it started (`job_id`) and its `trigger`, so the chain degraded -> re-tuned ->
promoted or rejected reads by job id.
"""

from __future__ import annotations

import time

from seedcore.memory.salience import clamp
from seedcore.memory.store import IncidentStore

MODEL_DEGRADATION_DETECTED = "model_degradation_detected"
DRIFT_DETECTED = "drift_detected"
SCHEDULED_TUNING_STARTED = "scheduled_tuning_started"
PROMOTION_ENERGY = "model_promotion_energy"
BREAK_EVEN_MISSED = "energy_break_even_missed"
FULL_DROP = 0.2
FULL_PSI = 0.5


def degradation_salience(drop: float) -> float:
    return clamp(0.7 + 0.3 * clamp(drop / FULL_DROP))


def drift_salience(psi_max: float) -> float:
    return clamp(0.6 + 0.4 * clamp(psi_max / FULL_PSI))


def record_detection(store: IncidentStore, monitor: dict, check: dict, job_id: str | None, trigger: str) -> dict:
    """The monitor's breach: `drift_detected` for PSI, `model_degradation_detected` otherwise."""
    drift = monitor["metric"] == "psi_max"
    event = DRIFT_DETECTED if drift else MODEL_DEGRADATION_DETECTED
    score = drift_salience(check["value"]) if drift else degradation_salience(check["excess"])
    payload = {"event_type": event, "timestamp": time.time(), "outcome": "detected", "monitor_id": monitor["id"],
               "monitor_name": monitor["name"], "metric": monitor["metric"], "value": check["value"],
               "baseline": check["baseline"], "excess": check["excess"], "rule": check["rule"], "n": check["n"],
               "model_version": check["version"], "job_id": job_id, "trigger": trigger, "salience": score}
    if check.get("drift"):
        payload["drift"] = check["drift"]
    return store.record(event, "detected", score, payload, experiment_name=monitor["tune"].get("experiment_name"),
                        model_version=str(check["version"]))


def record_scheduled(store: IncidentStore, schedule: dict, job_id: str, trigger: str, due: str) -> dict:
    """A schedule started its sweep."""
    payload = {"event_type": SCHEDULED_TUNING_STARTED, "timestamp": time.time(), "outcome": "started",
               "schedule_id": schedule["id"], "schedule_name": schedule["name"], "cron": schedule["cron"],
               "timezone": schedule["timezone"], "due_at": due, "job_id": job_id, "trigger": trigger,
               "salience": 0.3}
    return store.record(SCHEDULED_TUNING_STARTED, "started", 0.3, payload,
                        experiment_name=schedule["tune"].get("experiment_name"))


def record_promotion_energy(store: IncidentStore, version: int, energy: dict) -> dict:
    """A promoted version's ledger (model_info's `energy`): the promotion's own incident is written before the
    sweep's cost is known (the promotion ends the sweep), so the ledger follows as an incident of its own."""
    payload = {"event_type": PROMOTION_ENERGY, "timestamp": time.time(), "outcome": "success",
               "model_version": version, "energy": energy, "salience": 0.3}
    return store.record(PROMOTION_ENERGY, "success", 0.3, payload, model_version=version)


def record_break_even_missed(store: IncidentStore, version: int, due: str, energy: dict) -> dict:
    """A promotion whose break-even date, as first projected, passed with its net delta still negative."""
    payload = {"event_type": BREAK_EVEN_MISSED, "timestamp": time.time(), "outcome": "failure",
               "model_version": version, "break_even_at": due, "energy": energy, "salience": 0.7}
    return store.record(BREAK_EVEN_MISSED, "failure", 0.7, payload, model_version=version)
