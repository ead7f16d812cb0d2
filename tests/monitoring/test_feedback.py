"""The prediction log (async writer, sampling, retention, a store that is down), feedback and live metrics."""

from __future__ import annotations

import time
from datetime import timedelta

import numpy as np
import pytest

from _pg import db, db_url  # noqa: F401  (fixtures)
from seedcore.db.base import utcnow
from seedcore.db.database import Database
from seedcore.errors import ValidationError
from seedcore.monitoring.feedback import live_metrics, record_feedback
from seedcore.monitoring.predlog import PredictionLogger, new_prediction_id

pytestmark = pytest.mark.integration

ROWS = [[float(i), float(-i)] for i in range(8)]
PROBS = [0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1]


def _logger(settings, db_url, **changes) -> PredictionLogger:
    return PredictionLogger(settings.replace(database_url=db_url, **changes), lambda: Database(db_url))


def test_logged_rows_take_labels_and_give_live_metrics(settings, db, db_url):
    logger = _logger(settings, db_url)
    ids = logger.log(settings.model_name, 3, ROWS, PROBS)
    assert len(set(ids)) == 8 and all(len(i) == 32 for i in ids)
    assert logger.flush(10) and logger.count() == 8
    stale = new_prediction_id((utcnow() - timedelta(days=400)).timestamp())
    result = record_feedback(db, settings, ids[:6] + ["nope", stale], [1, 1, 0, 1, 0, 0, 1, 1])
    assert result["accepted"] == 6 and result["rejected"] == 2
    assert [r["status"] for r in result["results"]][-2:] == ["unknown", "expired"]
    live = live_metrics(db, settings.model_name, 3)
    # labels 1,1,0,1,0,0 for 0.9..0.3: one discordant pair out of 9 -> AUC 8/9
    assert live["n"] == 6 and live["auc"] == pytest.approx(8 / 9)
    assert live_metrics(db, settings.model_name, 3, rows=2)["n"] == 2
    assert live_metrics(db, settings.model_name, 4)["n"] == 0
    logger.stop()


@pytest.mark.parametrize("ids, labels, field", [
    (None, [1, 0], "labels"),              # 2 labels for the 3 ids given below
    (None, [1, 0, 2], "labels.2"),
    (None, [1, 0, True], "labels.2"),
    (None, [1, 0, "1"], "labels.2"),
    ([], [], "prediction_ids"),
    ([1, 2, 3], [1, 0, 1], "prediction_ids.0"),
])
def test_bad_feedback_is_refused_and_nothing_is_stored(settings, db, db_url, ids, labels, field):
    logger = _logger(settings, db_url)
    logged = logger.log(settings.model_name, 1, ROWS[:3], PROBS[:3])
    logger.flush(10)
    with pytest.raises(ValidationError) as caught:
        record_feedback(db, settings, logged if ids is None else ids, labels)
    assert caught.value.field == field
    assert live_metrics(db, settings.model_name, 1)["n"] == 0
    logger.stop()


def test_ids_of_another_model_are_refused_whole(settings, db, db_url):
    logger = _logger(settings, db_url)
    ours = logger.log(settings.model_name, 1, ROWS[:2], PROBS[:2])
    theirs = logger.log("someone_elses_model", 1, ROWS[:1], PROBS[:1])
    logger.flush(10)
    with pytest.raises(ValidationError) as caught:
        record_feedback(db, settings, ours + theirs, [1, 0, 1])
    assert caught.value.field == "prediction_ids.2"
    assert live_metrics(db, settings.model_name, 1)["n"] == 0


def test_sampling_and_retention_caps(settings, db, db_url):
    sampled = _logger(settings, db_url, predlog_sample_rate=0.0)
    assert len(sampled.log(settings.model_name, 1, ROWS, PROBS)) == 8  # every row still gets an id
    sampled.flush(10)
    assert sampled.count() == 0
    capped = _logger(settings, db_url, predlog_max_rows=100)
    x = np.zeros((150, 2)).tolist()
    for _ in range(2):
        capped.log(settings.model_name, 1, x, [0.5] * 150)
        capped.flush(10)
    assert capped.count() == 300
    assert capped.prune() == 200 and capped.count() == 100
    sampled.stop()
    capped.stop()


def test_one_predict_at_a_time_is_written_in_batches(settings, db, db_url):
    """A server answering one row per request must not commit once per request: the writer gathers what
    arrives within GATHER_S into one insert (counted by SQLAlchemy's own commit events on the engine)."""
    from sqlalchemy import event

    from seedcore.monitoring.predlog import GATHER_S

    logger = _logger(settings, db_url)
    commits = []
    event.listen(logger.database().engine, "commit", lambda connection: commits.append(1))
    sent, started = 60, time.monotonic()
    for _ in range(sent):  # a steady trickle of one-row predicts, 15 to a gathering window
        logger.log(settings.model_name, 1, ROWS[:1], PROBS[:1])
        time.sleep(GATHER_S / 15)
    windows = (time.monotonic() - started) / GATHER_S  # 4 on an idle machine; more when the sleeps overrun
    assert logger.flush(10) and logger.count() == sent
    assert len(commits) <= windows + 2, (sent, len(commits), windows)  # one a window, not one a predict
    logger.stop()


def test_a_store_that_is_down_degrades_the_log_but_never_the_caller(settings):
    down = "postgresql+psycopg://nobody:x@127.0.0.1:1/none"
    logger = PredictionLogger(settings, lambda: Database(down))
    ids = logger.log(settings.model_name, 1, ROWS, PROBS)
    assert len(ids) == 8
    assert logger.flush(30)
    status = logger.status()
    assert status["status"] == "degraded" and status["dropped"] == 8 and status["last_error"]
    logger.stop()
