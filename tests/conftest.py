"""Shared fixtures: a fresh Settings per test (own data dir, own MLflow SQLite store, own SQL database:
SQLite, or PostgreSQL in a module that imports `sql_backend` from _pg), one Ray session; and the lanes.

Every test is in exactly one lane, set by its module (`pytestmark = pytest.mark.unit`):
  unit         in process: no Ray, no subprocess, no PostgreSQL, no server on a port (SQLite and MLflow's
               SQLite store in the test's temp dir are fine)
  integration  real parts together in process: Ray, PostgreSQL, a live HTTP server, helper child processes
  e2e          the product in its own processes: `seedcore up`/`serve`/`tune`, gunicorn, an installed wheel,
               MLflow servers, the local cluster, a browser
`./scripts/test -m unit` runs one lane; a test without exactly one lane stops the collection.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path

import pytest

from _pg import copy_sqlite_template, fresh_postgres_database, postgres_base_url, upgrade_unless_at_head
from _pg import postgres_template, sqlite_template  # noqa: F401  (session fixtures)
from _stores import stores_settings
from seedcore.config import Settings
from seedcore.services import services_of

LANES = ("unit", "integration", "e2e")


def lanes_of(item) -> list[str]:
    return [mark.name for mark in item.iter_markers() if mark.name in LANES]


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: every collected test is checked, whatever runs
def pytest_collection_modifyitems(config, items):
    wrong = [f"{item.nodeid}: {lanes_of(item) or 'no lane'}" for item in items if len(lanes_of(item)) != 1]
    if wrong:
        raise pytest.UsageError("every test needs exactly one lane (" + ", ".join(LANES) + "), set by its module's "
                                "`pytestmark`:\n  " + "\n  ".join(wrong[:20]))
    # The longest modules first, so that parallel workers (scripts/test) do not end on one of them: e2e, then
    # integration, then unit. A stable sort: each module's tests stay together and in order.
    items.sort(key=lambda item: LANES[::-1].index(lanes_of(item)[0]))


def pytest_configure(config):
    """Each pytest process (each xdist worker) keeps its Ray sessions under a temp dir of its own: `ray.init()`
    then starts a Ray of ours instead of attaching to one someone started with `ray start` on this machine
    (Ray reads <temp>/ray/ray_current_cluster), and a worker's Ray never meets another worker's."""
    if os.environ.get("RAY_TMPDIR", "") in ("", os.environ.get(_OUR_RAY_TMPDIR)):  # unset, or a parent pytest's
        made = tempfile.mkdtemp(prefix="sc-ray-", dir="/tmp")  # short: Ray's socket paths live under it
        os.environ["RAY_TMPDIR"] = os.environ[_OUR_RAY_TMPDIR] = made
        atexit.register(shutil.rmtree, made, True)  # registered before Ray's own atexit: runs after Ray stopped


_OUR_RAY_TMPDIR = "PYTEST_SEEDCORE_RAY_TMPDIR"
QUIET_RAY = ("RAY_enable_metrics_collection", "0")  # Ray's own metrics agent work, for the run's shared Ray


def pytest_sessionfinish(session):
    """The run's installed venv (tests/_installed.py, shared by the xdist workers) goes with the run."""
    if not hasattr(session.config, "workerinput") and hasattr(session.config, "_tmp_path_factory"):
        from _installed import remove_installed

        remove_installed(session.config._tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """An initialised MLflow SQLite store, created once; each test gets a copy (creation takes ~2 s)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def sql_backend() -> str:
    """Where `settings` puts our SQL database; `from _pg import sql_backend` runs a module on both."""
    return "sqlite"


@pytest.fixture
def settings(tmp_path, mlflow_template, sql_backend, request):
    """Settings pointing every store at this test's own temporary directory; on PostgreSQL, at a database of
    its own (a copy of the session's migrated template when the test asks for `migrated_settings`, else empty)."""
    with ExitStack() as stack:
        sql = {}
        if sql_backend == "postgresql":
            migrated = "migrated_settings" in request.fixturenames
            template = request.getfixturevalue("postgres_template") if migrated else None
            sql["database_url"] = stack.enter_context(fresh_postgres_database(postgres_base_url(), template))
        yield stores_settings(tmp_path, mlflow_template, **sql)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray session for each pytest process (starting Ray takes seconds). No dashboard and no metrics
    collection: idle, they took 2.7 CPU-seconds every 30 s of a run that keeps one Ray per xdist worker for its
    whole length (a dashboard is tested in tests/tuning/test_cluster_dashboard.py, in processes of their own).
    The environment change reaches only the Ray processes started here.

    It offers every CPU, and holds all but one of them (`HeldCpus`): a sweep here runs its trials one at a time
    in one Ray worker, where two would start two workers, each importing Ray Tune and XGBoost (about 2
    CPU-seconds) for trials of tiny data. A module about trials side by side asks for `two_cpu_ray`."""
    from seedcore.tuning.cluster import ensure_ray

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(*QUIET_RAY)
        ensure_ray(Settings(ray_dashboard_port=0))
    held = HeldCpus()
    held.hold()
    yield held
    import ray

    ray.shutdown()


class HeldCpus:
    """CPUs of this process's Ray held by a placement group (no process runs in it), as other work on a shared
    cluster would hold them. Ray is never restarted for a module that needs them: a Ray handle released into a
    core worker that shut down ends the process (tuning/cluster.py), and a module's fixtures keep Tune's."""

    def __init__(self) -> None:
        self.group = None
        self.cpus = 0

    def hold(self) -> None:
        from ray.util.placement_group import placement_group

        from seedcore.tuning.cluster import cluster_cpus

        self.cpus = cluster_cpus() - 1
        if self.cpus > 0:
            self.group = placement_group([{"CPU": self.cpus}])
            assert self.group.wait(120), "the held CPUs were never free"  # the last module's trials have ended

    def free(self) -> int:
        """The CPUs a test's work may use: the cluster's, less those held."""
        from seedcore.tuning.cluster import cluster_cpus

        return cluster_cpus() - self.cpus

    def release(self) -> None:
        from ray.util.placement_group import remove_placement_group

        if self.group is not None:
            remove_placement_group(self.group)
        self.group, self.cpus = None, 0


@pytest.fixture(scope="module")
def two_cpu_ray(ray_session):
    """Every CPU of this process's Ray free, from the first test of the module that asks for it to the module's
    end: for trials side by side, or one trial on two CPUs."""
    ray_session.release()
    yield ray_session
    ray_session.hold()


@pytest.fixture
def migrated_settings(settings, sql_backend, request) -> Settings:
    """Settings whose SQL database is at the head revision: a copy of the session's migrated template
    (a file copy on SQLite; PostgreSQL's database came so), checked at head."""
    if sql_backend == "sqlite":
        copy_sqlite_template(request.getfixturevalue("sqlite_template"), settings.database_url)
    upgrade_unless_at_head(settings.database_url)
    return settings


@pytest.fixture
def app(migrated_settings, request):
    """The real app on `migrated_settings`. In a module marked `requests_only` it starts no background thread
    (no runner, no model poll, no monitor beat): a job it queues stays queued."""
    from seedcore.api import create_app

    application = create_app(migrated_settings, background=request.node.get_closest_marker("requests_only") is None)
    application.config["TESTING"] = True
    yield application
    services_of(application).stop()


@pytest.fixture
def client(app):
    return app.test_client()



@pytest.fixture(scope="module")
def module_settings(tmp_path_factory, mlflow_template, sqlite_template) -> Settings:
    """Settings on fresh stores (our SQLite database at head) shared by a module's tests: for tests that only
    read, or whose requests must all be refused (each still checks that nothing happened: a row that left
    something behind fails, and so do the rows after it)."""
    return stores_settings(tmp_path_factory.mktemp("module"), mlflow_template, sqlite_template)


@pytest.fixture(scope="module")
def module_client(module_settings):
    """A test client of one app on `module_settings`, built once per module, with no background thread: a
    job it queued would stay queued (and `assert_nothing_happened` would see it)."""
    from seedcore.api import create_app

    application = create_app(module_settings, background=False)  # answers requests; runs no job, polls nothing
    application.config["TESTING"] = True
    yield application.test_client()
    services_of(application).stop()
