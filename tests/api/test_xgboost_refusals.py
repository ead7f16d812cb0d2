"""Bad requests to `/xgboost` tuning, training and promotion: the right 4xx, the field named, nothing lost.

Every row runs against one app (per module) with an API token and a small body cap. After each refused
request there is no MLflow run, no job row, no registered version and no blessed file.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from _pg import ON_BOTH_BACKENDS
from _stores import stores_settings
from _tuning import assert_nothing_happened, job_rows
from seedcore.api import create_app
from seedcore.db.database import Database
from seedcore.errors import DataError
from seedcore.memory.store import IncidentStore
from seedcore.request_models import TuneRequest
from seedcore.jobs.runner import JobRunner
from seedcore.services import services_of

pytestmark = pytest.mark.integration

TOKEN = "tuning-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WRONG = {"Authorization": "Bearer not-the-token"}
NO_AUTH: dict = {}
MAX_BYTES = 4096
OUTSIDE = "{outside}"  # replaced by the absolute path of a real CSV outside the data dir
_TRACE = re.compile(r"Traceback|File \"|line \d+, in ")

GOOD_TUNE = {"space_type": "conservative", "config_type": "conservative", "experiment_name": "t",
             "custom_tune_config": {"num_samples": 2}}


def _tune(**changes) -> dict:
    return {"json": {**GOOD_TUNE, **changes}}


def _space(spec: dict) -> dict:
    return _tune(custom_search_space=spec)


def _budget(**config) -> dict:
    return _tune(custom_tune_config=config)


def _raw(text: str, content_type: str = "application/json") -> dict:
    return {"data": text, "content_type": content_type}


BAD_REQUESTS = [
    # (method, path, request kwargs, expected status, expected field)
    # -- the body itself
    ("POST", "/xgboost/tune", _raw("{not json"), 400, "body"),
    ("POST", "/xgboost/tune", _raw('{"space_type": "conservative",}'), 400, "body"),
    ("POST", "/xgboost/tune", _raw("[1, 2]"), 400, "body"),
    ("POST", "/xgboost/tune", _raw('"conservative"'), 400, "body"),
    ("POST", "/xgboost/tune", _raw(b"\xff\xfe"), 400, "body"),
    ("POST", "/xgboost/tune/submit", _raw("{not json", "application/x-www-form-urlencoded"), 400, "body"),
    ("POST", "/xgboost/train", _raw("{not json"), 400, "body"),
    ("POST", "/xgboost/promote", _raw("{not json"), 400, "body"),
    # -- wrong types and unknown names
    ("POST", "/xgboost/tune", _tune(space_type=5), 400, "space_type"),
    ("POST", "/xgboost/tune", _tune(space_type="huge"), 400, "space_type"),
    ("POST", "/xgboost/tune", _tune(space_type=None), 400, "space_type"),
    ("POST", "/xgboost/tune", _tune(config_type="huge"), 400, "config_type"),
    ("POST", "/xgboost/tune", _tune(experiment_name=[]), 400, "experiment_name"),
    ("POST", "/xgboost/tune", _tune(experiment_name=""), 400, "experiment_name"),
    ("POST", "/xgboost/tune", _tune(experiment_name="x" * 257), 400, "experiment_name"),
    ("POST", "/xgboost/tune", _tune(colour="red"), 400, "colour"),
    ("POST", "/xgboost/tune", _tune(custom_search_space="eta"), 400, "custom_search_space"),
    ("POST", "/xgboost/tune", _tune(custom_tune_config=[5]), 400, "custom_tune_config"),
    ("POST", "/xgboost/tune/submit", _tune(space_type=5), 400, "space_type"),
    # -- a bad custom search space
    ("POST", "/xgboost/tune", _space({}), 400, "custom_search_space"),
    ("POST", "/xgboost/tune", _space({"eta": {"type": "gaussian", "lower": 0.1, "upper": 0.2}}), 400,
     "custom_search_space.eta.type"),
    ("POST", "/xgboost/tune", _space({"eta": {"lower": 0.1, "upper": 0.2}}), 400, "custom_search_space.eta.type"),
    ("POST", "/xgboost/tune", _space({"eta": {"type": "uniform", "lower": 0.3, "upper": 0.1}}), 400,
     "custom_search_space.eta.lower"),
    ("POST", "/xgboost/tune", _space({"eta": {"type": "uniform", "lower": 0.2, "upper": 0.2}}), 400,
     "custom_search_space.eta.lower"),
    ("POST", "/xgboost/tune", _space({"eta": {"type": "loguniform", "lower": 0, "upper": 0.2}}), 400,
     "custom_search_space.eta.lower"),
    ("POST", "/xgboost/tune", _space({"eta": {"type": "uniform", "lower": "a", "upper": 0.2}}), 400,
     "custom_search_space.eta.lower"),
    ("POST", "/xgboost/tune", _space({"max_depth": {"type": "choice", "values": []}}), 400,
     "custom_search_space.max_depth.values"),
    ("POST", "/xgboost/tune", _space({"learning_speed": 0.1}), 400, "custom_search_space.learning_speed"),
    ("POST", "/xgboost/tune", _space({"learning_speed": {"type": "uniform", "lower": 0, "upper": 1}}), 400,
     "custom_search_space.learning_speed"),
    ("POST", "/xgboost/tune", _space({"nthread": 8}), 400, "custom_search_space.nthread"),
    ("POST", "/xgboost/tune", _space({"max_depth": 5.5}), 400, "custom_search_space.max_depth"),
    ("POST", "/xgboost/tune", _space({"subsample": {"type": "uniform", "lower": 0.5, "upper": 1.5}}), 400,
     "custom_search_space.subsample"),
    ("POST", "/xgboost/tune", _space({"objective": "reg:squarederror"}), 400, "custom_search_space.objective"),
    ("POST", "/xgboost/tune/submit", _space({"eta": {"type": "gaussian"}}), 400, "custom_search_space.eta.type"),
    # -- budgets over the caps (200 trials, 14400 s) and other bad tune configs
    ("POST", "/xgboost/tune", _budget(num_samples=201), 400, "custom_tune_config.num_samples"),
    ("POST", "/xgboost/tune", _budget(num_samples=1e9), 400, "custom_tune_config.num_samples"),
    ("POST", "/xgboost/tune", _budget(time_budget_s=14401), 400, "custom_tune_config.time_budget_s"),
    ("POST", "/xgboost/tune", _budget(num_samples=0), 400, "custom_tune_config.num_samples"),
    ("POST", "/xgboost/tune", _budget(num_samples=2.5), 400, "custom_tune_config.num_samples"),
    ("POST", "/xgboost/tune", _budget(num_samples="5"), 400, "custom_tune_config.num_samples"),
    ("POST", "/xgboost/tune", _budget(max_concurrent_trials=0), 400, "custom_tune_config.max_concurrent_trials"),
    ("POST", "/xgboost/tune", _budget(trials=5), 400, "custom_tune_config.trials"),
    ("POST", "/xgboost/tune/submit", _budget(num_samples=201), 400, "custom_tune_config.num_samples"),
    ("POST", "/xgboost/tune/submit", _budget(time_budget_s=1e6), 400, "custom_tune_config.time_budget_s"),
    # -- data_source resolves inside the data dir only
    ("POST", "/xgboost/tune", _tune(data_source="../outside/data.csv", label_column="target"), 400, "data_source"),
    ("POST", "/xgboost/tune", _tune(data_source="sub/../../outside/data.csv", label_column="target"), 400,
     "data_source"),
    ("POST", "/xgboost/tune", _tune(data_source=OUTSIDE, label_column="target"), 400, "data_source"),
    ("POST", "/xgboost/tune", _tune(data_source="/etc/passwd", label_column="target"), 400, "data_source"),
    ("POST", "/xgboost/tune", _tune(data_source="link_out.csv", label_column="target"), 400, "data_source"),
    ("POST", "/xgboost/tune", _tune(data_source="http://example.com/data.csv", label_column="target"), 400,
     "data_source"),
    ("POST", "/xgboost/tune", _tune(data_source="s3://bucket/data.csv", label_column="target"), 400, "data_source"),
    ("POST", "/xgboost/tune", _tune(data_source="file:///etc/passwd", label_column="target"), 400, "data_source"),
    ("POST", "/xgboost/tune", _tune(data_source="missing.csv", label_column="target"), 400, "data_source"),
    ("POST", "/xgboost/tune/submit", _tune(data_source="../outside/data.csv", label_column="target"), 400,
     "data_source"),
    ("POST", "/xgboost/tune/submit", _tune(data_source="link_out.csv", label_column="target"), 400, "data_source"),
    ("POST", "/xgboost/train", {"json": {"data_source": "../outside/data.csv", "label_column": "target"}}, 400,
     "data_source"),
    ("POST", "/xgboost/train", {"json": {"data_source": OUTSIDE, "label_column": "target"}}, 400, "data_source"),
    ("POST", "/xgboost/train", {"json": {"data_source": "link_out.csv", "label_column": "target"}}, 400,
     "data_source"),
    ("POST", "/xgboost/train", {"json": {"data_source": "https://example.com/d.csv", "label_column": "target"}}, 400,
     "data_source"),
    # -- train: fixed parameters only, known ones only
    ("POST", "/xgboost/train", {"json": {"params": {"eta": {"type": "uniform", "lower": 0.1, "upper": 0.2}}}}, 400,
     "params.eta"),
    ("POST", "/xgboost/train", {"json": {"params": {"colour": 1}}}, 400, "params.colour"),
    ("POST", "/xgboost/train", {"json": {"params": {"max_depth": 3.5}}}, 400, "params.max_depth"),
    ("POST", "/xgboost/train", {"json": {"params": {"eta": -1}}}, 400, "params.eta"),
    ("POST", "/xgboost/train", {"json": {"params": "fast"}}, 400, "params"),
    ("POST", "/xgboost/train", {"json": {"label_column": "no_such_column"}}, 400, "label_column"),
    ("POST", "/xgboost/train", {"json": {"experiment_name": ""}}, 400, "experiment_name"),
    ("POST", "/xgboost/train", {"json": {"promote": [True]}}, 400, "promote"),
    ("POST", "/xgboost/tune", {"json": {"promote": "yes"}}, 400, "promote"),
    ("POST", "/xgboost/promote", {"json": {"version": "1"}}, 400, "version"),
    # -- promote
    ("POST", "/xgboost/promote", {"json": {}}, 400, "version"),
    ("POST", "/xgboost/promote", {"json": {"version": 0}}, 400, "version"),
    ("POST", "/xgboost/promote", {"json": {"version": "latest"}}, 400, "version"),
    ("POST", "/xgboost/promote", {"json": {"version": 1, "force": "maybe"}}, 400, "force"),
    ("POST", "/xgboost/promote", {"json": {"version": 999}}, 404, "version"),
    # -- jobs: unknown ids, bad listing queries, wrong methods
    ("GET", "/xgboost/tune/status/no-such-job", {"headers": NO_AUTH}, 404, "job_id"),
    ("POST", "/xgboost/tune/no-such-job/cancel", {}, 404, "job_id"),
    ("GET", "/xgboost/tune/jobs?limit=0", {"headers": NO_AUTH}, 400, "limit"),
    ("GET", "/xgboost/tune/jobs?limit=501", {"headers": NO_AUTH}, 400, "limit"),
    ("GET", "/xgboost/tune/jobs?offset=-1", {"headers": NO_AUTH}, 400, "offset"),
    ("GET", "/xgboost/tune/jobs?state=done", {"headers": NO_AUTH}, 400, "state"),
    ("GET", "/xgboost/tune/jobs?colour=red", {"headers": NO_AUTH}, 400, "colour"),
    ("GET", "/xgboost/tune", {}, 405, None),
    ("DELETE", "/xgboost/tune/jobs", {}, 405, None),
    # -- a body over the cap
    ("POST", "/xgboost/tune", _space({"max_depth": {"type": "choice", "values": list(range(3, 3000))}}), 413, "body"),
    ("POST", "/xgboost/tune/submit", _raw("{" + " " * MAX_BYTES + "}"), 413, "body"),
    ("POST", "/xgboost/train", _raw('{"params": {}, "experiment_name": "' + "x" * MAX_BYTES + '"}'), 413, "body"),
    # -- the token: every state-changing endpoint needs it, checked before the body
    ("POST", "/xgboost/tune", {**_tune(), "headers": NO_AUTH}, 401, "Authorization"),
    ("POST", "/xgboost/tune", {**_tune(), "headers": WRONG}, 403, "Authorization"),
    ("POST", "/xgboost/tune", {**_tune(), "headers": {"Authorization": TOKEN}}, 401, "Authorization"),
    ("POST", "/xgboost/tune", {**_raw("{not json"), "headers": NO_AUTH}, 401, "Authorization"),
    ("POST", "/xgboost/tune/submit", {**_tune(), "headers": NO_AUTH}, 401, "Authorization"),
    ("POST", "/xgboost/tune/submit", {**_tune(), "headers": WRONG}, 403, "Authorization"),
    ("POST", "/xgboost/tune/no-such-job/cancel", {"headers": NO_AUTH}, 401, "Authorization"),
    ("POST", "/xgboost/tune/no-such-job/cancel", {"headers": WRONG}, 403, "Authorization"),
    ("POST", "/xgboost/train", {"json": {"params": {"max_depth": 2, "num_boost_round": 3}}, "headers": NO_AUTH}, 401,
     "Authorization"),
    ("POST", "/xgboost/train", {"json": {"params": {"max_depth": 2, "num_boost_round": 3}}, "headers": WRONG}, 403,
     "Authorization"),
    ("POST", "/xgboost/promote", {"json": {"version": 1}, "headers": NO_AUTH}, 401, "Authorization"),
    ("POST", "/xgboost/promote", {"json": {"version": 1, "force": True}, "headers": WRONG}, 403, "Authorization"),
]


def _fill(value, outside: str):
    if isinstance(value, str):
        return value.replace(OUTSIDE, outside)
    if isinstance(value, dict):
        return {k: _fill(v, outside) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, outside) for v in value]
    return value


def _csv(path, rows: int = 200) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["f0", "f1", "f2"])
    frame["target"] = (frame["f0"] > 0).astype(int)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def _guarded_app(settings, outside_dir):
    """(settings, test client) of an app with an API token and a 4 KiB body cap; a real CSV outside
    the data dir, and a symlink inside it pointing there."""
    outside = outside_dir / "outside" / "data.csv"
    _csv(outside)
    (settings.data_dir / "link_out.csv").symlink_to(outside)
    settings = settings.replace(api_token=TOKEN, max_request_bytes=MAX_BYTES)
    app = create_app(settings)
    app.config["TESTING"] = True
    yield settings, app.test_client(), str(outside)
    services_of(app).stop()


@pytest.fixture
def guarded(migrated_settings, tmp_path):
    yield from _guarded_app(migrated_settings, tmp_path)


@pytest.fixture(scope="module")
def refusing(tmp_path_factory, mlflow_template, sqlite_template):
    """One guarded app for the whole table: every row is refused, so every row must still find the stores
    empty (a row that left something behind fails, and so do the rows after it)."""
    root = tmp_path_factory.mktemp("refusals")
    yield from _guarded_app(stores_settings(root, mlflow_template, sqlite_template), root)


def assert_error_body(response, status: int, field: str | None) -> None:
    text = response.get_data(as_text=True)
    assert response.status_code == status, text
    body = response.get_json()
    assert body["status"] == "error" and isinstance(body["error"], str) and body["error"], body
    assert body["field"] == field, body
    assert not _TRACE.search(text), text
    assert TOKEN not in text


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "field"), BAD_REQUESTS,
                         ids=[f"{m} {p} {s} {f}" for m, p, _, s, f in BAD_REQUESTS])
def test_bad_request_is_refused_and_loses_nothing(refusing, method, path, kwargs, status, field):
    settings, client, outside = refusing
    kwargs = _fill(kwargs, outside)
    kwargs.setdefault("headers", AUTH)
    response = client.open(path, method=method, **kwargs)
    assert_error_body(response, status, field)
    assert_nothing_happened(settings)


@ON_BOTH_BACKENDS
def test_a_preset_over_the_cap_names_config_type(migrated_settings):
    """The default preset asks for 50 trials; with a cap of 10 the caller's choice at fault is config_type."""
    app = create_app(migrated_settings.replace(max_trials=10, max_time_budget_s=1800))
    try:
        client = app.test_client()
        assert_error_body(client.post("/xgboost/tune", json={"experiment_name": "x"}), 400, "config_type")
        assert_error_body(client.post("/xgboost/tune/submit", json={"config_type": "conservative",
                                                                    "custom_tune_config": {"num_samples": 11}}),
                          400, "custom_tune_config.num_samples")
        assert_error_body(client.post("/xgboost/tune/submit", json={"config_type": "conservative",
                                                                    "custom_tune_config": {"time_budget_s": 1801}}),
                          400, "custom_tune_config.time_budget_s")
        assert_nothing_happened(migrated_settings)
    finally:
        services_of(app).stop()


