"""Working memory: what is asked for most, held in this process's memory (the production version's summary
with its live metrics and energy, the evolution answer), each entry with an ETag of its value.

It answers "what is production doing right now?" without a query. An entry is recomputed when it is older
than `ttl_s`, and every entry is dropped at once by `invalidate()`: the process's services (seedcore.services)
call it after a promotion (the promotion service's listeners), after feedback (the monitor service's) and when
the energy ledger changes. A value computed while an invalidation happened is returned to
its caller but not kept (it may predate the change).

    memory = WorkingMemory(ttl_s=5.0)
    entry = memory.get(("model_info", 7), lambda: build_model_info(7))
    entry.value, entry.etag
    memory.invalidate("promotion")
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable


@dataclass(frozen=True)
class Entry:
    value: Any
    etag: str
    stored_at: float


def etag_of(value: Any) -> str:
    """A strong ETag for a JSON-able value (the same value, the same tag, in every process)."""
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.blake2b(encoded, digest_size=12).hexdigest()


class WorkingMemory:
    """A small keyed cache with a time to live and one switch that forgets everything."""

    def __init__(self, ttl_s: float = 5.0, max_entries: int = 256, clock: Callable[[], float] = time.monotonic):
        self.ttl_s, self.max_entries, self.clock = ttl_s, max_entries, clock
        self._entries: dict[Hashable, Entry] = {}
        self._generation = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.invalidations = 0
        self.last_invalidated: str | None = None

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Entry:
        """The entry for `key`: held if fresh, else `compute()`d now (outside the lock) and kept."""
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now - entry.stored_at < self.ttl_s:
                self.hits += 1
                return entry
            self.misses += 1
            generation = self._generation
        value = compute()
        entry = Entry(value, etag_of(value), self.clock())
        with self._lock:
            if generation == self._generation:
                if len(self._entries) >= self.max_entries and key not in self._entries:
                    self._entries.pop(next(iter(self._entries)))  # the oldest key
                self._entries[key] = entry
        return entry

    def invalidate(self, reason: str | None = None) -> None:
        """Forget every entry (and any value being computed now)."""
        with self._lock:
            self._entries.clear()
            self._generation += 1
            self.invalidations += 1
            self.last_invalidated = reason

    def stats(self) -> dict:
        with self._lock:
            return {"entries": len(self._entries), "hits": self.hits, "misses": self.misses,
                    "invalidations": self.invalidations, "last_invalidated": self.last_invalidated,
                    "ttl_s": self.ttl_s}
