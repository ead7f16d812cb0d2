"""The tests' own registry checks (`_tuning`): only "no such model" reads as nothing registered; a registry
that cannot answer fails the check instead of passing it."""

from __future__ import annotations

import sqlite3

import pytest
from mlflow.exceptions import MlflowException

from _serving import add_version
from _tuning import model_versions, production_version
from seedcore.promotion.registry import Registry

pytestmark = pytest.mark.unit


def test_an_empty_registry_has_nothing_registered(settings):
    assert model_versions(settings) == [] and production_version(settings) is None


def test_a_registered_and_promoted_version_is_seen(settings):
    registry = Registry(settings)
    v1, _ = add_version(settings, registry, seed=1, promote=False)
    assert [int(mv.version) for mv in model_versions(settings)] == [v1] and production_version(settings) is None
    v2, _ = add_version(settings, registry, seed=2)
    assert production_version(settings) == v2


def _drop(settings, table: str) -> None:
    """Break the registry under the client: its store loses a table."""
    with sqlite3.connect(settings.mlruns_dir / "mlflow.db") as store:
        store.execute(f"DROP TABLE {table}")


def test_a_registry_that_cannot_list_versions_is_not_an_empty_one(settings):
    assert model_versions(settings) == []
    _drop(settings, "model_versions")
    with pytest.raises(MlflowException, match="model_versions"):
        model_versions(settings)


def test_a_registry_that_cannot_read_the_model_is_not_one_without_a_production_version(settings):
    version, _ = add_version(settings, Registry(settings), seed=1)
    assert production_version(settings) == version
    _drop(settings, "registered_models")
    with pytest.raises(MlflowException, match="registered_models"):
        production_version(settings)
