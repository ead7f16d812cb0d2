"""Job kinds: a job is planned once, when it is queued; a kind's request model decides its kind."""

from __future__ import annotations

import pytest

from _tuning import FAST
from seedcore.db.database import Database
from seedcore.jobs.kinds import KINDS, kind_of
from seedcore.jobs.runner import JobRunner
from seedcore.request_models import TrainRequest, TuneRequest
from seedcore.tuning import plan as plan_module
from seedcore.tuning import sweep as sweep_module

pytestmark = pytest.mark.integration


def test_every_kind_is_found_by_its_request_model_and_its_name():
    assert {kind_of(TuneRequest()).name, kind_of(TrainRequest(params={"max_depth": 2})).name} == set(KINDS)
    with pytest.raises(TypeError):
        kind_of(object())


def test_a_sweep_job_is_planned_once_when_it_is_queued(migrated_settings, monkeypatch):
    plans = []
    real = plan_module.plan_sweep

    def counted(settings, request):
        plans.append(request.experiment_name)
        return real(settings, request)

    monkeypatch.setattr(plan_module, "plan_sweep", counted)  # what the kind's check calls
    monkeypatch.setattr(sweep_module, "plan_sweep", counted)  # what run_sweep would call without a plan
    db = Database(migrated_settings.database_url)
    runner = JobRunner(migrated_settings, db, poll_s=0.1).start()
    try:
        job = runner.submit(TuneRequest(**{**FAST, "experiment_name": "planned_once"}))
        done = runner.wait(job["id"], timeout=300)
    finally:
        runner.stop()
        db.dispose()
    assert done["state"] == "succeeded", done
    assert plans == ["planned_once"]
