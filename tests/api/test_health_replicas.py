"""`GET /health` lists the serving replicas SEEDCORE_REPLICAS names: a live one (a real serve app over HTTP)
with the versions it runs and serves, a dead one as unreachable without degrading the answer."""

from __future__ import annotations

import pytest

from bench._ports import free_port
from _serving import add_version, live_server, serve_app, stop_app
from seedcore.api import create_app
from seedcore.api.health import package_version
from seedcore.promotion.registry import Registry

pytestmark = pytest.mark.integration


def test_health_lists_each_replica_with_its_versions_and_a_dead_one_as_unreachable(migrated_settings):
    version, _ = add_version(migrated_settings, Registry(migrated_settings))  # promoted
    replica = serve_app(migrated_settings)
    dead = f"http://127.0.0.1:{free_port()}"
    try:
        with live_server(replica) as live:
            app = create_app(migrated_settings.replace(replicas=f"{live},{dead}"))
            try:
                body = app.test_client().get("/health").get_json()
            finally:
                stop_app(app)
    finally:
        stop_app(replica)
    first, second = body["replicas"]
    assert first == {"url": live, "status": "ok", "version": package_version(),
                     "model_version": str(version), "error": None}
    assert second["url"] == dead and second["status"] == "unreachable" and "refused" in second["error"]
    assert body["status"] == "ok"  # the API itself is fine


def test_health_lists_no_replicas_when_none_are_configured(migrated_settings):
    app = create_app(migrated_settings)
    try:
        assert app.test_client().get("/health").get_json()["replicas"] is None
    finally:
        stop_app(app)
