"""`/mfb` over the real app: record, read, filter, paginate, stats; append-only; schema check at startup."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from _pg import sql_backend  # noqa: F401  (fixture: these tests on SQLite and PostgreSQL)
from seedcore.api import create_app
from seedcore.errors import SchemaOutdatedError
from seedcore.db.database import Database
from seedcore.db.migrations import downgrade
from seedcore.memory.store import IncidentStore
from seedcore.services import services_of

pytestmark = [pytest.mark.integration, pytest.mark.requests_only]  # the app runs no background thread

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


def _incident(**changes) -> dict:
    body = {"event_type": "model_tuning_completed", "outcome": "success", "salience": 0.95,
            "experiment_name": "xgboost_tuning", "model_version": 3,
            "payload": {"metric_achieved": {"auc": 0.975, "logloss": 0.089}, "best_params": {"eta": 0.08}}}
    body.update(changes)
    return body


def _store_at(app, when: datetime) -> IncidentStore:
    """An IncidentStore over the app's own database whose clock reads `when`."""
    return IncidentStore(services_of(app).database, clock=lambda: when)


@pytest.fixture
def timeline(app):
    """Five incidents recorded an hour apart, oldest first, ending at NOW."""
    kinds = [("model_tuning_completed", 0.5), ("model_promoted", 0.9), ("model_tuning_failed", 0.6),
             ("model_promoted", 0.7), ("model_refreshed", 0.2)]
    rows = []
    for hours_ago, (event_type, salience) in zip(range(4, -1, -1), kinds, strict=True):
        store = _store_at(app, NOW - timedelta(hours=hours_ago))
        rows.append(store.record(event_type, "success", salience, {"n": len(rows)}))
    return rows


def test_init_app_shares_one_database(app, sql_backend):
    db = services_of(app).database
    assert isinstance(db, Database) and db.dialect == sql_backend
    assert services_of(app).incidents.db is db


def test_record_then_get(client):
    created = client.post("/mfb/incidents", json=_incident())
    assert created.status_code == 201
    body = created.get_json()
    assert body["status"] == "success"
    incident = body["incident"]
    assert incident["id"] >= 1
    assert incident["model_version"] == "3"
    assert incident["payload"]["metric_achieved"]["auc"] == 0.975
    assert incident["timestamp"] == pytest.approx(datetime.fromisoformat(incident["created_at"]).timestamp())
    fetched = client.get(f"/mfb/incidents/{incident['id']}")
    assert fetched.status_code == 200
    assert fetched.get_json() == {"status": "success", "incident": incident}


def test_record_minimal_body_defaults(client):
    created = client.post("/mfb/incidents", json={"event_type": "custom", "outcome": "noted", "salience": 0})
    assert created.status_code == 201
    incident = created.get_json()["incident"]
    assert incident["payload"] == {}
    assert incident["experiment_name"] is None and incident["model_version"] is None
    assert incident["salience"] == 0.0


def test_list_newest_first_with_total(client, timeline):
    body = client.get("/mfb/incidents").get_json()
    assert body["status"] == "success"
    assert body["total"] == 5 and body["limit"] == 50 and body["offset"] == 0
    assert [item["id"] for item in body["items"]] == [row["id"] for row in reversed(timeline)]


def test_pagination(client, timeline):
    newest_first = [row["id"] for row in reversed(timeline)]
    first = client.get("/mfb/incidents?limit=2").get_json()
    second = client.get("/mfb/incidents?limit=2&offset=2").get_json()
    past_end = client.get("/mfb/incidents?limit=2&offset=10").get_json()
    assert [i["id"] for i in first["items"]] == newest_first[:2]
    assert [i["id"] for i in second["items"]] == newest_first[2:4]
    assert (second["limit"], second["offset"], second["total"]) == (2, 2, 5)
    assert past_end["items"] == [] and past_end["total"] == 5


@pytest.mark.parametrize(("query", "expected_indexes"), [
    ("min_salience=0.65", [3, 1]),
    ("min_salience=0.7", [3, 1]),
    ("event_type=model_promoted", [3, 1]),
    ("event_type=never_happened", []),
    ("event_type=model_promoted&min_salience=0.8", [1]),
    ("since=2025-06-01T10:00:00Z", [4, 3, 2]),
    ("since=2025-06-01T12:00:00%2B02:00", [4, 3, 2]),  # that is 10:00 UTC: offsets are honoured
    ("since=2025-06-01T10:00:00%2B00:00&until=2025-06-01T11:00:00", [3, 2]),  # naive means UTC
    (f"since={(NOW - timedelta(hours=1)).timestamp():.0f}", [4, 3]),
    (f"until={(NOW - timedelta(hours=3)).timestamp()}", [1, 0]),
])
def test_filters(client, timeline, query, expected_indexes):
    body = client.get(f"/mfb/incidents?{query}").get_json()
    assert [item["id"] for item in body["items"]] == [timeline[i]["id"] for i in expected_indexes]
    assert body["total"] == len(expected_indexes)


def test_stats(client, app, timeline):
    _store_at(app, NOW - timedelta(days=3)).record("model_promoted", "success", 1.0, {})
    body = client.get("/mfb/stats").get_json()
    assert body["status"] == "success"
    assert body["total"] == 6
    assert body["by_event_type"] == {"model_promoted": 3, "model_refreshed": 1,
                                     "model_tuning_completed": 1, "model_tuning_failed": 1}
    assert body["average_salience"] == pytest.approx((0.5 + 0.9 + 0.6 + 0.7 + 0.2 + 1.0) / 6)
    # the API's "last 24 h" is relative to the real clock: the fixed 2025 timeline is older than that
    client.post("/mfb/incidents", json=_incident())
    assert client.get("/mfb/stats").get_json()["last_24h"] == 1


def test_stats_when_empty(client):
    assert client.get("/mfb/stats").get_json() == {
        "status": "success", "total": 0, "by_event_type": {}, "last_24h": 0, "average_salience": None}


def test_unknown_incident_is_404_json(client):
    response = client.get("/mfb/incidents/424242")
    assert response.status_code == 404
    assert response.get_json() == {"status": "error", "error": "no flashbulb incident with id 424242",
                                   "field": "incident_id"}


@pytest.mark.parametrize("method", ["DELETE", "PUT", "PATCH"])
def test_memory_is_append_only(client, method):
    incident_id = client.post("/mfb/incidents", json=_incident()).get_json()["incident"]["id"]
    for path in (f"/mfb/incidents/{incident_id}", "/mfb/incidents"):
        response = client.open(path, method=method)
        assert response.status_code == 405
        assert response.get_json()["status"] == "error"
    assert client.get(f"/mfb/incidents/{incident_id}").status_code == 200
    assert client.get("/mfb/incidents").get_json()["total"] == 1


def test_app_refuses_an_unmigrated_database(settings):
    with pytest.raises(SchemaOutdatedError) as caught:
        create_app(settings)
    assert "seedcore db upgrade" in str(caught.value)


def test_app_refuses_a_downgraded_database(migrated_settings):
    downgrade(migrated_settings.database_url, "base")
    with pytest.raises(SchemaOutdatedError, match="seedcore db upgrade"):
        create_app(migrated_settings)
