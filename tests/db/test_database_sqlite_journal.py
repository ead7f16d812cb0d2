"""A rollback journal that comes and goes is not a read-only store.

MLflow's SQLite store keeps the default rollback journal: every write transaction creates `mlflow.db-journal`
and deletes it. The write check before a request (`sqlite_write_problem`) must not take a journal that
vanished or appeared between its looks for one it cannot write: that answered a promotion 503 ("read-only")
under a fuzzer's load while a sweep was writing to the same store.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from seedcore.db.engine import sqlite_write_problem

pytestmark = pytest.mark.unit


def test_a_journal_created_and_deleted_by_a_writer_is_no_write_problem(tmp_path):
    path = tmp_path / "mlflow.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    stop, commits = threading.Event(), []

    def writer():
        conn = sqlite3.connect(path)  # journal_mode DELETE, as MLflow's store
        while not stop.is_set():
            conn.execute("INSERT INTO t VALUES (1)")
            conn.commit()
            commits.append(1)
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    verdicts, checks, deadline = [], 0, time.monotonic() + 3
    try:
        while time.monotonic() < deadline:
            checks += 1
            problem = sqlite_write_problem(path)
            if problem:
                verdicts.append(problem)
    finally:
        stop.set()
        thread.join()
    assert len(commits) > 100 and checks > 1000  # the journal did come and go under the checks
    assert not verdicts, f"{len(verdicts)} of {checks} checks said: {verdicts[0]}"
