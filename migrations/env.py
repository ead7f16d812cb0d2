"""Alembic environment for SeedCore's tables; the URL comes from the config, never from env vars."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from seedcore.db.engine import make_engine, normalize_url
from seedcore.db.migrations import VERSION_TABLE
from seedcore.db.schema import metadata as target_metadata_all

config = context.config
target_metadata = target_metadata_all


def _url() -> str:
    """`config.attributes["url"]` from seedcore, else `-x url=...` or sqlalchemy.url for the alembic CLI."""
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    url = url or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: use `seedcore db upgrade` or `alembic -x url=...`")
    return normalize_url(url).render_as_string(hide_password=False)


def run_offline() -> None:
    """Emit SQL to stdout instead of running it (`alembic upgrade --sql`)."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Connect and migrate; batch mode lets later revisions alter SQLite tables."""
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                version_table=VERSION_TABLE,
                render_as_batch=connection.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if "url" not in config.attributes and config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)  # alembic CLI only

if context.is_offline_mode():
    run_offline()
else:
    run_online()
