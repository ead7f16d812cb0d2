"""Our errors for the SQL driver's: a broken constraint becomes a 409 naming the field in our words, a missing
table says to migrate, a read-only or unreachable database is unavailable."""

from __future__ import annotations

import re

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from seedcore.errors import ConflictError, DatabaseUnavailableError, SchemaOutdatedError, SeedcoreError

UPGRADE_HINT = "run `seedcore db upgrade`"
_UNDEFINED_TABLE = "42P01"  # PostgreSQL SQLSTATE
_READ_ONLY_TRANSACTION = "25006"  # PostgreSQL SQLSTATE: a read-only database, session or standby


def translate_error(exc: DBAPIError) -> SeedcoreError:
    """Our error for a driver error: conflict, missing schema, or an unavailable database."""
    detail = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
    if isinstance(exc, IntegrityError):
        return conflict(exc)
    if getattr(exc.orig, "sqlstate", None) == _UNDEFINED_TABLE or "no such table" in detail:
        return SchemaOutdatedError(f"database tables are missing ({detail}): {UPGRADE_HINT}")
    if getattr(exc.orig, "sqlstate", None) == _READ_ONLY_TRANSACTION or "readonly database" in detail:
        return DatabaseUnavailableError(f"our database is read-only ({detail})")
    if isinstance(exc, OperationalError):
        return SeedcoreError(f"database unavailable: {detail}")
    return SeedcoreError(f"database error: {detail}")


# What the drivers say about a broken constraint: SQLite's message, PostgreSQL's SQLSTATE and diagnostics.
_SQLITE_CONSTRAINT = re.compile(r"(UNIQUE|NOT NULL|CHECK|FOREIGN KEY) constraint failed(?:: (.*))?$")
_PG_KINDS = {"23505": "UNIQUE", "23502": "NOT NULL", "23514": "CHECK", "23503": "FOREIGN KEY"}
_PG_KEY = re.compile(r"Key \(([^)]*)\)=")
_NAME = re.compile(r"^\w{1,63}$")


def conflict(exc: IntegrityError) -> ConflictError:
    """A 409 saying which field is taken (or which rule the row breaks) in our words: never the driver's text,
    which quotes SQL and can quote the caller's values."""
    kind, table, columns, rule = _constraint(exc.orig)
    row = f"{table.replace('_', ' ').removesuffix('s')} row" if table else "row"
    names = ", ".join(columns)
    if kind == "UNIQUE" and columns:
        row = row.removesuffix(" row")
        article = "an" if row[:1] in "aeiou" else "a"
        return ConflictError(f"{article} {row} with this {names} already exists: choose another {names}",
                             field=columns[0])
    if kind == "NOT NULL" and columns:
        return ConflictError(f"the {row} needs a {names}", field=columns[0])
    if kind == "CHECK":
        return ConflictError(f"the {row} breaks the rule {rule}" if rule else f"the {row} breaks a rule of its table")
    if kind == "FOREIGN KEY":
        return ConflictError(f"the {row} refers to a row that does not exist")
    return ConflictError(f"the {row} conflicts with one already stored")


def _constraint(orig) -> tuple[str | None, str | None, list[str], str | None]:
    """(kind, table, columns, constraint name) of a driver's integrity error; only names, never values."""
    diag = getattr(orig, "diag", None)
    if diag is not None:  # psycopg
        detail = _PG_KEY.match(diag.message_detail or "")
        columns = [c.strip() for c in detail.group(1).split(",")] if detail else \
            [diag.column_name] if diag.column_name else []
        return (_PG_KINDS.get(getattr(orig, "sqlstate", None) or ""), diag.table_name,
                [c for c in columns if _NAME.match(c)], diag.constraint_name)
    found = _SQLITE_CONSTRAINT.match(str(orig).strip())
    if found is None:
        return None, None, [], None
    kind, names = found.group(1), [n.strip() for n in (found.group(2) or "").split(",") if n.strip()]
    if kind == "CHECK":  # a named constraint, or the expression itself (not shown)
        return kind, None, [], names[0] if names and _NAME.match(names[0]) else None
    pairs = [n.split(".", 1) for n in names if n.count(".") == 1 and all(map(_NAME.match, n.split(".")))]
    return kind, pairs[0][0] if pairs else None, [column for _, column in pairs], None
