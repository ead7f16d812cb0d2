"""`seedcore promote` keeps what the promotion replaced in the energy ledger (in process, real registry)."""

from __future__ import annotations

import json

import pytest

from _serving import add_version
from seedcore.cli import main
from datetime import timedelta

from seedcore.db.database import Database
from seedcore.db.base import utcnow
from seedcore.db.tables_flywheel import PredictionRecord
from seedcore.monitoring.predlog import new_prediction_id
from seedcore.memory.store import IncidentStore
from seedcore.organism.ledger import ledger
from seedcore.promotion.registry import Registry

pytestmark = pytest.mark.integration


def test_a_promotion_from_the_command_line_enters_the_ledger(migrated_settings, monkeypatch, capsys):
    settings = migrated_settings
    for key in ("SEEDCORE_DATABASE_URL", "SEEDCORE_TRACKING_URI", "SEEDCORE_REGISTRY_URI"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SEEDCORE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SEEDCORE_MLRUNS_DIR", str(settings.mlruns_dir))
    registry = Registry(settings)
    first, _ = add_version(settings, registry, rounds=20, depth=3)  # promoted
    second, _ = add_version(settings, registry, seed=1, rounds=2, depth=1, promote=False)
    db = Database(settings.database_url)
    served = 48  # by the first version in the last hour: its traffic, read at the promotion
    with db.session() as session:
        at = utcnow() - timedelta(minutes=30)
        session.add_all(PredictionRecord(id=new_prediction_id(at.timestamp()), model_name=settings.model_name,
                                         model_version=first, created_at=at, features=[0.0] * 10, prediction=0.5)
                        for _ in range(served))
    assert main(["promote", "--version", str(second), "--force"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "success"
    energy = ledger(settings, db, second, holdout=registry.describe(registry.get_version(second))["holdout"])
    at = IncidentStore(db).query(event_type="model_promoted")["items"][0]["payload"]["energy"]
    final = IncidentStore(db).query(event_type="model_promotion_energy")["items"]
    db.dispose()
    assert at["as_of"] == "promotion" and at["mem_bytes"] > 100 and at["cpu_seconds"] is None  # no job metered
    assert energy["previous_version"] == first and energy["promoted_at"] is not None
    # forced: the weaker model (2 rounds of depth 1) errs more at the same traffic, so it never pays back
    assert energy["net_delta"] < 0 and energy["net_delta_per_day"] < 0 and energy["break_even_at"] is None
    # no job's end follows a promotion from the command line: its final figures came with it, once, the pair
    # at the traffic the replaced version had (24 h at 48 an hour's pace is not extrapolated: 48 a day)
    assert len(final) == 1, final
    figures = final[0]["payload"]
    assert figures["model_version"] == second
    per_day = served * 24  # 48 in the last half hour: counted over an hour at least, so 48 an hour
    assert figures["energy"]["predictions_per_day"] == pytest.approx(per_day)
    assert at["pair"] is None and at["pair_logloss"] is not None  # at the promotion: no traffic read under its lock
    assert figures["energy"]["pair_logloss"] == pytest.approx(at["pair_logloss"])
    assert figures["energy"]["pair"] == pytest.approx(at["pair_logloss"] * per_day)
