"""The named lease lock in SQL (seedcore_locks), on SQLite and PostgreSQL: one holder at a time, across
threads and connections; a dead holder's lease expires; a timeout is a 409."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from _pg import db, db_url  # noqa: F401  (fixtures)
from seedcore.db.base import utcnow
from seedcore.db.locks import LeaseLock
from seedcore.db.tables_locks import NamedLock
from seedcore.errors import ConflictError

pytestmark = pytest.mark.integration


def test_only_one_owner_holds_a_name_and_release_frees_it(db):
    lock = LeaseLock(db, "promotion", lease_s=60)
    assert lock.holder() is None
    assert lock.try_acquire("a") is True
    assert lock.try_acquire("b") is False  # the row exists and its lease runs
    assert lock.holder()["owner"] == "a"
    lock.release("b")  # not b's to release
    assert lock.holder()["owner"] == "a"
    lock.release("a")
    assert lock.holder() is None
    assert lock.try_acquire("b") is True


def test_an_expired_lease_is_taken_over(db):
    lock = LeaseLock(db, "promotion", lease_s=60)
    assert lock.try_acquire("dead-process")
    with db.session() as session:  # the holder died long ago: its lease ran out
        session.execute(update(NamedLock).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert lock.holder() is None
    assert lock.try_acquire("alive") is True
    assert lock.renew("dead-process") is False  # the old holder cannot extend what it lost
    lock.release("dead-process")
    assert lock.holder()["owner"] == "alive"


def test_hold_times_out_with_a_conflict_naming_the_cause(db):
    lock = LeaseLock(db, "promotion", lease_s=60)
    assert lock.try_acquire("other")
    started = time.monotonic()
    with pytest.raises(ConflictError, match="promotion in progress"):
        with lock.hold(timeout=0.3, busy_message="promotion in progress"):
            pass
    assert 0.3 <= time.monotonic() - started < 3


def test_hold_renews_the_lease_while_the_block_runs(db):
    # A lease of seconds, renewed every third of it: one of 0.6 s lapsed before its first read in a full run on
    # PostgreSQL (two CPUs shared by three pytest processes, their Rays and the database)
    lease_s = 3.0
    lock = LeaseLock(db, "promotion", lease_s=lease_s)
    with lock.hold(timeout=1) as owner:
        first = lock.holder()["expires_at"]
        time.sleep(lease_s / 2)
        assert lock.holder()["owner"] == owner and lock.holder()["expires_at"] > first
        time.sleep(lease_s * 2 / 3)  # longer than one lease in all: still held because it was renewed
        assert lock.try_acquire("intruder") is False
    assert lock.holder() is None


def test_racing_threads_never_overlap(db):
    """Eight threads, each its own owner and connection, take turns; first use of the name included."""
    lock = LeaseLock(db, "promotion", lease_s=30)
    inside, overlaps, done = [], [], []

    def worker(i: int) -> None:
        for _ in range(3):
            with lock.hold(timeout=60):
                inside.append(i)
                if len(inside) > 1:
                    overlaps.append(tuple(inside))
                time.sleep(0.01)
                inside.remove(i)
            done.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(done) == 24 and overlaps == []
