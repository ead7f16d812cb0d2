"""The prediction log keeps labels apart from pruning, on SQLite and PostgreSQL: a flood of predictions past
SEEDCORE_PREDLOG_MAX_ROWS deletes unlabelled rows only, labelled rows have their own cap
(SEEDCORE_PREDLOG_MAX_LABELLED_ROWS, the ones labelled longest ago go first) and never age out; feedback
names an id given twice, and a pruned id answers `expired`."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import func, select

from _pg import db, db_url, sql_backend  # noqa: F401  (fixtures)
from _serving import add_version
from seedcore.api import create_app
from seedcore.config import Settings
from seedcore.db.base import utcnow
from seedcore.db.database import Database
from seedcore.db.tables_flywheel import PredictionRecord
from seedcore.errors import ValidationError
from seedcore.monitoring.feedback import live_metrics, record_feedback
from seedcore.monitoring.predlog import PredictionLogger
from seedcore.promotion.registry import Registry
from seedcore.services import services_of

pytestmark = pytest.mark.integration

CAP = 100  # the smallest row cap the settings take


@pytest.fixture
def log_settings(tmp_path) -> Settings:
    """Settings for the log's own tests (its database comes from `db_url`, SQLite or PostgreSQL)."""
    return Settings(data_dir=tmp_path / "data", mlruns_dir=tmp_path / "mlruns")


def _logger(settings, db_url, **changes) -> PredictionLogger:
    return PredictionLogger(settings.replace(database_url=db_url, **changes), lambda: Database(db_url))


def _predict(logger, settings, rows: int) -> list[str]:
    """`rows` predictions logged in one call (each row's features hold its number), written."""
    x = np.arange(rows * 2, dtype=float).reshape(rows, 2).tolist()
    ids = logger.log(settings.model_name, 1, x, [0.25 + 0.5 * (i % 2) for i in range(rows)])
    assert logger.flush(30)
    return ids


def _labels(db) -> dict[str, int]:
    with db.session() as session:
        return dict(session.execute(select(PredictionRecord.id, PredictionRecord.label)
                                    .where(PredictionRecord.labelled_at.is_not(None))).all())


def _unlabelled(db) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(PredictionRecord.id).where(PredictionRecord.labelled_at.is_(None))
                                    .order_by(PredictionRecord.id)))


def test_a_flood_of_predictions_past_the_cap_deletes_no_label(log_settings, db, db_url):
    settings = log_settings
    """The outside tester's case, scaled down: the labelled rows are the oldest, then predictions push the
    log far past its cap. Pruning the oldest rows whatever they held took every label; now it takes
    unlabelled rows only, oldest first."""
    logger = _logger(settings, db_url, predlog_max_rows=CAP)
    first = _predict(logger, settings, 150)
    labelled = first[:40]
    given = [i % 2 for i in range(40)]
    assert record_feedback(db, settings, labelled, given)["accepted"] == 40
    later = _predict(logger, settings, 3 * CAP)  # 450 rows in the log: 410 unlabelled, 40 labelled

    assert logger.prune() == 410 - CAP
    assert _labels(db) == dict(zip(labelled, given))  # every label kept, as given
    assert _unlabelled(db) == sorted(later)[-CAP:]  # the newest unlabelled rows are what is left
    assert live_metrics(db, settings.model_name, 1)["n"] == 40

    gone = first[60]  # pruned before its outcome arrived: `expired`, not stored, not `unknown`
    answer = record_feedback(db, settings, [gone, max(later)], [1, 0])
    assert [r["status"] for r in answer["results"]] == ["expired", "accepted"]
    logger.stop()


def test_labelled_rows_have_their_own_cap_oldest_labels_first(log_settings, db, db_url):
    settings = log_settings
    logger = _logger(settings, db_url, predlog_max_rows=1000, predlog_max_labelled_rows=CAP)
    ids = _predict(logger, settings, 3 * CAP)
    now = utcnow()
    # labelled in three rounds, an hour apart, newest ids first: label time (not id) decides what goes
    rounds = [ids[2 * CAP:], ids[CAP:2 * CAP], ids[:CAP]]
    for hours_ago, batch in zip((3, 2, 1), rounds):
        record_feedback(db, settings, batch, [1] * len(batch), now=now - timedelta(hours=hours_ago))
    unlabelled_before = _predict(logger, settings, 50)

    assert logger.prune() == 2 * CAP
    assert sorted(_labels(db)) == sorted(rounds[-1])  # the round labelled last is kept whole
    assert _unlabelled(db) == sorted(unlabelled_before)  # under their own cap: untouched
    logger.stop()


