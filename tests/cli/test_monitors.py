"""`seedcore evaluate`, `seedcore monitors`, `seedcore schedules`: the same services as the API, from a shell."""

from __future__ import annotations

import json

import pytest

from _monitoring import TINY_TUNE
from _serving import add_version
from seedcore.cli import main
from seedcore.promotion.registry import Registry

pytestmark = pytest.mark.unit


@pytest.fixture
def env(settings, monkeypatch):
    monkeypatch.setenv("SEEDCORE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SEEDCORE_MLRUNS_DIR", str(settings.mlruns_dir))
    return settings


def _run(capsys, *argv) -> tuple[int, dict | list | None, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def test_schedules_from_the_cli(env, capsys):
    body = json.dumps({"name": "weekly", "cron": "0 2 * * 1", "timezone": "Europe/Paris", "tune": TINY_TUNE})
    code, created, _ = _run(capsys, "schedules", "create", body)
    assert code == 0 and created["next_run_at"] and created["enabled"]
    code, paused, _ = _run(capsys, "schedules", "pause", created["id"])
    assert code == 0 and paused["enabled"] is False
    code, listed, _ = _run(capsys, "schedules", "list")
    assert [s["id"] for s in listed] == [created["id"]]

    bad = json.dumps({"name": "bad", "cron": "0 2 * *", "tune": TINY_TUNE})
    code, out, err = _run(capsys, "schedules", "create", bad)
    assert code == 2 and out is None and json.loads(err)["field"] == "cron"
    assert len(_run(capsys, "schedules", "list")[1]) == 1


def test_monitors_and_evaluate_from_the_cli(env, capsys):
    bad = json.dumps({"name": "m", "metric": "live_auc", "threshold": 0.9, "tune": {"config_type": "huge"}})
    code, _, err = _run(capsys, "monitors", "create", bad)
    assert code == 2 and json.loads(err)["field"] == "tune.config_type"
    assert _run(capsys, "monitors", "list")[1] == []

    version, _ = add_version(env, Registry(env))
    code, result, _ = _run(capsys, "evaluate")
    assert code == 0 and result["model_version"] == version and result["metrics"]["rows"] == 2000
    code, _, err = _run(capsys, "evaluate", "--version", "7")
    assert code == 2 and json.loads(err)["field"] == "version"
