"""docker-compose.yml read against MLflow 3.17 and Ray 2.60: the invariants that make the layout work.

No Docker engine runs the file here; the loopback cluster test runs the same layout from real processes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _command(service: dict) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else command


def _env(service: dict) -> dict:
    env = service.get("environment") or {}
    return env if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def test_mlflow_server_names_the_hosts_callers_use(compose):
    mlflow = compose["services"]["mlflow"]
    command = _command(mlflow)
    assert "--allowed-hosts" in command
    allowed = command.split("--allowed-hosts", 1)[1].split()[0].split(",")
    tracking = _env(compose["services"]["api"])["SEEDCORE_TRACKING_URI"]
    assert tracking.split("://", 1)[1] in allowed  # the Host header the API and serving send
    assert "--serve-artifacts" in command


def test_mlflow_and_our_tables_live_in_separate_databases(compose):
    mlflow_db = _command(compose["services"]["mlflow"]).split("--backend-store-uri", 1)[1].split()[0]
    ours = _env(compose["services"]["api"])["SEEDCORE_DATABASE_URL"]
    assert mlflow_db.rsplit("/", 1)[1] != ours.rsplit("/", 1)[1]
    created = compose["configs"]["postgres_init"]["content"]
    postgres_db = _env(compose["services"]["postgres"])["POSTGRES_DB"]
    assert {mlflow_db.rsplit("/", 1)[1], ours.rsplit("/", 1)[1]} == {postgres_db, created.split()[2]}


def test_every_ray_process_shares_one_token_and_keeps_auth_on(compose):
    services = compose["services"]
    for name in ("ray-head", "ray-worker", "api"):
        env = _env(services[name])
        assert env["RAY_AUTH_MODE"] == "token", name
        assert env["RAY_AUTH_TOKEN_PATH"] == "/run/secrets/ray_token", name
        assert "ray_token" in services[name]["secrets"], name
    assert "ray_token" in compose["secrets"]


def test_the_api_runs_a_ray_node_joined_to_the_head(compose):
    api = compose["services"]["api"]
    command = _command(api)
    address = _env(api)["SEEDCORE_RAY_ADDRESS"]
    assert f"ray start --address {address}" in command
    assert command.index("ray start") < command.index("seedcore up")


def test_names_ports_health_checks_and_start_order(compose):
    services = compose["services"]
    assert services["ray-head"]["container_name"] == "seedcore-ray-head"  # the guide's `docker exec` name
    assert "8265:8265" in services["ray-head"]["ports"]
    assert "--dashboard-port 8265" in _command(services["ray-head"])
    for name in ("postgres", "mlflow", "ray-head", "api", "serve"):
        assert "healthcheck" in services[name], name
    conditions = {dep: spec["condition"] for dep, spec in services["api"]["depends_on"].items()}
    assert conditions == {"postgres": "service_healthy", "mlflow": "service_healthy",
                          "ray-head": "service_healthy"}
