"""The flywheel page at /ui with a full database: 10,000 incidents and 1,000 jobs, bounded tables, on SQLite and
PostgreSQL (its look in headless Chromium: test_page_browser.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from _pg import ON_BOTH_BACKENDS
from seedcore.api import create_app
from seedcore.db.base import utcnow
from seedcore.db.database import Database
from seedcore.db.tables_jobs import TuningJob
from seedcore.db.tables_memory import FlashbulbIncident
from seedcore.services import services_of

pytestmark = pytest.mark.integration


@ON_BOTH_BACKENDS
def test_a_full_database_shows_bounded_tables(migrated_settings, sql_backend, tmp_path):
    settings = migrated_settings
    db = Database(settings.database_url)
    now = utcnow()
    with db.session() as session:
        session.add_all(FlashbulbIncident(event_type="note", outcome="success", salience=(i % 1000) / 1000,
                                          payload={"i": i}, created_at=now - timedelta(seconds=i))
                        for i in range(10_000))
        session.add_all(TuningJob(id=f"{i:08x}" + "a" * 24, state="succeeded", request={}, experiment_name="e",
                                  created_at=now - timedelta(minutes=i), trigger="api") for i in range(1_000))
    db.dispose()
    app = create_app(settings)
    try:
        page = app.test_client().get("/ui")
        html = page.get_data(as_text=True)
        assert page.status_code == 200 and page.mimetype == "text/html"
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        assert html.count("<td>note</td>") == 20 and "<td>0.999</td>" in html  # the 20 most salient only
        assert html.count("<td>succeeded</td>") == 30  # the newest 30 jobs, ids shortened to 8 characters
        assert f"<td>{0:08x}</td>" in html and f"<td>{29:08x}</td>" in html and f"<td>{30:08x}</td>" not in html
    finally:
        services_of(app).stop()
