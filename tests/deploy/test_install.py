"""What a user installs is what we test: the wheel, with no extras, in a fresh virtualenv, its dependencies
from the package index. Every module imports there, its `seedcore up` runs a sweep with each search algorithm, and the
migrations shipped inside the package upgrade a new database there."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from _installed import ROOT, installed  # noqa: F401  (fixture)
from _lifecycle import clean_env, ctrl_c, free_port, start
from seedcore.tuning.spaces import SEARCH_ALGS

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


@pytest.fixture(scope="module")
def plain_up(installed, tmp_path_factory):
    """`seedcore up` of the plain install in a directory of its own, on free ports; Ctrl-C (the group) at the end."""
    home = tmp_path_factory.mktemp("plain_up")
    port, ui_port = free_port(), free_port()
    env = installed.env(clean_env(home, SEEDCORE_PORT=str(port), SEEDCORE_MLFLOW_UI_PORT=str(ui_port),
                                  SEEDCORE_RAY_DASHBOARD_PORT="0"))
    platform = start(["up"], home, port, env, seedcore=installed.seedcore, cwd=home)
    try:
        platform.wait_healthy(timeout=300)
        yield home, env, platform
        ctrl_c(platform)
    finally:
        platform.stop()


@pytest.mark.parametrize("alg", SEARCH_ALGS)
def test_a_one_trial_sweep_runs_with_each_search_algorithm(installed, plain_up, alg):
    """`seedcore tune` of the plain install on the built-in data, handed to the plain install's running
    `seedcore up` (one Ray for the three): tpe and qmc need Optuna at run time, in the server."""
    home, env, platform = plain_up
    done = subprocess.run([str(installed.seedcore), "tune", "--experiment-name", f"install_{alg}", "--force",
                           "--custom-config", json.dumps({"num_samples": 1, "search_alg": alg, "seed": 0})],
                          capture_output=True, text=True, timeout=600, env=env, cwd=home)
    assert done.returncode == 0, done.stderr[-4000:] + platform.text()[-4000:]
    assert f"handed to the server at {platform.url}" in done.stderr  # the sweep ran in the server, not here
    result = json.loads(done.stdout)
    assert result["status"] == "success" and result["tune_config"]["search_alg"] == alg
    assert result["total_trials"] == 1 and result["trials"]["completed"] == 1, result["trials"]
    assert result["promotion"]["status"] == "success"
    assert Path(result["promotion"]["blessed_path"]).is_file()
    assert Path(result["promotion"]["blessed_path"]).is_relative_to(home / "data")


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