def test_the_age_limit_takes_unlabelled_rows_only(log_settings, db, db_url):
    settings = log_settings
    logger = _logger(settings, db_url, predlog_max_age_h=1.0)
    old = _predict(logger, settings, 30)
    record_feedback(db, settings, old[:10], [0, 1] * 5)
    later = logger.clock() + timedelta(hours=2)  # two hours on, the same rows are past the age limit
    logger.clock = lambda: later

    assert logger.prune() == 20
    assert sorted(_labels(db)) == sorted(old[:10]) and _unlabelled(db) == []
    logger.stop()


def test_the_retention_index_exists_after_upgrade(db):
    """Pruning walks rows by (labelled_at, id); the migration creates that index on both backends."""
    from sqlalchemy import inspect

    indexes = {i["name"]: i["column_names"] for i in inspect(db.engine).get_indexes("prediction_log")}
    assert indexes["ix_prediction_log_labelled"] == ["labelled_at", "id"]
    with db.session() as session:  # and a fresh log is empty
        assert session.scalar(select(func.count()).select_from(PredictionRecord)) == 0


def test_an_id_given_twice_is_refused_naming_it(log_settings, db, db_url):
    settings = log_settings
    logger = _logger(settings, db_url)
    ids = _predict(logger, settings, 3)
    with pytest.raises(ValidationError) as caught:
        record_feedback(db, settings, [ids[0], ids[1], ids[0]], [1, 0, 0])  # which label would win?
    assert caught.value.field == "prediction_ids.2" and ids[0] in caught.value.message
    assert _labels(db) == {}
    logger.stop()


# -- over REST ---------------------------------------------------------------------------------------------
@pytest.fixture
def rest(migrated_settings):
    add_version(migrated_settings, Registry(migrated_settings), rounds=5)
    app = create_app(migrated_settings)
    app.config["TESTING"] = True
    client = app.test_client()
    assert client.post("/xgboost/refresh_model").status_code == 200
    yield migrated_settings, client
    services_of(app).stop()


def test_feedback_with_an_id_twice_is_a_400_and_stores_nothing(rest):
    settings, client = rest
    rows = [[0.1 * i] * 10 for i in range(3)]
    ids = client.post("/xgboost/predict", json={"instances": rows}).get_json()["prediction_ids"]
    answer = client.post("/xgboost/feedback", json={"prediction_ids": [ids[0], ids[1], ids[1]], "labels": [1, 0, 1]})
    assert answer.status_code == 400 and answer.get_json()["field"] == "prediction_ids.2", answer.get_json()
    assert ids[1] in answer.get_json()["error"]
    database = Database(settings.database_url)
    assert _labels(database) == {}
    database.dispose()
    fine = client.post("/xgboost/feedback", json={"prediction_ids": ids, "labels": [1, 0, 1]})
    assert fine.status_code == 200 and fine.get_json()["accepted"] == 3


def test_a_taken_schedule_or_monitor_name_is_a_409_in_our_words(rest):
    """The 409 says which field is taken; no SQL, no driver message, no table.column."""
    _, client = rest
    tune = {"space_type": "conservative", "config_type": "conservative", "custom_tune_config": {"num_samples": 1}}
    for url, body, thing in [
        ("/xgboost/schedules", {"name": "weekly", "cron": "0 2 * * 1", "tune": tune}, "schedule"),
        ("/xgboost/monitors", {"name": "auc", "metric": "live_auc", "threshold": 0.9, "tune": tune}, "monitor"),
    ]:
        assert client.post(url, json=body).status_code == 201
        again = client.post(url, json=body)
        answer = again.get_json()
        assert again.status_code == 409 and answer["field"] == "name", answer
        assert answer["error"] == f"a {thing} with this name already exists: choose another name"
        text = again.get_data(as_text=True)
        for sql in ("UNIQUE", "constraint", "INSERT", "duplicate key", f"{thing}s.name", "sqlite", "psycopg"):
            assert sql not in text, (sql, text)
