"""A sweep's baselines: the request of one (what changes, what is refused), the jobs read that pairs sweeps with
their baselines (SQLite and PostgreSQL), and the axes a baseline gives. The runs themselves: tests/api/test_organism.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from _pg import sql_backend  # noqa: F401  (fixture: the jobs read on SQLite and PostgreSQL)
from seedcore.db.base import utcnow
from seedcore.db.database import Database
from seedcore.db.tables_jobs import JOB_FAILED, JOB_SUCCEEDED, KIND_TRAIN, TuningJob
from seedcore.errors import ConflictError, ValidationError
from seedcore.organism.baselines import baseline_of, baseline_request, finished_sweeps, paired
from seedcore.request_models import TuneRequest

pytestmark = pytest.mark.integration
TPE = {"space_type": "conservative", "config_type": "conservative",
       "custom_tune_config": {"num_samples": 3, "seed": 7, "search_alg": "tpe"}}


def _job(job_id="a" * 32, request=None, **row) -> dict:
    """A job row as JobStore.get gives it: a succeeded tune sweep unless told otherwise."""
    request = TuneRequest.model_validate(request or TPE).model_dump()
    return {"id": job_id, "state": JOB_SUCCEEDED, "kind": "tune", "trigger": "api", "request": request,
            "result": {"tune_config": {"num_samples": 3, "seed": 7, "search_alg": "tpe"}}, **row}


def test_a_random_search_baseline_is_the_same_sweep_at_random_cold_and_unpromoted(settings):
    request, trigger = baseline_request(settings, _job(request={**TPE, "warm_start": "history", "force": True}),
                                        "random_search")
    assert trigger == f"random_baseline:{'a' * 32}" and baseline_of(trigger) == ("random_search", "a" * 32)
    assert request.custom_tune_config == {"num_samples": 3, "seed": 7, "search_alg": "random"}
    assert (request.warm_start, request.promote, request.force) == ("none", False, False)
    assert (request.space_type, request.config_type, request.data_source) == ("conservative", "conservative", None)


def test_a_cold_start_baseline_keeps_the_searcher_and_pins_what_the_sweep_ran(settings):
    preset_only = {"space_type": "conservative", "config_type": "conservative", "warm_start": "production"}
    ran = {"tune_config": {"num_samples": 5, "seed": None, "search_alg": "random"}}  # the preset, as it ran
    request, trigger = baseline_request(settings, _job(request=preset_only, result=ran), "cold_start")
    assert trigger == f"cold_baseline:{'a' * 32}" and request.warm_start == "none" and not request.promote
    assert request.custom_tune_config == {"num_samples": 5}  # no seed to pin, the preset's searcher kept


@pytest.mark.parametrize("row, kind, error, field", [
    ({"state": JOB_FAILED}, "random_search", ConflictError, "job_id"),
    ({"kind": KIND_TRAIN}, "random_search", ValidationError, "job_id"),
    ({"trigger": f"random_baseline:{'b' * 32}"}, "random_search", ValidationError, "job_id"),
    ({"request": {"unreadable": "not JSON"}}, "random_search", ConflictError, "job_id"),
    ({}, "cold_start", ValidationError, "kind"),  # not warm-started: the baseline would repeat it
    ({"result": {"tune_config": {"num_samples": 3, "seed": 7, "search_alg": "random"}}}, "random_search",
     ValidationError, "kind"),  # already a cold random search
])
def test_a_baseline_that_cannot_be_or_would_repeat_the_sweep_is_refused_naming_the_field(settings, row, kind,
                                                                                           error, field):
    job = {**_job(), **row}
    with pytest.raises(error) as refused:
        baseline_request(settings, job, kind)
    assert refused.value.field == field and job["id"] in refused.value.message


def _add(db: Database, job_id: str, minutes: int, trigger: str = "api", state: str = JOB_SUCCEEDED) -> None:
    with db.session() as session:
        session.add(TuningJob(id=job_id, state=state, request={}, trigger=trigger, trials_total=3,
                              finished_at=utcnow() - timedelta(minutes=60 - minutes),
                              result={"model_version": minutes, "mlflow": {"parent_run_id": job_id}}))


def test_sweeps_come_with_their_latest_baselines_and_no_baseline_is_a_sweep(migrated_settings):
    db = Database(migrated_settings.database_url)
    old, new = "0" * 32, "1" * 32
    _add(db, old, 1)
    _add(db, new, 2)
    _add(db, "r1" + "0" * 30, 3, f"random_baseline:{new}")
    _add(db, "r2" + "0" * 30, 4, f"random_baseline:{new}")  # the latest of its kind counts
    _add(db, "c1" + "0" * 30, 5, f"cold_baseline:{new}")
    _add(db, "rf" + "0" * 30, 6, f"random_baseline:{new}", state=JOB_FAILED)
    _add(db, "ro" + "0" * 30, 7, f"random_baseline:{old}")
    _add(db, "x" * 32, 8, f"randomXbaseline:{old}")  # `_` is no wildcard: a trigger of no baseline
    sweeps = finished_sweeps(db, limit=10)
    assert [s["id"] for s in sweeps] == [old, new, "x" * 32]
    assert {k: b["id"] for k, b in sweeps[1]["baselines"].items()} == {"random_search": "r2" + "0" * 30,
                                                                        "cold_start": "c1" + "0" * 30}
    assert {k: b["id"] for k, b in sweeps[0]["baselines"].items()} == {"random_search": "ro" + "0" * 30}
    latest = finished_sweeps(db, limit=2)  # the latest 2 sweeps; the old one's baseline goes with it
    assert [s["id"] for s in latest] == [new, "x" * 32] and set(latest[0]["baselines"]) == {"random_search",
                                                                                            "cold_start"}
    db.dispose()


def _axes(**changes) -> dict:
    return {"curve_area": 0.9, "trials_to_99": 2, "warm_start": "history", "smartness": 0.1, "trials_saved": 1.5,
            **changes}


def test_a_baseline_replaces_the_reshuffle_and_the_cold_sweeps_rule():
    random = {"job_id": "r", "curve_area": 0.7, "trials_to_99": 3, "best": 0.8}
    cold = {"job_id": "c", "curve_area": 0.8, "trials_to_99": 5, "best": 0.85}
    axes = _axes()
    paired(axes, {"random_search": random, "cold_start": cold})
    assert axes["smartness"] == pytest.approx(0.9 - 0.7) and axes["smartness_baseline"] == "random_search"
    assert axes["trials_saved"] == 5 - 2 and axes["adaptability_baseline"] == "paired_cold"
    assert axes["random_search"] == random and axes["cold_start"] == cold

    without = _axes()
    paired(without, {})
    assert (without["smartness"], without["smartness_baseline"]) == (0.1, "random_order")
    assert (without["trials_saved"], without["adaptability_baseline"]) == (1.5, "same_data_cold")
    cold_sweep = _axes(warm_start="none", trials_saved=None)
    paired(cold_sweep, {"cold_start": cold})  # a cold sweep saves nothing, whatever it is compared with
    assert cold_sweep["trials_saved"] is None and cold_sweep["adaptability_baseline"] is None
