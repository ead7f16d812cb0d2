"""Settings on fresh stores under a directory: MLflow's SQLite store copied from the session's initialised
template, and optionally our SQL database copied from the session's migrated SQLite template.

conftest's `settings` builds one per test; a module-scoped fixture builds one for a module whose tests only
read, or only send requests that must be refused (`from _stores import stores_settings`).
"""

from __future__ import annotations

import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from _pg import copy_sqlite_template
from seedcore.config import Settings

# How often a test app's served model checks the production alias. Each check is an MLflow registry read of
# about 20 ms: at 0.2 s, every app of the suite spent a tenth of a CPU on it (tests/api/test_organism.py on
# SQLite: 75.5 machine CPU-s at 0.2 s, 64.9 at 2 s). A test that needs a promotion served at once refreshes.
POLL_S = 1.0
# How long a test app's store checks (`/health`, the write probes) wait for an answer. The product's 2 s is a
# verdict on a store; under the suite's load a fresh app's first MLflow check (its store's start) took longer,
# and a unit test of /health saw `degraded` for it. No test here waits for that timeout to expire.
STORE_CHECK_S = 30.0


def stores_settings(root: Path, mlflow_template: Path, sqlite_template: Path | None = None, **changes) -> Settings:
    """Settings whose data dir and MLflow store are under `root` (a copy of `mlflow_template`); with
    `sqlite_template`, our SQLite database there is already at head."""
    mlruns = root / "mlruns"
    mlruns.mkdir(parents=True)
    shutil.copy(mlflow_template, mlruns / "mlflow.db")
    settings = Settings(data_dir=root / "data", mlruns_dir=mlruns,
                        **{"poll_interval_s": POLL_S, "store_check_timeout_s": STORE_CHECK_S, **changes})
    settings.ensure_dirs()
    if sqlite_template is not None:
        copy_sqlite_template(sqlite_template, settings.database_url)
    return settings


@contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """`chattr +i` on `paths` (the ones that exist) for the block, `chattr -i` after, whatever happens."""
    present = [str(p) for p in paths if p.exists()]
    assert present, paths
    try:
        subprocess.run(["chattr", "+i", *present], check=True)
        yield
    finally:
        subprocess.run(["chattr", "-i", *present], check=True)
