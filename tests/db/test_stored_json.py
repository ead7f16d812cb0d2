"""Stored JSON: what cannot be served back is refused before it is written, and rows an older version left
behind (inserted here with plain SQL, as it would have) never make a read fail: the row is served with its
value replaced by an `{"unreadable": ...}` marker. On SQLite and PostgreSQL, through the real Flask app."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, text

from _pg import db_url  # noqa: F401  (fixture: SQLite and PostgreSQL)
from _tuning import job_rows
from seedcore.api import create_app
from seedcore.db.database import Database
from seedcore.db.engine import normalize_url
from seedcore.db.migrations import upgrade
from seedcore.db.stored_json import SERVABLE_DEPTH, UNREADABLE
from seedcore.errors import PayloadTooLargeError, ValidationError
from seedcore.memory.store import IncidentStore, PayloadLimits
from seedcore.request_models import TuneRequest
from seedcore.jobs.runner import JobRunner
from seedcore.services import services_of

pytestmark = pytest.mark.integration


def nested(levels: int) -> str:
    """JSON text nested `levels` deep, built as text (json.dumps itself would recurse that deep)."""
    return '{"a":' * levels + "1" + "}" * levels


POISON_INCIDENTS = {"deep-900": nested(900), "deep-5000": nested(5000), "an-array": "[1, 2, 3]"}


@pytest.fixture
def sql_app(settings, db_url):  # noqa: F811
    """The app over a migrated SQLite or PostgreSQL database, and a raw engine to write rows as SQL."""
    upgrade(db_url)
    app = create_app(settings.replace(database_url=db_url))
    app.config["TESTING"] = True
    engine = create_engine(normalize_url(db_url))
    yield app, engine
    engine.dispose()
    services_of(app).stop()


def _insert_incident(engine, payload_text: str, event_type: str = "poison") -> None:
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO flashbulb_incidents (event_type, outcome, salience, payload, created_at) "
                                "VALUES (:event, 'ok', 0.5, :payload, CURRENT_TIMESTAMP)"),
                           {"event": event_type, "payload": payload_text})


def test_poison_incident_rows_are_served_with_a_marker(sql_app):
    app, engine = sql_app
    client = app.test_client()
    assert client.post("/mfb/incidents", json={"event_type": "fine", "outcome": "ok", "salience": 0.9,
                                               "payload": {"auc": 0.9}}).status_code == 201
    for payload in POISON_INCIDENTS.values():
        _insert_incident(engine, payload)
    for url in ("/mfb/incidents", "/mfb/incidents?event_type=poison", "/mfb/incidents?min_salience=0.1&limit=10",
                "/mfb/incidents?since=2000-01-01T00:00:00Z"):
        response = client.get(url)
        assert response.status_code == 200, (url, response.get_data(as_text=True)[:300])
        items = response.get_json()["items"]
        poison = [i for i in items if i["event_type"] == "poison"]
        assert len(poison) == len(POISON_INCIDENTS), url
        assert all(set(i["payload"]) == {UNREADABLE} for i in poison), poison
    fine = [i for i in client.get("/mfb/incidents").get_json()["items"] if i["event_type"] == "fine"]
    assert fine[0]["payload"] == {"auc": 0.9}
    for item in client.get("/mfb/incidents?event_type=poison").get_json()["items"]:
        one = client.get(f"/mfb/incidents/{item['id']}")
        assert one.status_code == 200 and UNREADABLE in one.get_json()["incident"]["payload"]
    assert client.get("/mfb/stats").get_json()["total"] == 1 + len(POISON_INCIDENTS)


def test_a_poison_job_row_is_served_with_a_marker(sql_app):
    app, engine = sql_app
    client = app.test_client()
    deep = nested(300)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO tuning_jobs (id, state, request, result, experiment_name, created_at, trials_done, "
            "trials_total, cancel_requested) VALUES ('p' || :n, 'succeeded', :request, :result, 'old', "
            "CURRENT_TIMESTAMP, 1, 1, false)"), [{"n": "1", "request": deep, "result": deep},
                                                 {"n": "2", "request": '"text"', "result": "[1]"}])
    listed = client.get("/xgboost/tune/jobs")
    assert listed.status_code == 200, listed.get_data(as_text=True)[:300]
    assert {job["job_id"] for job in listed.get_json()["items"]} == {"p1", "p2"}
    for job_id in ("p1", "p2"):
        status = client.get(f"/xgboost/tune/status/{job_id}")
        assert status.status_code == 200, status.get_data(as_text=True)[:300]
        body = status.get_json()
        assert UNREADABLE in body["request"] and UNREADABLE in body["result"], body
    assert client.get("/xgboost/tune/jobs?state=succeeded").status_code == 200


def _deep(levels: int):
    value: object = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def test_incident_payloads_over_the_caps_are_refused_and_nothing_is_stored(migrated_settings):
    db = Database(migrated_settings.database_url)
    try:
        store = IncidentStore(db, limits=PayloadLimits.of(migrated_settings))
        with pytest.raises(ValidationError) as err:
            store.record("custom", "ok", 0.5, _deep(migrated_settings.max_json_depth + 1))
        assert err.value.field == "payload"
        with pytest.raises(PayloadTooLargeError) as err:
            store.record("custom", "ok", 0.5, {"blob": "x" * migrated_settings.max_incident_payload_bytes})
        assert err.value.field == "payload"
        # A depth setting past what responses can carry is capped at what can be served back.
        lax = IncidentStore(db, limits=PayloadLimits.of(migrated_settings.replace(max_json_depth=200)))
        with pytest.raises(ValidationError):
            lax.record("custom", "ok", 0.5, _deep(SERVABLE_DEPTH + 1))
        lax.record("custom", "ok", 0.5, _deep(SERVABLE_DEPTH - 5))
        assert store.stats()["total"] == 1
        assert _deep(SERVABLE_DEPTH - 5) == store.query()["items"][0]["payload"]
    finally:
        db.dispose()


def test_the_api_refuses_an_incident_payload_over_the_byte_cap(client):
    response = client.post("/mfb/incidents", json={"event_type": "custom", "outcome": "ok", "salience": 0.5,
                                                   "payload": {"blob": "x" * (64 * 1024)}})
    assert response.status_code == 413 and response.get_json()["field"] == "payload", response.get_json()
    assert client.get("/mfb/stats").get_json()["total"] == 0


def test_a_search_space_deeper_than_the_cap_creates_no_job(migrated_settings):
    """The API's body guard refuses it first; the CLI and other callers reach the runner's own check."""
    db = Database(migrated_settings.database_url)
    try:
        runner = JobRunner(migrated_settings, db)
        request = TuneRequest(custom_search_space={"eta": 0.1, "deep": _deep(migrated_settings.max_json_depth)})
        with pytest.raises(ValidationError) as err:
            runner.submit(request)
        assert err.value.field == "custom_search_space"
        assert job_rows(migrated_settings) == []
        assert json.dumps(request.model_dump())  # the model itself accepted it: only the cap refused it
    finally:
        db.dispose()
