"""Flashbulb memory: the incident store on SQLite and PostgreSQL, and the salience formula."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from _pg import db, db_url  # noqa: F401  (fixtures)
from seedcore.errors import NotFoundError, ValidationError
from seedcore.memory import (
    MODEL_PROMOTED,
    MODEL_PROMOTION_REJECTED,
    MODEL_REFRESHED,
    MODEL_TUNING_COMPLETED,
    MODEL_TUNING_FAILED,
    IncidentStore,
    salience,
)

pytestmark = pytest.mark.integration

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(db, clock):
    return IncidentStore(db, clock=clock)


def _record(store, event_type=MODEL_PROMOTED, salience_=0.5, **kwargs):
    return store.record(event_type, kwargs.pop("outcome", "ok"), salience_, kwargs.pop("payload", {}), **kwargs)


def test_record_then_get_round_trips_every_field(store):
    payload = {"auc": 0.91, "params": {"max_depth": 4}, "tags": ["a", "b"]}
    made = store.record(MODEL_PROMOTED, "promoted", 0.8, payload, experiment_name="churn", model_version=7)
    got = store.get(made["id"])
    assert got == made
    assert got["payload"] == payload
    assert got["model_version"] == "7"
    assert got["experiment_name"] == "churn"
    assert got["created_at"] == T0.isoformat()
    assert got["timestamp"] == T0.timestamp()


def test_get_unknown_id_is_404(store):
    with pytest.raises(NotFoundError) as caught:
        store.get(12345)
    assert caught.value.status_code == 404


def test_query_is_newest_first_and_paginates_with_total(store, clock):
    ids = []
    for minute in range(7):
        clock.now = T0 + timedelta(minutes=minute)
        ids.append(_record(store)["id"])
    first = store.query(limit=3)
    second = store.query(limit=3, offset=3)
    last = store.query(limit=3, offset=6)
    assert [item["id"] for item in first["items"]] == ids[::-1][:3]
    assert [item["id"] for item in second["items"]] == ids[::-1][3:6]
    assert [item["id"] for item in last["items"]] == ids[:1]
    assert (first["total"], first["limit"], first["offset"]) == (7, 3, 0)
    assert second["total"] == last["total"] == 7


def test_query_filters_by_min_salience_and_event_type(store):
    _record(store, MODEL_PROMOTED, 0.9)
    _record(store, MODEL_PROMOTED, 0.4)
    _record(store, MODEL_REFRESHED, 0.2)
    _record(store, MODEL_TUNING_FAILED, 0.6)
    salient = store.query(min_salience=0.5)
    assert sorted(item["salience"] for item in salient["items"]) == [0.6, 0.9]
    assert salient["total"] == 2
    promoted = store.query(event_type=MODEL_PROMOTED)
    assert {item["event_type"] for item in promoted["items"]} == {MODEL_PROMOTED}
    assert promoted["total"] == 2
    both = store.query(event_type=MODEL_PROMOTED, min_salience=0.5)
    assert [item["salience"] for item in both["items"]] == [0.9]
    assert store.query(min_salience=0.9)["total"] == 1  # inclusive bound


def test_query_filters_by_time_window(store, clock):
    for hour in range(5):
        clock.now = T0 + timedelta(hours=hour)
        _record(store, payload={"hour": hour})
    window = store.query(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3))
    assert [item["payload"]["hour"] for item in window["items"]] == [3, 2, 1]
    as_text = store.query(since=(T0 + timedelta(hours=4)).isoformat().replace("+00:00", "Z"))
    assert [item["payload"]["hour"] for item in as_text["items"]] == [4]
    as_epoch = store.query(until=T0.timestamp())
    assert [item["payload"]["hour"] for item in as_epoch["items"]] == [0]
    other_zone = T0.astimezone(timezone(timedelta(hours=5))) + timedelta(hours=2)
    assert store.query(since=other_zone)["total"] == 3


def test_stats_counts_by_type_recent_and_average(store, clock):
    assert store.stats(now=T0) == {"total": 0, "by_event_type": {}, "last_24h": 0, "average_salience": None}
    clock.now = T0 - timedelta(hours=30)
    _record(store, MODEL_TUNING_COMPLETED, 0.2)
    clock.now = T0 - timedelta(hours=1)
    _record(store, MODEL_TUNING_COMPLETED, 0.4)
    _record(store, MODEL_PROMOTED, 0.9)
    stats = store.stats(now=T0)
    assert stats["total"] == 3
    assert stats["by_event_type"] == {MODEL_PROMOTED: 1, MODEL_TUNING_COMPLETED: 2}
    assert stats["last_24h"] == 2
    assert stats["average_salience"] == pytest.approx(0.5)


def test_store_is_append_only(store):
    assert not any(hasattr(store, name) for name in ("delete", "update", "remove", "clear"))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"salience": 1.01}, "salience"),
        ({"salience": -0.1}, "salience"),
        ({"salience": float("nan")}, "salience"),
        ({"salience": "high"}, "salience"),
        ({"event_type": ""}, "event_type"),
        ({"event_type": "   "}, "event_type"),
        ({"event_type": "x" * 65}, "event_type"),
        ({"outcome": ""}, "outcome"),
        ({"payload": [1, 2]}, "payload"),
        ({"payload": {"when": datetime.now()}}, "payload"),
    ],
)
def test_record_rejects_bad_input(store, kwargs, field):
    args = {"event_type": MODEL_PROMOTED, "outcome": "ok", "salience": 0.5, "payload": {}} | kwargs
    with pytest.raises(ValidationError) as caught:
        store.record(**args)
    assert caught.value.field == field
    assert store.query()["total"] == 0


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"offset": -1}, "offset"),
        ({"min_salience": 2}, "min_salience"),
        ({"since": "yesterday"}, "since"),
        ({"since": T0, "until": T0 - timedelta(seconds=1)}, "since"),
    ],
)
def test_query_rejects_bad_input(store, kwargs, field):
    with pytest.raises(ValidationError) as caught:
        store.query(**kwargs)
    assert caught.value.field == field


def test_limit_bounds_are_inclusive(store):
    _record(store)
    assert store.query(limit=1)["total"] == store.query(limit=500)["total"] == 1


# --- salience: pure functions, no database -------------------------------------------------------

GAINS = [-0.1, -0.01, 0.0, 0.005, 0.01, 0.02, 0.04, 0.05, 0.08, 0.3]


def _non_decreasing(values):
    return all(a <= b for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("formula", [salience.tuning_completed, salience.model_promoted])
def test_gain_formulas_are_monotone_and_clamped(formula):
    with_champion = [formula(0.8 + gain, champion_auc=0.8) for gain in GAINS]
    without = [formula(auc) for auc in (0.0, 0.3, 0.5, 0.6, 0.75, 0.9, 1.0)]
    for values in (with_champion, without):
        assert _non_decreasing(values)
        assert all(0.0 <= value <= 1.0 for value in values)
    assert with_champion[-1] == 1.0  # a huge gain saturates
    assert with_champion[0] == with_champion[2]  # a loss counts as no gain
    assert with_champion[2] < with_champion[4] < with_champion[7]  # and more gain matters


def test_tuning_completed_anchor_points():
    assert salience.tuning_completed(0.80, champion_auc=0.80) == pytest.approx(0.5)
    assert salience.tuning_completed(0.85, champion_auc=0.80) == pytest.approx(1.0)
    assert salience.tuning_completed(0.825, champion_auc=0.80) == pytest.approx(0.75)
    assert salience.tuning_completed(0.75) == pytest.approx(0.75)  # no champion: lift over a coin flip


def test_promotion_outranks_completion_and_rejection():
    assert salience.model_promoted(0.81, 0.80) > salience.tuning_completed(0.81, 0.80)
    assert salience.model_promoted(0.80, 0.80) == pytest.approx(0.6)
    assert salience.promotion_rejected(0.79, 0.80) < salience.model_promoted(0.80, 0.80)


def test_rejection_grows_with_the_shortfall_and_stays_small():
    values = [salience.promotion_rejected(0.8 - drop, 0.8) for drop in (0.0, 0.01, 0.03, 0.05, 0.5)]
    assert _non_decreasing(values) and values[0] < values[-1]
    assert values[0] == pytest.approx(0.3) and values[-1] == pytest.approx(0.4)
    assert salience.promotion_rejected(0.9, None) == pytest.approx(0.3)


def test_fixed_saliences():
    assert salience.tuning_failed() == 0.6
    assert salience.tuning_failed(production=True) == 0.9
    assert salience.model_refreshed() == 0.2


@pytest.mark.parametrize(
    "name, expected",
    [("churn-prod", True), ("production", True), ("Prod_model", True), ("product-ranker", False),
     ("reproduce", False), ("dev", False), (None, False), ("", False)],
)
def test_looks_production(name, expected):
    assert salience.looks_production(name) is expected


@pytest.mark.parametrize("auc", [float("nan"), float("inf"), None, "0.8"])
def test_salience_rejects_non_numeric_auc(auc):
    with pytest.raises(ValidationError):
        salience.tuning_completed(auc, 0.8)
