"""What a user installs is what we test: the wheel, with no extras, in a fresh virtualenv, its dependencies
from the package index. Every module imports there, and the migrations shipped inside the package upgrade a
new database there. Its `seedcore up` is tests/deploy/test_guide.py's server: the guide runs against it, and
a one-trial sweep with each search algorithm."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from _installed import ROOT, installed  # noqa: F401  (fixture)
from _lifecycle import clean_env

pytestmark = pytest.mark.e2e

# Alembic's environment script: it runs under Alembic only (the upgrade test below runs it that way).
NOT_IMPORTABLE_ALONE = {"seedcore._migrations.env"}

IMPORT_ALL = """
import importlib, json, pkgutil, sys
import seedcore
found, failed = [], {}
for info in pkgutil.walk_packages(seedcore.__path__, "seedcore.", onerror=lambda name: None):
    found.append(info.name)
    if info.name in sys.argv[1:]:
        continue
    try:
        importlib.import_module(info.name)
    except BaseException as exc:
        failed[info.name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"file": seedcore.__file__, "found": found, "failed": failed}))
"""


def test_the_plain_install_holds_every_dependency_and_every_module_imports(installed):
    found = subprocess.run([str(installed.python), "-c", IMPORT_ALL, *NOT_IMPORTABLE_ALONE], capture_output=True,
                           text=True, timeout=600, env=installed.env(), cwd=installed.venv)
    assert found.returncode == 0, found.stderr[-4000:]
    report = json.loads(found.stdout.splitlines()[-1])
    assert Path(report["file"]).is_relative_to(installed.venv)  # the wheel's copy, not the repository
    assert report["failed"] == {}
    assert set(report["found"]) | {"seedcore"} == installed.modules  # the wheel ships every module

    check = subprocess.run([str(installed.python), "-m", "pip", "check"], capture_output=True, text=True,
                           timeout=300, env=installed.env())
    assert check.returncode == 0, check.stdout + check.stderr  # every requirement met, at compatible versions
    # nothing of the dev extra came along: this venv is what `pip install seedcore-flywheel` gives
    dev_only = subprocess.run([str(installed.python), "-c", "import pytest"], capture_output=True, text=True,
                              env=installed.env())
    assert dev_only.returncode != 0 and "No module named 'pytest'" in dev_only.stderr


def test_the_plain_install_runs_seedcore_db_upgrade_from_the_shipped_migrations(installed, tmp_path):
    where = subprocess.run([str(installed.python), "-c", "import seedcore.db.migrations as d; print(d.__file__); "
                            "print(d.MIGRATIONS_DIR)"], check=True, capture_output=True, text=True,
                           cwd=tmp_path, env=installed.env()).stdout.split()
    assert all(Path(p).is_relative_to(installed.venv / "lib") for p in where), where
    migrations = Path(where[1])
    assert not migrations.is_symlink() and (migrations / "alembic.ini").is_file()
    assert sorted(p.name for p in (migrations / "versions").glob("0*.py")) == \
        sorted(p.name for p in (ROOT / "migrations" / "versions").glob("0*.py"))

    upgraded = subprocess.run([str(installed.seedcore), "db", "upgrade"], cwd=tmp_path,
                              env=installed.env(clean_env(tmp_path)), capture_output=True, text=True, timeout=300)
    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    head = max(p.name.split("_")[0] for p in (ROOT / "migrations" / "versions").glob("0*.py"))
    assert f"database at revision {head}" in upgraded.stdout, upgraded.stdout
    assert (tmp_path / "data" / "seedcore.db").is_file()
