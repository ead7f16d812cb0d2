"""Log lines a user can grep (`grep -i tune`, `grep -i "model promoted"`), as text or JSON, without the
known-noisy lines we cause."""

from __future__ import annotations

import json
import logging

import pytest

from seedcore.runtime import logs
from seedcore.tuning import run_sweep

pytestmark = pytest.mark.integration


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


def test_a_sweep_logs_start_end_registration_and_promotion(migrated_settings, ray_session, caplog):
    caplog.set_level(logging.INFO)
    run_sweep(migrated_settings, space_type="conservative", config_type="conservative",
              custom_tune_config={"num_samples": 2}, experiment_name="greppable")
    lines = [r.getMessage() for r in caplog.records]
    tune = [line for line in lines if "tune" in line.lower()]
    assert any(line.startswith("tune sweep started: experiment=greppable trials=2") for line in tune), tune
    ended = [line for line in tune if line.startswith("tune sweep succeeded: experiment=greppable")]
    assert len(ended) == 1 and "trials=2" in ended[0] and "best_auc=0." in ended[0] and "time=" in ended[0]
    assert any(line.startswith("model registered: utility_risk_model version 1 holdout_auc=0.") for line in lines)
    assert any(line.lower().startswith("model promoted: utility_risk_model version 1") for line in lines), lines


def test_json_lines_carry_the_event_fields(capsys, restore_logging):
    logs.configure("json", "INFO")
    logs.sweep_ended("nightly", "FAILED", {"completed": 0, "pruned": 1, "errored": 2, "killed": 0}, None, 3.25, "j1")
    entry = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert entry["level"] == "INFO" and entry["logger"] == "seedcore.events" and entry["event"] == "sweep_ended"
    assert entry["message"].startswith("tune sweep failed: experiment=nightly trials=3 completed=0 pruned=1")
    assert entry["trial_counts"]["errored"] == 2 and entry["job_id"] == "j1" and entry["best_auc"] is None


def test_rays_sigterm_handler_warning_is_dropped(restore_logging):
    logs.configure("text", "INFO")
    ray_worker = logging.getLogger("ray._private.worker")  # where Ray says it (ray.init off the main thread)
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    ray_worker.addHandler(handler)  # Ray's own handlers print its lines; this one sees what they would
    try:
        ray_worker.warning("SIGTERM handler is not set because current thread is not the main thread.")
        ray_worker.warning("a warning that matters")
    finally:
        ray_worker.removeHandler(handler)
    assert seen == ["a warning that matters"]
