"""The served model: load the production version from the registry, swap it atomically, predict.

One `ModelHolder` per process holds one immutable `ServedModel`. A request reads the reference once
and uses that model throughout, so a swap never mixes two versions inside one answer. Loading runs
in the refreshing thread, outside anything a request waits on.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

from seedcore import names
from seedcore._xgboost import xgb
from seedcore.promotion.blessed import BlessedFileError, read_blessed
from seedcore.config import Settings
from seedcore.errors import NoModelLoadedError, NotFoundError, RegistryUnavailableError
from seedcore.promotion.registry import Registry
from seedcore.runtime.store_health import first_line

log = logging.getLogger(__name__)

READY, NO_MODEL, UNAVAILABLE = "ready", "no_model_loaded", "registry_unavailable"
FROM_REGISTRY, FROM_BLESSED_FILE = "registry", "blessed_file"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass(frozen=True)
class ServedModel:
    """One loaded version: never mutated after it is published, so requests may share it freely."""

    booster: xgb.Booster
    name: str
    version: int
    feature_names: tuple[str, ...]
    info: dict
    source: str
    model_uri: str
    loaded_at: str = field(default_factory=utc_now)
    index: dict[str, int] = field(init=False, repr=False, compare=False)  # feature name -> column

    def __post_init__(self):
        object.__setattr__(self, "index", {n: i for i, n in enumerate(self.feature_names)})

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for the rows of a float32 matrix (NaN = missing); thread-safe."""
        return self.booster.inplace_predict(x, validate_features=False)

    def bulk_predictor(self):
        """A predictor for big batches: a copy of the booster on every core (requests keep one each)."""
        booster = self.booster.copy()
        booster.set_param({"nthread": os.cpu_count() or 1})
        return lambda x: booster.inplace_predict(x, validate_features=False)

    def describe(self) -> dict:
        """model_info's view: the registry description plus where and when this process loaded it."""
        return {**self.info, "name": self.name, "version": self.version, "alias": names.PRODUCTION_ALIAS,
                "feature_names": list(self.feature_names), "loaded_at": self.loaded_at, "source": self.source,
                "model_uri": self.model_uri}


def prepare_booster(booster: xgb.Booster) -> xgb.Booster:
    """One thread per prediction: requests run in parallel already, and OpenMP start-up costs latency."""
    booster.set_param({"nthread": 1})
    return booster


def served_from_registry(registry: Registry, mv) -> ServedModel:
    """Load version `mv`; any failure to fetch it is a RegistryUnavailableError."""
    try:
        booster = prepare_booster(registry.load_booster(mv))
    except (MlflowException, SQLAlchemyError, OSError, xgb.core.XGBoostError) as exc:
        raise RegistryUnavailableError(f"cannot load {mv.name} version {mv.version}: {first_line(str(exc))}") from exc
    info = registry.describe(mv)
    return ServedModel(booster, info["name"], info["version"], _feature_names(info, booster), info,
                       FROM_REGISTRY, f"models:/{info['name']}/{info['version']}")


def served_from_blessed_file(settings: Settings) -> ServedModel:
    """The blessed model + tuning_metadata.json written at promotion, verified by its sha256.

    Raises BlessedFileError when the files are absent or do not match each other.
    """
    found = read_blessed(settings.blessed_dir)
    info = found.metadata
    booster = prepare_booster(found.booster())
    return ServedModel(booster, info.get("name", settings.model_name), found.version, _feature_names(info, booster),
                       info, FROM_BLESSED_FILE, str(settings.blessed_dir / names.BLESSED_MODEL_FILE))


def _feature_names(info: dict, booster: xgb.Booster) -> tuple[str, ...]:
    found = info.get("feature_names") or booster.feature_names
    return tuple(found or (f"f{i}" for i in range(booster.num_features())))


def blessed_path_of(settings: Settings, version: int) -> str | None:
    """The blessed file's path when it holds this very version, else None (around a promotion, or on a
    host whose data dir another process promotes into, it may hold another version)."""
    metadata_path = Path(os.path.realpath(settings.blessed_dir)) / names.METADATA_FILE
    try:
        blessed_version = int(json.loads(metadata_path.read_text()).get("version"))
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return str(settings.blessed_dir / names.BLESSED_MODEL_FILE) if blessed_version == version else None


@dataclass(frozen=True)
class RefreshOutcome:
    changed: bool
    model: ServedModel
    previous_version: int | None


