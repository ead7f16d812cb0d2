"""The project as a user installs it: its wheel in a fresh virtualenv, with no extras, dependencies from the
package index. Built once per test run (`installed` fixture) for every test module and xdist worker that asks for it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL_TIMEOUT_S = 1800  # a machine with an empty pip cache downloads ~1 GB


@dataclass(frozen=True)
class Installed:
    venv: Path
    wheel: Path
    install_s: float  # `pip install <wheel>` alone
    size_bytes: int  # the venv on disk after the install
    modules: frozenset[str]  # every module of the seedcore package in the sources the wheel was built from

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    @property
    def seedcore(self) -> Path:
        return self.bin / "seedcore"

    def env(self, base: dict | None = None) -> dict:
        """`base` (default: this environment) as a shell with the venv activated has it, writing bytecode as a
        default Python does (the install compiled nothing: build)."""
        env = plain_env(base)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["VIRTUAL_ENV"] = str(self.venv)
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', os.defpath)}"
        return env


def plain_env(base: dict | None = None) -> dict:
    """`base` (default: this environment) without any virtualenv or Python path of the test run's."""
    return {k: v for k, v in (os.environ if base is None else base).items()
            if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def source_copy(path: Path) -> Path:
    """What a release holds (no build droppings in the shared tree): pyproject, platform/, migrations/."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    path.mkdir()
    shutil.copy(ROOT / "pyproject.toml", path)
    for name in ("platform", "migrations"):
        shutil.copytree(ROOT / name, path / name, symlinks=True, ignore=ignore)
    return path


def package_modules(top: Path) -> frozenset[str]:
    """Every module of the seedcore package under `top` (packages are the directories with an __init__.py;
    _migrations is a link to the top-level migrations/)."""
    modules = set()
    for folder, dirs, files in os.walk(top, followlinks=True):
        if "__init__.py" not in files:
            dirs[:] = []
            continue
        package = ".".join(("seedcore", *Path(folder).relative_to(top).parts))
        modules.add(package)
        modules.update(f"{package}.{name[:-3]}" for name in files if name.endswith(".py") and name != "__init__.py")
    return frozenset(modules)


def _run(command: list, log: Path, timeout: float, **kwargs) -> None:
    with open(log, "a") as out:
        out.write(f"$ {' '.join(map(str, command))}\n")
        out.flush()
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, **kwargs)
    assert done.returncode == 0, f"{command[:4]} failed:\n{log.read_text(errors='replace')[-4000:]}"


def _size(path: Path) -> int:
    return sum(entry.stat(follow_symlinks=False).st_size for entry in path.rglob("*"))


def build(base: Path) -> Installed:
    """Build the wheel from a copy of the sources, then install it into a new venv of its own."""
    log = base / "install.log"
    source = source_copy(base / "source")
    env = plain_env()
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", base / "dist", source], log, 600, env=env,
         cwd=base)
    modules = package_modules(source / "platform" / "seedcore")
    shutil.rmtree(source)  # the installed package must not lean on the tree it came from
    (wheel,) = (base / "dist").glob("seedcore_flywheel-*.whl")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", venv], log, 300, env=env, cwd=base)  # no system or borrowed packages
    started = time.monotonic()
    # Not byte-compiled at install (pip's --no-compile): each module is compiled on its first import and cached,
    # as a default Python does (the venv's processes run without PYTHONDONTWRITEBYTECODE: Installed.env). pip's
    # own compile of the whole 1.2 GB venv took about 40 of the install's 75 CPU-s, for the few modules the
    # suite imports; with the cache off instead (where PYTHONDONTWRITEBYTECODE is set, as on the machines the
    # suite runs on), every process compiled every module it imported (mlflow, ray and xgboost: 13 CPU-s, not 4).
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-compile", "--disable-pip-version-check",
          wheel], log, INSTALL_TIMEOUT_S, env=env, cwd=base)
    install_s = time.monotonic() - started
    return Installed(venv, wheel, round(install_s, 1), _size(venv), modules)


SHARED_DIR = "installed"  # under the run's base temp dir, which every xdist worker's own temp dir sits in


def shared_base(tmp_path_factory) -> Path:
    """The temp dir the whole run shares: pytest's base temp dir, or under xdist its parent (the controller's),
    where the controller removes the installed venv at the end of the run (tests/conftest.py)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> Installed:
    """The run's installed project, built once for every worker that asks (a file lock: the first builds, the
    others wait and reuse it; the venv is ~1.2 GB and its install a minute)."""
    from filelock import FileLock

    base = shared_base(tmp_path_factory)
    done = base / SHARED_DIR / "installed.json"
    with FileLock(str(base / f"{SHARED_DIR}.lock")):
        if not done.exists():
            shutil.rmtree(base / SHARED_DIR, ignore_errors=True)  # a build that failed half-way
            (base / SHARED_DIR).mkdir()
            made = build(base / SHARED_DIR)
            print(f"\ninstalled {made.wheel.name}: pip install {made.install_s} s, venv {made.size_bytes / 2**20:.0f} MiB")
            done.write_text(json.dumps({**asdict(made), "venv": str(made.venv), "wheel": str(made.wheel),
                                        "modules": sorted(made.modules)}))
    fields = json.loads(done.read_text())
    return Installed(**{**fields, "venv": Path(fields["venv"]), "wheel": Path(fields["wheel"]),
                        "modules": frozenset(fields["modules"])})


def remove_installed(base: Path) -> None:
    """The end of the run (the controller, or the one process): the shared venv goes."""
    shutil.rmtree(base / SHARED_DIR, ignore_errors=True)
    (base / f"{SHARED_DIR}.lock").unlink(missing_ok=True)
