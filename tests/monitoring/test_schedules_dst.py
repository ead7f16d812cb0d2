"""Schedules across DST fire once per wall-clock occurrence: a time the clocks pass twice (autumn) fires at
its first occurrence only; a time they skip (spring) fires once, at the moment they jump past it. Driven
through the schedule service's clock minute by minute, and due time by due time, over the transitions of
2027 in Europe/Paris and America/New_York, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from _monitoring import TINY_TUNE, Clock, jobs, runner_submit, utc
from _pg import db, db_url  # noqa: F401  (fixtures)
from seedcore.memory.store import IncidentStore
from seedcore.monitoring.schedules import ScheduleBody, ScheduleService, next_due

pytestmark = pytest.mark.integration

# (zone, cron, watched from, until, the instants it must fire at)
CASES = {
    # Paris, 31 Oct 2027: 03:00 CEST becomes 02:00 CET at 01:00Z; 02:30 happens at 00:30Z and again at 01:30Z.
    "paris-autumn-0230": ("Europe/Paris", "30 2 * * *", utc(2027, 10, 30, 22), utc(2027, 10, 31, 4),
                          [utc(2027, 10, 31, 0, 30)]),
    # Paris, 28 Mar 2027: 02:00 CET becomes 03:00 CEST at 01:00Z; 02:30 never happens.
    "paris-spring-0230": ("Europe/Paris", "30 2 * * *", utc(2027, 3, 27, 22), utc(2027, 3, 28, 4),
                          [utc(2027, 3, 28, 1, 0)]),
    # Hourly through the repeated hour: 02:00 CET (01:00Z) is the second 02:00 of the night, not run again.
    "paris-autumn-hourly": ("Europe/Paris", "0 * * * *", utc(2027, 10, 30, 21, 30), utc(2027, 10, 31, 3, 30),
                            [utc(2027, 10, 30, 22), utc(2027, 10, 30, 23), utc(2027, 10, 31, 0),
                             utc(2027, 10, 31, 2), utc(2027, 10, 31, 3)]),
    # New York, 7 Nov 2027: 02:00 EDT becomes 01:00 EST at 06:00Z; 01:30 happens at 05:30Z and at 06:30Z.
    "new-york-autumn-0130": ("America/New_York", "30 1 * * *", utc(2027, 11, 7, 3), utc(2027, 11, 7, 9),
                             [utc(2027, 11, 7, 5, 30)]),
    # New York, 14 Mar 2027: 02:00 EST becomes 03:00 EDT at 07:00Z; 02:30 never happens.
    "new-york-spring-0230": ("America/New_York", "30 2 * * *", utc(2027, 3, 14, 5), utc(2027, 3, 14, 10),
                             [utc(2027, 3, 14, 7, 0)]),
    # Every 30 minutes through the gap: 02:00 and 02:30 fold into the jump, with 03:00 EDT: once.
    "new-york-spring-half-hourly": ("America/New_York", "*/30 * * * *", utc(2027, 3, 14, 5, 50),
                                    utc(2027, 3, 14, 8, 10),
                                    [utc(2027, 3, 14, 6), utc(2027, 3, 14, 6, 30), utc(2027, 3, 14, 7),
                                     utc(2027, 3, 14, 7, 30), utc(2027, 3, 14, 8)]),
}


def _service(settings, db, db_url, zone: str, cron: str, start: datetime) -> tuple[ScheduleService, Clock, dict]:
    clock = Clock(start)
    service = ScheduleService(settings.replace(database_url=db_url), db, runner_submit(settings, db), clock=clock)
    schedule = service.create(ScheduleBody(name="dst", cron=cron, timezone=zone, tune=TINY_TUNE,
                                           concurrency_policy="allow"))  # every due time starts its own job
    return service, clock, schedule


def _started_due_times(db) -> list[datetime]:
    """The due time of every run started, from its `scheduled_tuning_started` incident."""
    items = IncidentStore(db).query(event_type="scheduled_tuning_started", limit=500)["items"]
    return sorted(datetime.fromisoformat(i["payload"]["due_at"]) for i in items)


@pytest.mark.parametrize("case", list(CASES))
def test_minute_by_minute_through_the_transition(settings, db, db_url, case):
    zone, cron, start, end, expected = CASES[case]
    service, clock, _ = _service(settings, db, db_url, zone, cron, start)
    fired_at = []
    while clock.value <= end:
        if service.tick():
            fired_at.append(clock.value)
        clock.advance(minutes=1)
    assert fired_at == expected  # each tick is on a whole minute: a run starts at its due minute
    assert _started_due_times(db) == expected
    assert len(jobs(db)) == len(expected)


@pytest.mark.parametrize("case", list(CASES))
def test_due_time_by_due_time_through_the_transition(settings, db, db_url, case):
    """A scheduler that sleeps until the next due time and wakes exactly then."""
    zone, cron, start, end, expected = CASES[case]
    service, clock, schedule = _service(settings, db, db_url, zone, cron, start)
    fired_at = []
    for _ in range(len(expected) + 2):  # bounded: two wake-ups past the window at most
        clock.value = datetime.fromisoformat(service.get(schedule["id"])["next_run_at"])
        if clock.value > end:
            break
        assert len(service.tick()) == 1
        fired_at.append(clock.value)
        assert service.tick() == []  # the same instant never fires twice
    assert fired_at == expected
    assert _started_due_times(db) == expected


@pytest.mark.parametrize("zone, cron, after, expected", [
    # created during the repeated hour, after the first 02:30: that wall time has passed; tomorrow's is next
    ("Europe/Paris", "30 2 * * *", utc(2027, 10, 31, 1, 10), utc(2027, 11, 1, 1, 30)),
    # created during the first pass of the repeated hour: its 02:30 is still ahead
    ("Europe/Paris", "30 2 * * *", utc(2027, 10, 31, 0, 10), utc(2027, 10, 31, 0, 30)),
    # created just after the jump: the skipped 02:30 is behind the clocks
    ("Europe/Paris", "30 2 * * *", utc(2027, 3, 28, 1, 5), utc(2027, 3, 29, 0, 30)),
    ("America/New_York", "30 1 * * *", utc(2027, 11, 7, 6, 10), utc(2027, 11, 8, 6, 30)),
    ("America/New_York", "0 2 * * *", utc(2027, 3, 14, 6, 59), utc(2027, 3, 14, 7, 0)),
])
def test_next_due_from_inside_a_transition(zone, cron, after, expected):
    assert next_due(cron, zone, after) == expected
    assert next_due(cron, zone, after + timedelta(microseconds=1)) == expected
