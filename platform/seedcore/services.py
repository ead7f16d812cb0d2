"""The services of one server process, built once, in order, and handed to whatever needs them.

    services = Services.start(settings, role="all")   # the database, promotion, the runner, serving, ...
    services.runner.submit(request, trigger="api")
    services.stop()                                    # the runner first, the database last

`create_app` builds one per app and keeps it as the app's `seedcore` extension (`services_of(app)`); a view
reads `current_services()`. Role "serve" answers predictions only: no database of its own (the prediction
log opens one when it first writes), no runner, no promotion, no monitors, no energy meter, no evolution;
it keeps a working memory (model_info), held at most the poll interval: its model swaps when it polls the
alias, and outcomes and ledger rows written by the "all" process reach it when the entry ages out.

In role "all" the organism's parts are wired here, one mechanism each: the energy meter and evolution watch
every job (the runner's `watchers`); a promotion reaches working memory, evolution and the ledger through the
promotion service's listeners; outcomes reach working memory through the monitor service's.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

from seedcore.config import Settings
from seedcore.db.database import Database
from seedcore.errors import SeedcoreError
from seedcore.jobs.runner import JobRunner
from seedcore.memory.store import IncidentStore, PayloadLimits
from seedcore.memory.working import WorkingMemory
from seedcore.monitoring.loops import start_loop
from seedcore.monitoring.monitors import MonitorService
from seedcore.monitoring.predlog import PredictionLogger
from seedcore.monitoring.schedules import ScheduleService
from seedcore.organism.energy import EnergyMeter
from seedcore.organism.evolution import Evolution
from seedcore.promotion.registry import Registry
from seedcore.promotion.service import PromotionService
from seedcore.serving.model import ModelHolder

log = logging.getLogger(__name__)

EXTENSION = "seedcore"  # the one key under which a Flask app keeps its services
ROLES = ("all", "serve")


@dataclass
class Services:
    """What one process shares. Optional parts are None in role "serve"."""

    settings: Settings
    registry: Registry
    model: ModelHolder
    prediction_log: PredictionLogger
    working: WorkingMemory  # what model_info answers from (seedcore.memory.working)
    database: Database | None = None
    incidents: IncidentStore | None = None
    promotion: PromotionService | None = None
    runner: JobRunner | None = None
    monitors: MonitorService | None = None
    schedules: ScheduleService | None = None
    energy: EnergyMeter | None = None
    evolution: Evolution | None = None
    _stops: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _stopping: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        # requests that may hold a worker thread for long (predict, batch, sweeps): at most this many at once
        self.heavy_slots = threading.BoundedSemaphore(self.settings.max_heavy_requests)

    @classmethod
    def start(cls, settings: Settings, role: str = "all", *, background: bool = True) -> "Services":
        """Open and start everything the role needs. `background=False` starts no thread at all: the runner
        queues jobs but runs none, the served model is loaded once and not polled, the monitors' and
        schedules' beat is off (for answering HTTP requests only, or driving those parts by hand)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        database = open_database(settings.database_url) if role == "all" else None
        stops: list[Callable[[], None]] = [database.dispose] if database else []
        try:
            return cls._start(settings, database, stops, background)
        except BaseException:
            _run_stops(stops)
            raise

    @classmethod
    def _start(cls, settings: Settings, database: Database | None, stops: list, background: bool) -> "Services":
        registry = Registry(settings)  # opens MLflow's client on first use
        model = ModelHolder(settings, registry).start(poll=background)
        stops.insert(0, model.stop)
        prediction_log = PredictionLogger(settings, (lambda: database) if database else
                                          (lambda: Database(settings.database_url)))
        stops.insert(0, prediction_log.stop)
        working = WorkingMemory(ttl_s=settings.poll_interval_s)
        services = cls(settings, registry, model, prediction_log, working, database, _stops=stops)
        if database is None:
            return services
        services.incidents = IncidentStore(database, limits=PayloadLimits.of(settings))
        energy = services.energy = EnergyMeter(settings, database, registry,
                                               on_change=lambda: working.invalidate("energy"))
        stops.insert(0, energy.stop)
        evolution = services.evolution = Evolution(settings, database, registry)
        stops.insert(0, evolution.stop)
        services.promotion = PromotionService(settings, database, on_promoted=lambda _record: model.poll_once(),
                                              registry=registry)
        services.promotion.add_to_payload(energy.at_promotion)  # the ledger as of the promotion, in its incident
        for listener in (lambda _record: working.invalidate("promotion"),
                         lambda _record: evolution.invalidate("promotion"), energy.on_promoted,
                         lambda _record: energy.note_served_later(model.model)):
            services.promotion.subscribe(listener)  # after the served model swapped (on_promoted, first)
        _settle_promotions(services.promotion)
        services.runner = JobRunner(settings, database, services.promotion, watchers=(energy.watch, evolution.watch))
        if background:
            services.runner.start()
        stops.insert(0, services.runner.stop)
        submit = services.runner.submit
        services.schedules = ScheduleService(settings, database, submit, cancel=services.runner.cancel)
        services.monitors = MonitorService(settings, database, submit, registry=registry)
        services.monitors.subscribe_outcomes(lambda _version: working.invalidate("feedback"))
        if background:
            stops.insert(0, start_loop(services.schedules, services.monitors, settings.monitor_interval_s))
        return services

    def on_stop(self, stop: Callable[[], None]) -> None:
        """Call `stop()` when the services stop, after those already there."""
        self._stops.append(stop)

    def stop(self) -> None:
        """Stop everything once, the beat and the runner first, the database last; a later caller waits for
        the first to finish."""
        with self._stopping:
            _run_stops(self._stops)


def open_database(url: str) -> Database:
    """A Database at the code's schema revision; SchemaOutdatedError (naming `seedcore db upgrade`) if not."""
    db = Database(url)
    try:
        db.check_schema()
    except BaseException:
        db.dispose()
        raise
    return db


def services_of(app) -> Services:
    """The services of a Flask app made by `create_app`."""
    return app.extensions[EXTENSION]


def current_services() -> Services:
    """The services of the app answering the current request."""
    from flask import current_app

    return services_of(current_app)


def _settle_promotions(promotion: PromotionService) -> None:
    """A promotion a killed process left half-done is settled now, before anything is served or promoted;
    if the registry is away, the next promotion settles it (logged, never a failed start)."""
    try:
        promotion.recover()
    except SeedcoreError as exc:
        log.error("could not settle an interrupted promotion at start-up: %s", exc.message)


def _run_stops(stops: list[Callable[[], None]]) -> None:
    while stops:
        stop = stops.pop(0)
        try:
            stop()
        except Exception:  # shutting down: keep stopping the rest
            log.exception("while stopping")
