"""The blessed layout on its own (real files, a real booster): publish, undo, verify, the older real
directory taken over, and a promotion held up by another one answering 409."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import xgboost as xgb

from seedcore import names
from seedcore.promotion.blessed import BlessedFileError, publish, read_blessed
from seedcore.services import services_of

pytestmark = pytest.mark.unit


def _raw(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, 3)).astype(np.float32)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "seed": seed},
                        xgb.DMatrix(x, label=(x[:, 0] > 0).astype(int)), num_boost_round=3)
    return bytes(booster.save_raw("ubj"))


def test_publish_switches_the_link_and_undo_switches_it_back(tmp_path):
    link = tmp_path / "models" / names.BLESSED_DIRNAME
    first = publish(link, 1, _raw(1), {"version": 1})
    second = publish(link, 2, _raw(2), {"version": 2})
    assert read_blessed(link).version == 2 and read_blessed(link).raw == _raw(2)
    second.undo()
    assert read_blessed(link).version == 1 and not second.directory.exists()
    assert os.readlink(link) == first.directory.name  # relative: the data dir can move


def test_an_older_real_directory_is_taken_over_and_restored_on_undo(tmp_path):
    link = tmp_path / "models" / names.BLESSED_DIRNAME
    link.mkdir(parents=True)  # the layout of earlier releases: a real directory, no sha256
    (link / names.BLESSED_MODEL_FILE).write_bytes(_raw(1))
    (link / names.METADATA_FILE).write_text(json.dumps({"version": 1}))
    with pytest.raises(BlessedFileError, match="model_sha256"):
        read_blessed(link)  # unverifiable: never served
    switch = publish(link, 2, _raw(2), {"version": 2})
    assert link.is_symlink() and read_blessed(link).version == 2
    switch.undo()
    assert link.is_symlink() and json.loads((link / names.METADATA_FILE).read_text())["version"] == 1


def test_a_model_that_does_not_match_its_metadata_is_refused(tmp_path):
    link = tmp_path / "models" / names.BLESSED_DIRNAME
    switch = publish(link, 1, _raw(1), {"version": 1})
    (switch.directory / names.BLESSED_MODEL_FILE).write_bytes(_raw(2))
    with pytest.raises(BlessedFileError, match="does not match the sha256"):
        read_blessed(link)


def test_a_promotion_waiting_on_another_answers_409(migrated_settings):
    from seedcore.api import create_app
    from seedcore.db.database import Database
    from seedcore.db.locks import LeaseLock
    from seedcore.promotion.service import PROMOTION_LOCK

    settings = migrated_settings.replace(promotion_lock_timeout_s=0.5)
    assert LeaseLock(Database(settings.database_url), PROMOTION_LOCK).try_acquire("another-process")
    app = create_app(settings)
    try:
        response = app.test_client().post("/xgboost/promote", json={"version": 1})
        assert response.status_code == 409
        assert response.get_json()["error"].startswith("promotion in progress")
    finally:
        services_of(app).stop()
