"""A running server's announcement (seedcore.runtime.discovery): leases in seedcore_locks that `seedcore tune` reads to
find a server to hand its sweep to. Only live leases count, only under our prefix, and only a server that
answers /health with a live job runner is used; the real hand-over is in test_cli_beside_server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from bench._ports import free_port
from seedcore.db.base import utcnow
from seedcore.db.database import Database
from seedcore.db.locks import LeaseLock
from seedcore.db.tables_locks import NamedLock
from seedcore.runtime.discovery import PREFIX, announced, api_url, find_server

pytestmark = pytest.mark.integration


def test_live_leases_are_the_unexpired_held_ones_under_the_prefix(migrated_settings):
    db = Database(migrated_settings.database_url)
    LeaseLock(db, "server:a:1").try_acquire("http://127.0.0.1:1")
    LeaseLock(db, "server:b:2").try_acquire("http://127.0.0.1:2")
    LeaseLock(db, "server:c:3").try_acquire("http://127.0.0.1:3")
    LeaseLock(db, "server_x:d:4").try_acquire("http://127.0.0.1:4")  # `_` is a LIKE wildcard: escaped
    LeaseLock(db, "promotion").try_acquire("someone")
    LeaseLock(db, "server:b:2").release("http://127.0.0.1:2")
    with db.session() as session:
        session.execute(update(NamedLock).where(NamedLock.name == "server:c:3")
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
    assert [lease["owner"] for lease in LeaseLock.live(db, PREFIX)] == ["http://127.0.0.1:1"]


def test_an_announced_server_that_does_not_answer_is_not_used(migrated_settings):
    settings = migrated_settings.replace(port=free_port())  # nothing listens there
    with announced(settings) as url:
        assert url == f"http://127.0.0.1:{settings.port}"
        assert [lease["owner"] for lease in LeaseLock.live(Database(settings.database_url), PREFIX)] == [url]
        assert find_server(settings) is None
    assert LeaseLock.live(Database(settings.database_url), PREFIX) == []  # released when the block ends


def test_no_database_yet_means_no_server_and_creates_nothing(settings):
    assert find_server(settings) is None
    assert not (settings.data_dir / "seedcore.db").exists()


def test_the_announced_url_is_reachable_from_this_machine(settings):
    assert api_url(settings.replace(host="0.0.0.0", port=8000)) == "http://127.0.0.1:8000"
    assert api_url(settings.replace(host="::1", port=8001)) == "http://[::1]:8001"
    assert api_url(settings.replace(host="10.1.2.3", port=8002)) == "http://10.1.2.3:8002"