class ModelHolder:
    """The process's served model: initial load, `refresh()`, a poll thread that follows the alias."""

    def __init__(self, settings: Settings, registry: Registry | None = None):
        self.settings = settings
        self.registry = registry or Registry(settings)
        self._model: ServedModel | None = None
        self._load_lock = threading.Lock()  # serialises loaders only; requests never take it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._polling = False
        self._last_error: str | None = None
        self._alias_version: int | None = None
        self._last_checked_at: str | None = None
        _reset_after_fork(self)

    # -- what requests use ---------------------------------------------------------------------
    @property
    def model(self) -> ServedModel | None:
        return self._model

    def require(self) -> ServedModel:
        """The current model, or a 503 that says none is loaded yet."""
        model = self._model
        if model is None:
            raise NoModelLoadedError(f"{NO_MODEL}: {self._detail()}")
        return model

    # -- loading -------------------------------------------------------------------------------
    def start(self, poll: bool = True) -> "ModelHolder":
        """Load the production version (the blessed file if the registry is down), then poll (unless not)."""
        try:
            self.refresh()
        except NotFoundError:
            pass  # nothing promoted yet: the poll thread picks up the first promotion
        except RegistryUnavailableError:
            self._model = self._blessed_fallback()
        if poll:
            self.start_polling()
        return self

    def refresh(self) -> RefreshOutcome:
        """Ask the registry which version is production and swap to it if it changed.

        Raises NotFoundError when the alias is not set and RegistryUnavailableError when the registry
        cannot be asked or the version cannot be loaded; either way the current model stays.
        Use `poll_once()` for a check that never raises.
        """
        with self._load_lock:
            try:
                mv = self.registry.production_version()
                self._checked(int(mv.version) if mv else None)
                previous = self._model
                if mv is None:
                    raise NotFoundError(self._detail())
                if previous is not None and previous.version == int(mv.version) and previous.source == FROM_REGISTRY:
                    return RefreshOutcome(False, previous, previous.version)
                model = served_from_registry(self.registry, mv)
            except RegistryUnavailableError as exc:
                self._last_error = exc.message
                raise
            self._model = model  # the swap: one reference assignment
            self._last_error = None
        log.info("serving %s version %s (was %s)", model.name, model.version, previous and previous.version)
        return RefreshOutcome(True, model, previous.version if previous else None)

    def _blessed_fallback(self) -> ServedModel | None:
        try:
            model = served_from_blessed_file(self.settings)
        except (BlessedFileError, OSError, ValueError, KeyError, xgb.core.XGBoostError) as exc:
            detail = exc.message if isinstance(exc, BlessedFileError) else str(exc)
            log.error("the registry cannot be read and the blessed file is unusable: %s", detail)
            self._last_error = f"{self._last_error}; blessed file unusable: {detail}"
            return None
        log.warning("the registry cannot be read: serving version %s from the verified blessed file %s",
                    model.version, model.model_uri)
        return model

    def _checked(self, alias_version: int | None) -> None:
        self._alias_version = alias_version
        self._last_checked_at = utc_now()
        self._last_error = None

    # -- polling -------------------------------------------------------------------------------
    def start_polling(self) -> None:
        """Start this process's daemon poll thread (each WSGI worker runs its own)."""
        self._polling = True
        self._thread = threading.Thread(target=self._poll_loop, name="seedcore-model-poll", daemon=True)
        self._thread.start()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.settings.poll_interval_s):
            self.poll_once()

    def poll_once(self) -> None:
        """One check; failures are recorded for status() and the current model keeps serving."""
        try:
            self.refresh()
        except (NotFoundError, RegistryUnavailableError):
            pass  # recorded by refresh()
        except Exception as exc:  # noqa: BLE001 - the poll thread must survive anything
            log.exception("model poll failed")
            self._last_error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> None:
        self._polling = False
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.settings.poll_interval_s + 30)

    def after_fork(self) -> None:
        """In a forked worker: fresh locks, and a poll thread of its own (threads do not survive fork)."""
        self._load_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        if self._polling:
            self.start_polling()

    # -- reporting -----------------------------------------------------------------------------
    def describe(self) -> dict | None:
        """The served model as model_info shows it, with the blessed file if it holds this version."""
        model = self._model
        if model is None:
            return None
        return {**model.describe(), "blessed_path": blessed_path_of(self.settings, model.version)}

    def status(self) -> dict:
        """state in {ready, no_model_loaded, registry_unavailable}, the served version, the last error."""
        model, error = self._model, self._last_error
        state = UNAVAILABLE if error else (READY if model else NO_MODEL)
        return {
            "state": state,
            "serving": model is not None,
            "model_name": self.settings.model_name,
            "version": model.version if model else None,
            "source": model.source if model else None,
            "loaded_at": model.loaded_at if model else None,
            "alias": names.PRODUCTION_ALIAS,
            "alias_version": self._alias_version,
            "last_checked_at": self._last_checked_at,
            "last_error": error,
            "poll_interval_s": self.settings.poll_interval_s,
            "pid": os.getpid(),
            "detail": self._detail(),
        }

    def _detail(self) -> str:
        model, error, name = self._model, self._last_error, self.settings.model_name
        serving = f"serving version {model.version} (from the {model.source.replace('_', ' ')})" if model else None
        if error:
            return f"{error}; " + (serving or "no model loaded")
        if model is None:
            return (f"no version of {name} has alias '{names.PRODUCTION_ALIAS}' yet; promote one and this "
                    f"process loads it within {self.settings.poll_interval_s:g} s")
        if self._alias_version is None and self._last_checked_at:
            return f"alias '{names.PRODUCTION_ALIAS}' of {name} is not set; still {serving}"
        return serving


def _reset_after_fork(holder: ModelHolder) -> None:
    """Register a fork hook that revives the holder's poll thread in the child (gunicorn --preload)."""
    ref = weakref.ref(holder)

    def after_in_child():
        alive = ref()
        if alive is not None:
            alive.after_fork()

    os.register_at_fork(after_in_child=after_in_child)
