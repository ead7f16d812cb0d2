"""The blessed model on disk: immutable versioned directories behind one atomically switched symlink.

    <data>/models/utility_risk_model_latest -> utility_risk_model_v7_20261203T080102_k3j2/
    <data>/models/utility_risk_model_v7_20261203T080102_k3j2/model.xgb            UBJ bytes (the guide's name)
                                                            /model.ubj            the same bytes, a name XGBoost knows
                                                            /tuning_metadata.json with model_sha256

A promotion writes a fresh directory and then replaces the symlink in one rename, so a reader sees the old
pair or the new pair, never a mix; `read_blessed` verifies the pair by its sha256 before anyone serves it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from seedcore import names
from seedcore._files import atomic_write_bytes, atomic_write_json, fsync_dir
from seedcore._xgboost import xgb
from seedcore.errors import SeedcoreError

MODEL_UBJ_FILE = "model.ubj"  # XGBoost picks the format from the suffix: this name loads without a warning
SHA256_KEY = "model_sha256"


class BlessedFileError(SeedcoreError):
    """The blessed files are missing, incomplete, or do not match each other."""

    status_code = 503


@dataclass(frozen=True)
class Blessed:
    """One verified pair: the model bytes and the metadata that describes them."""

    directory: Path
    metadata: dict
    raw: bytes

    @property
    def version(self) -> int:
        return int(self.metadata["version"])

    def booster(self) -> xgb.Booster:
        """The model, loaded from its bytes (XGBoost warns about the .xgb suffix when given the path)."""
        booster = xgb.Booster()
        booster.load_model(bytearray(self.raw))
        return booster


@dataclass(frozen=True)
class Switch:
    """What one `publish` changed, so a failed promotion can put it back."""

    link: Path
    directory: Path
    previous_target: str | None

    def undo(self) -> None:
        """Point the link back where it was (or remove it), then delete the new directory."""
        restore(self.link, self.directory.name, self.previous_target)


def sha256_hex(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def publish(link: Path, version: int, raw: bytes, metadata: dict) -> Switch:
    """Write model + metadata into a fresh directory beside `link`, then switch `link` to it atomically."""
    retire_legacy_directory(link)
    directory = prepare(link, directory_name(link, version), raw, metadata)
    try:
        previous = current_target(link)
        switch_link(link, directory.name)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return Switch(link, directory, previous)


def directory_name(link: Path, version: int) -> str:
    """A fresh name for a version's directory beside `link`, chosen before it exists (a journal records it)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return f"{_stem(link)}_v{int(version)}_{stamp}_{uuid.uuid4().hex[:8]}"


def prepare(link: Path, name: str, raw: bytes, metadata: dict) -> Path:
    """Write model + metadata into the new directory `name` beside `link`; the link is not switched to it."""
    link.parent.mkdir(parents=True, exist_ok=True)
    directory = link.parent / name
    directory.mkdir()
    try:
        directory.chmod(0o755)
        atomic_write_bytes(directory / names.BLESSED_MODEL_FILE, raw)
        atomic_write_bytes(directory / MODEL_UBJ_FILE, raw)
        atomic_write_json(directory / names.METADATA_FILE, {**metadata, SHA256_KEY: sha256_hex(raw)})
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return directory


def restore(link: Path, name: str, previous: str | None) -> None:
    """Undo switching `link` to directory `name`: point it back at `previous` (or remove it) if it points at
    `name`, then delete `name`. Safe to repeat, and after a crash at any point of a switch."""
    if not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"not a directory name beside {link}: {name!r}")
    if current_target(link) == name:
        if previous is None:
            link.unlink(missing_ok=True)
        else:
            switch_link(link, previous)
    if current_target(link) != name:
        shutil.rmtree(link.parent / name, ignore_errors=True)
    for stale in link.parent.glob(f".{link.name}.*.tmp"):  # a switch killed between symlink and rename
        stale.unlink(missing_ok=True)


def switch_link(link: Path, target: str) -> None:
    """Make `link` point at `target` (a name in the same directory) in one rename."""
    temp = link.with_name(f".{link.name}.{uuid.uuid4().hex}.tmp")
    os.symlink(target, temp)
    try:
        os.replace(temp, link)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(link.parent)


def current_target(link: Path) -> str | None:
    """The directory name `link` points at, or None when there is no link yet."""
    return os.readlink(link) if link.is_symlink() else None


def read_blessed(link: Path) -> Blessed:
    """The blessed pair behind `link`, verified; BlessedFileError if absent or inconsistent."""
    directory = Path(os.path.realpath(link))  # resolve once: both files come from the same directory
    try:
        metadata = json.loads((directory / names.METADATA_FILE).read_text())
        raw = (directory / names.BLESSED_MODEL_FILE).read_bytes()
    except FileNotFoundError as exc:
        raise BlessedFileError(f"no blessed model at {link} ({Path(exc.filename).name} missing)") from exc
    except (OSError, ValueError) as exc:
        raise BlessedFileError(f"blessed files at {link} are unreadable: {exc}") from exc
    expected = metadata.get(SHA256_KEY) if isinstance(metadata, dict) else None
    if not expected:
        raise BlessedFileError(f"{link / names.METADATA_FILE} records no {SHA256_KEY}: it cannot be verified")
    if sha256_hex(raw) != expected:
        raise BlessedFileError(f"{link / names.BLESSED_MODEL_FILE} does not match the sha256 its metadata "
                               "records: the pair is inconsistent and is not served")
    if "version" not in metadata:
        raise BlessedFileError(f"{link / names.METADATA_FILE} names no version")
    return Blessed(directory, metadata, raw)


def prune(link: Path, keep: int) -> list[Path]:
    """Delete all but the `keep` newest directories published beside `link` (never the current one)."""
    target = current_target(link)
    published = [p for p in link.parent.glob(f"{_stem(link)}_v*") if p.is_dir() and not p.is_symlink()]
    published += [p for p in link.parent.glob(f"{_stem(link)}_legacy_*") if p.is_dir() and not p.is_symlink()]
    old = sorted((p for p in published if p.name != target), key=lambda p: p.stat().st_mtime, reverse=True)
    removed = old[keep:]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def _stem(link: Path) -> str:
    """`utility_risk_model` for `utility_risk_model_latest`: the prefix of every published directory."""
    return link.name.removesuffix("_latest")


def retire_legacy_directory(link: Path) -> None:
    """Older releases wrote a real directory where the link goes: move it aside so the link can take its place."""
    if link.is_dir() and not link.is_symlink():
        legacy = link.with_name(f"{_stem(link)}_legacy_{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}")
        link.rename(legacy)
        switch_link(link, legacy.name)  # a failed promotion switches back to it
