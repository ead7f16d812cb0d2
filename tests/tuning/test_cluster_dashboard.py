"""The Ray dashboard of a local `seedcore up`: started on 127.0.0.1, answering, and named in /health."""

from __future__ import annotations

import urllib.request
from urllib.parse import urlsplit

import pytest
from seedcore.tuning.cluster import dashboard_url

pytestmark = pytest.mark.integration


def test_local_ray_has_a_dashboard_on_loopback_named_in_health(client, ray_session):
    url = dashboard_url()
    assert url is not None
    assert urlsplit(url).hostname == "127.0.0.1"
    with urllib.request.urlopen(f"{url}/api/gcs_healthz", timeout=10) as response:  # public even with token auth
        assert response.status == 200
    assert client.get("/health").get_json()["ray_dashboard"] == url
