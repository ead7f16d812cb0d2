"""Limits on caller JSON: nesting depth and encoded size, checked before anything is stored or used."""

from __future__ import annotations

import json

from seedcore.errors import PayloadTooLargeError, ValidationError


def json_depth(value, limit: int) -> int:
    """Nesting depth of a decoded JSON value (a scalar is 0), counting no further than `limit` + 1.

    Iterative, so a 100,000-deep value costs no recursion and stops as soon as it passes `limit`.
    """
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            stack.extend((child, depth) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def raw_json_depth(raw: bytes | str, limit: int) -> int:
    """Nesting depth of JSON *text*, without decoding it (brackets outside strings), stopping past `limit`."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else raw
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif ch in "]}":
            depth -= 1
    return deepest


def check_json(value, field: str, *, max_depth: int, max_bytes: int | None = None) -> None:
    """400 naming `field` when `value` nests deeper than `max_depth`; 413 when it encodes to over `max_bytes`."""
    if json_depth(value, max_depth) > max_depth:
        raise ValidationError(f"nested deeper than {max_depth} levels", field=field)
    if max_bytes is not None:
        size = len(json.dumps(value, default=str, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            raise PayloadTooLargeError(f"{size} bytes of JSON, over the {max_bytes}-byte cap", field=field)
