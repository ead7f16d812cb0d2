"""`seedcore up` refusing to start over a database that cannot take a write, called in process through
`seedcore.cli.main` (the exit code and the JSON reason on stderr, as a shell sees them): refused before it
migrates, opens MLflow's store or starts anything. tests/runtime/test_store_health.py runs the same refusal
as a process and checks that no process is left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _lifecycle import as_fresh_user
from _stores import immutable
from seedcore import cli
from seedcore.cli.common import OUR_FAULT
from seedcore.db.migrations import upgrade

pytestmark = pytest.mark.integration  # `chattr` runs as a child process


@pytest.fixture
def user_env(settings, monkeypatch):
    """A fresh user's environment (no SEEDCORE_* of ours) naming this test's stores."""
    as_fresh_user(monkeypatch, settings.data_dir, settings.mlruns_dir)
    settings.ensure_dirs()
    return settings


def refusal(capsys) -> str:
    out, err = capsys.readouterr()
    assert "SeedCore Flywheel API" not in out  # nothing was started
    return json.loads(err.strip().splitlines()[-1])["error"]


def test_up_over_a_read_only_database_is_refused_before_anything_starts(user_env, capsys):
    upgrade(user_env.database_url)
    db = user_env.data_dir / "seedcore.db"
    for leftover in (Path(f"{db}-wal"), Path(f"{db}-shm")):  # a file with no WAL beside it: read-only alone
        leftover.unlink(missing_ok=True)
    store = user_env.mlruns_dir / "mlflow.db"  # the test's MLflow store (a copy of an initialised one)
    before = store.stat().st_mtime_ns
    with immutable(db):
        code = cli.main(["up", "--no-mlflow-ui", "--host", "127.0.0.1", "--port", "8123"])
    assert code == OUR_FAULT
    error = refusal(capsys)
    assert error.startswith(f"not starting: our database {db} is read-only"), error
    assert store.stat().st_mtime_ns == before  # refused before MLflow's store was touched


def test_up_over_the_wal_a_lost_database_left_is_refused_and_the_wal_kept(user_env, capsys):
    db = user_env.data_dir / "seedcore.db"
    wal = Path(f"{db}-wal")
    wal.write_bytes(b"\0" * 32)  # what a deleted database's writer leaves behind
    code = cli.main(["up", "--no-mlflow-ui"])
    assert code == OUR_FAULT
    error = refusal(capsys)
    assert f"our database {db} is missing but its seedcore.db-wal is there" in error, error
    assert not db.exists() and wal.exists()  # no new empty database over it, nothing replayed
