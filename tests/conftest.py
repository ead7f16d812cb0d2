"""Shared fixtures: a fresh Settings per test (own data dir, own MLflow SQLite store), one Ray session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from seedcore.config import Settings


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """An initialised MLflow SQLite store, created once; each test gets a copy (creation takes ~2 s)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def settings(tmp_path, mlflow_template) -> Settings:
    """Settings pointing every store at this test's own temporary directory."""
    mlruns = tmp_path / "mlruns"
    mlruns.mkdir()
    shutil.copy(mlflow_template, mlruns / "mlflow.db")
    s = Settings(data_dir=tmp_path / "data", mlruns_dir=mlruns, poll_interval_s=0.2)
    s.ensure_dirs()
    return s


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray session for the whole run (starting Ray takes seconds)."""
    from seedcore.tuning.cluster import ensure_ray

    ensure_ray(Settings())
    yield
    import ray

    ray.shutdown()


@pytest.fixture
def migrated_settings(settings) -> Settings:
    """Settings whose SQL database is at the head revision."""
    from seedcore.db.database import upgrade

    upgrade(settings.database_url)
    return settings


@pytest.fixture
def app(migrated_settings):
    from seedcore.api import create_app

    application = create_app(migrated_settings)
    application.config["TESTING"] = True
    yield application
    for stop in application.extensions.get("seedcore_stop", []):
        stop()


@pytest.fixture
def client(app):
    return app.test_client()
