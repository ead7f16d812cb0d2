"""JSON we store: caps on what is written, so every row can be served back, and a column type whose reads
never fail, whatever an older version (or a hand-written INSERT) left in a row.

Reading: the column is selected as text and decoded here, not by the driver, so a row nested deeper than
we can serve (or not JSON at all) comes back as an `{"unreadable": ...}` marker instead of failing every
list that includes it, for good.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import JSON, Text, cast
from sqlalchemy.types import TypeDecorator

from seedcore._json import check_json, raw_json_depth

# Responses wrap stored JSON a few levels deep, and pydantic serialises at most 255 levels: deeper than
# this cannot be served back, whatever SEEDCORE_MAX_JSON_DEPTH says.
SERVABLE_DEPTH = 200
UNREADABLE = "unreadable"


def storable_depth(settings) -> int:
    """The deepest JSON we write: the setting, never past what can be served back."""
    return min(settings.max_json_depth, SERVABLE_DEPTH)


def check_stored(value: Any, field: str, *, max_depth: int, max_bytes: int | None = None) -> None:
    """400 naming `field` when `value` nests deeper than `max_depth` (capped at SERVABLE_DEPTH); 413 past
    `max_bytes`."""
    check_json(value, field, max_depth=min(max_depth, SERVABLE_DEPTH), max_bytes=max_bytes)


def check_request_json(settings, request) -> None:
    """A job's request as it will be stored: each field within the depth cap (400 naming it, e.g.
    `custom_search_space`), the whole within the body cap (413)."""
    stored = request.model_dump(mode="json")
    for name, value in stored.items():  # a field is one level below the body the cap applies to
        check_stored(value, name, max_depth=storable_depth(settings) - 1)
    check_stored(stored, "body", max_depth=SERVABLE_DEPTH, max_bytes=settings.max_request_bytes)


def unreadable(why: str) -> dict:
    """The marker served in place of a stored value that cannot be read back."""
    return {UNREADABLE: why}


def decode(text: str | bytes | None) -> Any:
    """A stored JSON text as a value; the marker when it is too deep or not JSON."""
    if text is None:
        return None
    if raw_json_depth(text, SERVABLE_DEPTH) > SERVABLE_DEPTH:
        return unreadable(f"stored value nested deeper than {SERVABLE_DEPTH} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        return unreadable(f"stored value is not JSON ({type(exc).__name__})")


def as_object(value: Any, nullable: bool = False) -> dict | None:
    """A stored value that must be a JSON object: itself, or the marker when a row holds something else."""
    if isinstance(value, dict) or (nullable and value is None):
        return value
    return unreadable(f"stored value is a {type(value).__name__}, not a JSON object")


class _StoredText(TypeDecorator):
    """The text of a stored JSON value, decoded by `decode`."""

    impl = Text
    cache_ok = True

    def process_result_value(self, value, dialect):
        return decode(value)


class StoredJSON(TypeDecorator):
    """JSON in the database (the column type Alembic sees); read as text and decoded by `decode`."""

    impl = JSON
    cache_ok = True

    def column_expression(self, column):
        # As text, so neither SQLite's JSON processing nor psycopg's json loader decodes it first.
        return cast(column, _StoredText())


__all__ = ["SERVABLE_DEPTH", "StoredJSON", "as_object", "check_request_json", "check_stored", "decode",
           "storable_depth", "unreadable"]
