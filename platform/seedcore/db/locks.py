"""Named lease locks in SQL: one holder of a name across every thread, process and host sharing our database.

A lease is a row of `seedcore_locks`. It is taken by compare-and-set: an UPDATE that succeeds only when the
row is free or its lease has expired (or an INSERT when the row does not exist yet), so two contenders can
never both win, on SQLite and PostgreSQL alike. A holder renews its lease while it works. A holder that died
loses the name at once when it ran on this host (its owner names host, pid and start time: see
seedcore.process_identity), else when the lease expires.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator

from sqlalchemy import and_, or_, select, update

from seedcore.db.base import utcnow
from seedcore.db.database import Database
from seedcore.db.tables_locks import NamedLock
from seedcore.errors import ConflictError
from seedcore.process_identity import ProcessIdentity, owner_token_alive


def new_owner() -> str:
    """A unique holder that names its host, pid and start time (shown in the row; a dead one is seen as dead)."""
    return ProcessIdentity.current().owner_token()[:128]


class LeaseLock:
    """The lease on `name`: `hold(timeout)` waits for it, renews it every `lease_s / 3`, releases it."""

    def __init__(self, db: Database, name: str, lease_s: float = 60.0):
        self.db = db
        self.name = name
        self.lease_s = lease_s

    def try_acquire(self, owner: str) -> bool:
        """Take the lease now if it is free, expired or held by a dead process of this host; True when `owner`
        holds it afterwards."""
        now = utcnow()
        expires = now + timedelta(seconds=self.lease_s)
        free = or_(NamedLock.owner.is_(None), NamedLock.expires_at.is_(None), NamedLock.expires_at < now)
        taken_over = dict(owner=owner, acquired_at=now, expires_at=expires)
        with self.db.session() as session:
            taken = session.execute(update(NamedLock).where(and_(NamedLock.name == self.name, free))
                                    .values(**taken_over)).rowcount
            row = None if taken else session.get(NamedLock, self.name)
            if row is not None and not owner_token_alive(row.owner):  # its holder died here: free now
                taken = session.execute(update(NamedLock).where(NamedLock.name == self.name,
                                                                NamedLock.owner == row.owner)
                                        .values(**taken_over)).rowcount
            if taken or row is not None:
                return bool(taken)
        try:  # first use of this name: the row does not exist yet, and only one INSERT can win
            with self.db.session() as session:
                session.add(NamedLock(name=self.name, owner=owner, acquired_at=now, expires_at=expires))
        except ConflictError:
            return False
        return True

    def renew(self, owner: str) -> bool:
        """Push the lease's expiry forward; False if `owner` no longer holds it."""
        expires = utcnow() + timedelta(seconds=self.lease_s)
        with self.db.session() as session:
            return bool(session.execute(update(NamedLock).where(NamedLock.name == self.name, NamedLock.owner == owner)
                                        .values(expires_at=expires)).rowcount)

    def release(self, owner: str) -> None:
        """Free the lease if `owner` still holds it (a lease taken over after expiry is left alone)."""
        with self.db.session() as session:
            session.execute(update(NamedLock).where(NamedLock.name == self.name, NamedLock.owner == owner)
                            .values(owner=None, acquired_at=None, expires_at=None))

    def holder(self) -> dict | None:
        """Who holds the lease now, or None when it is free (expired, or its holder died on this host)."""
        with self.db.session() as session:
            row = session.get(NamedLock, self.name)
            if row is None or row.owner is None or row.expires_at is None or row.expires_at < utcnow():
                return None
            if not owner_token_alive(row.owner):
                return None
            return {"owner": row.owner, "acquired_at": row.acquired_at.isoformat(),
                    "expires_at": row.expires_at.isoformat()}

    @contextmanager
    def hold(self, timeout: float, busy_message: str | None = None, owner: str | None = None) -> Iterator[str]:
        """Wait up to `timeout` s for the lease (ConflictError after), hold it while the block runs.

        `owner` is what the row shows as the holder (default: this host and process, made unique)."""
        owner = owner or new_owner()
        deadline, pause = time.monotonic() + timeout, 0.02
        while not self.try_acquire(owner):
            if time.monotonic() >= deadline:
                raise ConflictError(busy_message or f"{self.name} is held by another process; try again")
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 0.5)
        stop = threading.Event()
        renewer = threading.Thread(target=self._keep_renewing, args=(owner, stop), daemon=True,
                                   name=f"seedcore-lease-{self.name}")
        renewer.start()
        try:
            yield owner
        finally:
            stop.set()
            renewer.join()
            self.release(owner)

    @staticmethod
    def live(db: Database, prefix: str) -> list[dict]:
        """The leases held now whose names start with `prefix` (a constant of ours), newest first."""
        with db.session() as session:
            rows = session.scalars(select(NamedLock).where(NamedLock.name.startswith(prefix, autoescape=True),
                                                           NamedLock.owner.is_not(None), NamedLock.expires_at >= utcnow())
                                   .order_by(NamedLock.acquired_at.desc())).all()
            return [{"name": row.name, "owner": row.owner, "acquired_at": row.acquired_at.isoformat()} for row in rows
                    if owner_token_alive(row.owner)]

    def _keep_renewing(self, owner: str, stop: threading.Event) -> None:
        while not stop.wait(self.lease_s / 3):
            try:
                if not self.renew(owner):
                    return
            except Exception:  # noqa: BLE001 - a failed renewal is retried; the lease still runs to expiry
                continue