@ON_BOTH_BACKENDS
def test_a_data_problem_found_on_loading_fails_the_job_and_is_remembered(migrated_settings):
    """The whole file is checked before a job exists (a 400, see test_data_guards); a file spoiled after that
    check, while its job waits in the queue, fails the job on loading with the field named, before any MLflow
    run or Ray work; the failure is remembered."""
    path = migrated_settings.data_dir / "one_class.csv"
    _csv(path)
    db = Database(migrated_settings.database_url)
    request = TuneRequest.model_validate({**GOOD_TUNE, "experiment_name": "bad_data", "data_source": "one_class.csv",
                                          "label_column": "target"})
    job = JobRunner(migrated_settings, db).submit(request)  # checked and queued; no runner takes it yet
    frame = pd.read_csv(path)
    frame["target"] = 1
    frame.to_csv(path, index=False)

    runner = JobRunner(migrated_settings, db).start()
    try:
        with pytest.raises(DataError) as failed:
            runner.wait(job["id"], timeout=60)
    finally:
        runner.stop()
    assert failed.value.field == "label_column" and "one class" in failed.value.message
    (row,) = job_rows(migrated_settings)
    assert row["state"] == "failed" and "one class" in row["error"]
    assert row["mlflow_parent_run_id"] is None
    remembered = IncidentStore(db).query(event_type="model_tuning_failed")["items"]
    db.dispose()
    assert len(remembered) == 1
    assert remembered[0]["experiment_name"] == "bad_data" and remembered[0]["payload"]["job_id"] == job["id"]
    assert remembered[0]["outcome"] == "failure" and "one class" in remembered[0]["payload"]["error"]


@ON_BOTH_BACKENDS
def test_reads_need_no_token(guarded):
    settings, client, _ = guarded
    assert client.get("/xgboost/tune/jobs").status_code == 200
    assert client.get("/xgboost/tune/jobs").get_json()["total"] == 0
