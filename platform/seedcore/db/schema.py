"""Every table module, imported so `Base.metadata` is complete (Alembic's env and schema checks use it)."""

from seedcore.db.base import Base
from seedcore.db import tables_jobs, tables_locks  # noqa: F401
from seedcore.db import tables_flywheel  # noqa: F401
from seedcore.db import tables_promotion  # noqa: F401
from seedcore.db import tables_organism  # noqa: F401
from seedcore.db import tables_memory as _incident_tables  # noqa: F401

metadata = Base.metadata
