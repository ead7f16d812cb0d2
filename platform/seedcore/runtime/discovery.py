"""A running `seedcore up` announces its API to every process sharing our database, so that `seedcore tune`
can hand it a sweep instead of starting a second Ray beside it.

The announcement is a lease in `seedcore_locks` named `server:<host>:<pid>` whose holder is the API's URL,
renewed while the server runs (LeaseLock); a server that died drops out when its lease expires. A URL found
there is used only after its `/health` answers: a lease can outlive its server by up to LEASE_S seconds.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from contextlib import contextmanager
from typing import Any, Iterator

from seedcore.config import Settings
from seedcore.db.database import Database
from seedcore.db.engine import may_exist
from seedcore.db.locks import LeaseLock

PREFIX = "server:"
LEASE_S = 15.0
# A server that does not answer /health within this is not used. A busy one is slow (a server warming up on 2
# loaded CPUs took over 3 s), and a sweep run here beside it would start a second Ray on the same CPUs.
PROBE_TIMEOUT_S = 10.0
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def api_url(settings: Settings) -> str:
    """The URL a process on this machine reaches the API at (a wildcard bind is reached on loopback)."""
    host = "127.0.0.1" if settings.host in WILDCARD_HOSTS else settings.host
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"


@contextmanager
def announced(settings: Settings) -> Iterator[str]:
    """Announce this process's API while the block runs (the lease is released at the end)."""
    name = f"{PREFIX}{socket.gethostname()}:{os.getpid()}"[:64]
    url = api_url(settings)
    with LeaseLock(Database(settings.database_url), name, LEASE_S).hold(timeout=5.0, owner=url):
        yield url


def find_server(settings: Settings) -> str | None:
    """The URL of a running server sharing our database whose job runner is alive, or None."""
    if not may_exist(settings.database_url):
        return None  # no database yet: no server has ever run over it
    db = Database(settings.database_url)
    try:
        leases = LeaseLock.live(db, PREFIX)
    except Exception:  # noqa: BLE001 - no schema yet, or the database is away: run here
        return None
    finally:
        db.dispose()
    for lease in leases:
        status, health = call("GET", f"{lease['owner']}/health", timeout=PROBE_TIMEOUT_S)
        if status in (200, 503) and (health.get("runner") or {}).get("alive"):
            return lease["owner"]
    return None


def call(method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 30.0,
         headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """One JSON request to our API: (status, JSON body); status 0 when the server cannot be reached."""
    headers = {"Accept": "application/json", **(headers or {})}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _json(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _json(exc.read())
    except (OSError, ValueError) as exc:  # refused, timed out, not HTTP
        return 0, {"error": f"{url}: {exc}"}


def _json(raw: bytes) -> dict:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {"error": raw[:200].decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"value": value}

