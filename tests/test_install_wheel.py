"""A non-editable `pip install` of the project can migrate: the Alembic scripts ship inside the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fresh_venv(path: Path) -> Path:
    """A new venv that borrows this one's third-party packages (read-only, via a .pth line) but not its
    editable seedcore: a path line in a .pth does not run the .pth files of the directory it names."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _source_copy(path: Path) -> Path:
    """What a release holds (no build droppings in the shared tree): pyproject, platform/, migrations/."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    path.mkdir()
    shutil.copy(ROOT / "pyproject.toml", path)
    for name in ("platform", "migrations"):
        shutil.copytree(ROOT / name, path / name, symlinks=True, ignore=ignore)
    return path


def test_a_non_editable_install_runs_seedcore_db_upgrade_from_the_shipped_migrations(tmp_path):
    python = _fresh_venv(tmp_path / "venv")
    source = _source_copy(tmp_path / "source")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    str(source)], check=True, cwd=tmp_path, capture_output=True)
    shutil.rmtree(source)  # the installed package must not lean on the tree it came from

    where = subprocess.run([str(python), "-c", "import seedcore.db.database as d; print(d.__file__); "
                            "print(d.MIGRATIONS_DIR)"], check=True, capture_output=True, text=True,
                           cwd=tmp_path).stdout.split()
    site = tmp_path / "venv" / "lib"
    assert all(Path(p).is_relative_to(site) for p in where), where  # the wheel's copy, not the repository
    migrations = Path(where[1])
    assert not migrations.is_symlink() and (migrations / "alembic.ini").is_file()
    assert sorted(p.name for p in (migrations / "versions").glob("0*.py")) == \
        sorted(p.name for p in (ROOT / "migrations" / "versions").glob("0*.py"))

    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEDCORE_")}
    env["SEEDCORE_DATA_DIR"] = str(tmp_path / "data")
    upgraded = subprocess.run([str(tmp_path / "venv" / "bin" / "seedcore"), "db", "upgrade"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)
    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    head = max(p.name.split("_")[0] for p in (ROOT / "migrations" / "versions").glob("0*.py"))
    assert f"database at revision {head}" in upgraded.stdout, upgraded.stdout
    assert (tmp_path / "data" / "seedcore.db").is_file()
