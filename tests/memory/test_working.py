"""Working memory: held while fresh, recomputed when old, forgotten at once on invalidate."""

from __future__ import annotations

import threading

import pytest

from seedcore.memory.working import WorkingMemory, etag_of

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_an_entry_is_held_until_its_ttl_then_recomputed():
    clock, calls = Clock(), []
    memory = WorkingMemory(ttl_s=5.0, clock=clock)
    compute = lambda: calls.append(1) or {"n": len(calls)}  # noqa: E731
    first = memory.get("k", compute)
    clock.now = 4.9
    assert memory.get("k", compute) is first and len(calls) == 1
    clock.now = 5.1
    assert memory.get("k", compute).value == {"n": 2}
    assert memory.stats()["hits"] == 1 and memory.stats()["misses"] == 2


def test_invalidate_forgets_every_entry():
    memory, calls = WorkingMemory(ttl_s=60.0), []
    memory.get("a", lambda: calls.append("a") or 1)
    memory.get("b", lambda: calls.append("b") or 2)
    memory.invalidate("promotion")
    memory.get("a", lambda: calls.append("a") or 1)
    assert calls == ["a", "b", "a"] and memory.stats()["last_invalidated"] == "promotion"


def test_a_value_computed_across_an_invalidation_is_answered_but_not_kept():
    memory = WorkingMemory(ttl_s=60.0)
    started, release = threading.Event(), threading.Event()

    def slow():
        started.set()
        release.wait(5)
        return "old"
    answer = []
    thread = threading.Thread(target=lambda: answer.append(memory.get("k", slow).value))
    thread.start()
    started.wait(5)
    memory.invalidate("feedback")  # the change lands while "old" is being computed
    release.set()
    thread.join(5)
    assert answer == ["old"]
    assert memory.get("k", lambda: "new").value == "new"


def test_entries_are_bounded_and_etags_follow_the_value():
    memory = WorkingMemory(ttl_s=60.0, max_entries=3)
    for key in range(5):
        memory.get(key, lambda key=key: {"v": key})
    assert memory.stats()["entries"] == 3
    assert memory.get(4, lambda: None).etag == etag_of({"v": 4}) != etag_of({"v": 3})
