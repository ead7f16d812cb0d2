"""Cron schedules that start sweeps: next due time in the schedule's time zone (croniter), claimed in SQL.

A due time is claimed by one compare-and-set UPDATE (`next_run_at` moves from the due time to the next
one only if it still holds the due time), so of several processes ticking at once exactly one starts the
job. After downtime that skipped due times, the policy decides: `run_once` starts one catch-up run,
`skip` starts none; either way the schedule continues from the next due time after now.

Due times are wall-clock times in the schedule's zone, each fired once across DST: a time the clocks pass
twice (autumn) fires at its first occurrence, a time they skip (spring) fires once, when they jump past it.
While a job the schedule started is queued or running, `concurrency_policy` decides (as a Kubernetes
CronJob): `forbid` skips the run, `allow` starts another, `replace` cancels the old one and starts the new
one. A run that starts nothing (that policy, the queue cap, the triggered-sweep budget) is counted in the
schedule's `skipped_count`, `last_skipped_at` and `last_skip_reason`, and logged ("schedule run skipped").
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Callable, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter
from pydantic import Field
from sqlalchemy import select, update

from seedcore.config import Settings
from seedcore.db.base import as_utc, iso_utc, utcnow
from seedcore.db.database import Database
from seedcore.db.tables_flywheel import (CATCH_UP_POLICIES, CATCH_UP_RUN_ONCE, CONCURRENCY_FORBID, CONCURRENCY_POLICIES,
                                        CONCURRENCY_REPLACE, Schedule)
from seedcore.db.tables_jobs import ACTIVE_STATES, TRIGGER_SCHEDULE_PREFIX, TuningJob
from seedcore.errors import (ConflictError, NotFoundError, SeedcoreError, SweepBudgetError, TooManyRequestsError,
                             ValidationError)
from seedcore.memory.store import IncidentStore
from seedcore.jobs.store import JobStore
from seedcore.memory.events import record_scheduled
from seedcore.monitoring.rules import StoredRules
from seedcore.monitoring.triggers import check_budget, check_tune, record_refused, start_job, validate_body
from seedcore.request_models import StrictBody, patch_model

log = logging.getLogger(__name__)

_MAX_CANDIDATES = 10_000  # wall times tried for one due time (a repeated hour holds 60 at one a minute)


class _Skipped(Exception):
    """The concurrency policy starts nothing at this due time; the message says why."""


class ScheduleBody(StrictBody):
    """A schedule as created; its representation adds `id` and `next_run_at`."""

    name: str = Field(min_length=1, max_length=200)
    cron: str = Field(min_length=1, max_length=200, description="five-field cron, e.g. `0 2 * * 1`")
    timezone: str = Field(default="UTC", min_length=1, max_length=64, description="IANA zone, e.g. Europe/Paris")
    tune: dict[str, Any] = Field(description="the /xgboost/tune request to run at each due time")
    catch_up: Literal[CATCH_UP_POLICIES] = CATCH_UP_RUN_ONCE
    concurrency_policy: Literal[CONCURRENCY_POLICIES] = Field(
        default=CONCURRENCY_FORBID, description="while a job this schedule started is queued or running: `forbid` "
                                                "skips the run, `allow` starts another, `replace` cancels the old "
                                                "job and starts a new one")
    enabled: bool = True


SchedulePatch = patch_model(ScheduleBody, "SchedulePatch", "Any schedule field; the result is validated as a whole.")


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; 400 naming `timezone` when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError(f"unknown time zone {name!r} (use an IANA name such as Europe/Paris)",
                              field="timezone") from None


def check_cron(expression: str) -> str:
    """A five-field cron expression; 400 naming `cron` otherwise."""
    try:
        valid = len(expression.split()) == 5 and croniter.is_valid(expression)
    except Exception:  # noqa: BLE001 - whatever the parser trips on, the caller's expression is at fault
        valid = False
    if not valid:
        raise ValidationError(f"invalid cron expression {expression!r} (five fields: minute hour day month weekday)",
                              field="cron")
    return expression


def next_due(expression: str, tz: str, after: datetime) -> datetime:
    """The first due time strictly after `after`, in UTC: the next wall-clock time in zone `tz` that matches,
    each fired once across DST (a repeated one at its first occurrence, a skipped one when the clocks jump)."""
    where, after = zone(tz), as_utc(after)
    try:  # croniter walks naive wall-clock times, where DST does not exist; each is then placed in the zone
        walls = croniter(expression, after.astimezone(where).replace(tzinfo=None))
        for _ in range(_MAX_CANDIDATES):
            due = wall_instant(walls.get_next(datetime), where)
            if due > after:  # a repeated wall time whose first occurrence already passed is not due again
                return due
    except (CroniterError, ValueError):  # e.g. "0 0 31 2 *": a valid expression with no date ever
        pass
    raise ValidationError(f"cron expression {expression!r} never comes due", field="cron")


def wall_instant(wall: datetime, where: ZoneInfo) -> datetime:
    """The UTC instant of naive wall-clock time `wall` in zone `where`: the first of two when the clocks pass it
    twice, and the moment they jump past it when they skip it."""
    first = wall.replace(tzinfo=where, fold=0).astimezone(timezone.utc)
    if first.astimezone(where).replace(tzinfo=None) == wall:
        return first
    # In a gap, fold 0 reads `wall` with the offset before the jump and fold 1 with the one after: the jump
    # lies between the two readings; find its second by bisection.
    low, high = sorted(int(wall.replace(tzinfo=where, fold=fold).timestamp()) for fold in (0, 1))
    after_jump = datetime.fromtimestamp(high, where).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, where).utcoffset() == after_jump:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, timezone.utc)


class ScheduleService(StoredRules):
    """Schedule CRUD and the tick that starts due sweeps; `clock` is injectable for tests."""

    table, noun = Schedule, "schedule"

    def __init__(self, settings: Settings, db: Database, submit: Callable | None = None,
                 clock: Callable[[], datetime] = utcnow, cancel: Callable[[str], dict] | None = None):
        """`submit(request, trigger)` queues a job; `cancel(job_id)` cancels one (`replace`; default: in SQL)."""
        super().__init__(db)
        self.settings, self.submit, self.clock = settings, submit, clock
        self.cancel = cancel or JobStore(db).request_cancel
        self.incidents = IncidentStore(db)

    def _now(self) -> datetime:
        return as_utc(self.clock())

    def _values(self, body: ScheduleBody) -> dict:
        check_cron(body.cron)
        zone(body.timezone)
        return {**body.model_dump(exclude={"tune"}), "tune": check_tune(self.settings, body.tune)}

    # -- CRUD (list, get, delete: StoredRules) ---------------------------------------------------
    def create(self, body: ScheduleBody) -> dict:
        """Validate cron, zone and sweep (400, nothing stored); store with its first due time."""
        values, now = self._values(body), self._now()
        return self._insert(created_at=now, next_run_at=next_due(body.cron, body.timezone, now), **values)

    def update(self, schedule_id: str, patch: SchedulePatch) -> dict:
        """Change fields (pause/resume with `enabled`); a new cron, zone or a resume recomputes next_run_at."""
        current = self.get(schedule_id)
        changes = patch.model_dump(exclude_unset=True)
        body = validate_body(ScheduleBody, {k: current[k] for k in ScheduleBody.model_fields} | changes)
        values = self._values(body)
        resumed = changes.get("enabled") is True and not current["enabled"]
        if resumed or {"cron", "timezone"} & changes.keys():
            values["next_run_at"] = next_due(body.cron, body.timezone, self._now())
        return self._replace(schedule_id, values)

    # -- the tick ------------------------------------------------------------------------------
    def tick(self) -> list[dict]:
        """Claim every due schedule's due time; start its sweep when this process won and the policy allows."""
        now = self._now()
        with self.db.session() as session:
            due = list(session.scalars(select(Schedule).where(Schedule.enabled.is_(True), Schedule.next_run_at <= now)))
        started = []
        for row in due:
            try:
                job = self._claim_and_start(row, now)
            except SeedcoreError as exc:
                log.error("schedule %s: %s", row.name, exc.message)
                continue
            if job is not None:
                started.append(job)
        return started

    def _claim_and_start(self, row: Schedule, now: datetime) -> dict | None:
        due = row.next_run_at
        following = next_due(row.cron, row.timezone, due)
        missed = following <= now  # at least one more due time passed while nothing ticked
        fire = not missed or row.catch_up == CATCH_UP_RUN_ONCE
        values: dict = {"next_run_at": next_due(row.cron, row.timezone, now) if missed else following}
        with self.db.session() as session:  # compare-and-set on the due time: one process wins it
            won = session.execute(update(Schedule).where(Schedule.id == row.id, Schedule.next_run_at == due,
                                                         Schedule.enabled.is_(True)).values(**values)).rowcount == 1
        if not (won and fire and self.submit is not None):
            return None
        return self._start(row, iso_utc(due), now)

    def _start(self, row: Schedule, due: str, now: datetime) -> dict | None:
        """Start the run this process claimed, as the concurrency policy and the limits allow."""

        trigger = f"{TRIGGER_SCHEDULE_PREFIX}{row.id}"

        def admit() -> None:  # under the triggers' lease: no other process queues this schedule's job meanwhile
            with self.db.session() as session:
                active = list(session.execute(select(TuningJob.id, TuningJob.state).where(
                    TuningJob.trigger == trigger, TuningJob.state.in_(ACTIVE_STATES)).order_by(TuningJob.created_at)))
            if active and row.concurrency_policy == CONCURRENCY_FORBID:
                raise _Skipped(f"concurrency_policy forbid: job {active[0].id} it started is still {active[0].state}")
            if active and row.concurrency_policy == CONCURRENCY_REPLACE:
                check_budget(self.settings, self.db, trigger)  # refused before anything is cancelled
                for job_id, _ in active:
                    self._cancel(job_id)

        try:
            job = start_job(self.settings, self.db, self.submit, row.tune, trigger, admit=admit)
        except _Skipped as skipped:
            return self._skip(row, due, now, str(skipped))
        except TooManyRequestsError as exc:  # the queue is full or the budget is spent: this run starts nothing
            if isinstance(exc, SweepBudgetError):
                record_refused(self.incidents, row.to_dict(), trigger, exc)
            return self._skip(row, due, now, exc.message)
        except SeedcoreError as exc:
            self._set(row.id, last_error=exc.message)
            raise
        self._set(row.id, last_run_at=now, last_job_id=job["id"], last_error=None)
        record_scheduled(self.incidents, row.to_dict(), job["id"], trigger, due)
        return job

    def _cancel(self, job_id: str) -> None:
        try:
            self.cancel(job_id)
        except (ConflictError, NotFoundError):
            pass  # it ended (or went) meanwhile

    def _skip(self, row: Schedule, due: str, now: datetime, reason: str) -> None:
        """Record a due time that started nothing: in the schedule's row and a log line."""
        log.warning("schedule run skipped: %s (due %s): %s", row.name, due, reason,
                    extra={"event": "schedule_run_skipped", "schedule_id": row.id, "due_at": due})
        self._set(row.id, last_skipped_at=now, skipped_count=Schedule.skipped_count + 1, last_skip_reason=reason)
        return None
