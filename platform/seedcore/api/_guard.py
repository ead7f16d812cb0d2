"""The parse layer every request passes before any view runs: origin, token, content type, JSON body.

One place for all routes, so a new endpoint gets the same care without asking for it:
- a cross-origin browser request to a state-changing method is a 403 (with or without a token);
- a route declared with `security=BEARER` demands the token (the document is the declaration);
- a body must be JSON (415 otherwise), no deeper than `max_json_depth` (checked on the raw text, so
  100,000 levels cost no recursion), a JSON object, with no NUL or lone surrogate in any string or key
  and no integer beyond 64 bits;
- the query string and path parameters carry no NUL or lone surrogate either.
"""

from __future__ import annotations

import hmac
import json
from urllib.parse import urlsplit

from flask import Flask, Request, current_app, request
from flask_openapi3.utils import parse_rule

from seedcore._json import raw_json_depth
from seedcore.errors import (AuthenticationError, PayloadTooLargeError, PermissionDeniedError,
                             UnsupportedMediaTypeError, ValidationError)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# `application/x-www-form-urlencoded` is what `curl -d` sends without `-H`; the guide's curls rely on
# it and the body is still parsed as JSON. Browsers sending it cross-site are refused by the origin check.
JSON_TYPES = frozenset({"application/json", "application/x-www-form-urlencoded"})
_INT64 = 2**63


class JsonRequest(Request):
    """A request whose body is always read as one JSON object, checked before it reaches a model."""

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True):  # noqa: ARG002
        """The body as a dict ({} when empty); every problem is a 400 naming `body` or the field at fault."""
        cached = getattr(self, "_seedcore_json", None)
        if cached is None:
            cached = self._seedcore_json = _decode(self._body(), current_app.config["SEEDCORE_SETTINGS"].max_json_depth)
        return cached

    def _body(self) -> bytes:
        """The raw body; a chunked body (no Content-Length) cut at the cap is a 413, not a truncated 400."""
        raw = self.get_data(cache=True)
        limit = self.max_content_length
        if self.content_length is None and limit is not None and len(raw) >= limit \
                and self.environ["wsgi.input"].read(1):
            raise too_large(limit)
        return raw


def init_app(app: Flask) -> None:
    """Use the checked JSON request class and run the guard before every view."""
    app.request_class = JsonRequest
    app.before_request(guard)


def guard() -> None:
    """Refuse what no view should see; raise the first problem as our error (the handler answers it)."""
    _check_pairs(request.args.items(multi=True))
    _check_pairs((request.view_args or {}).items())
    if request.method in SAFE_METHODS:
        return
    _check_origin()
    if _declared_secure():
        _check_token()
    if _has_body():
        _check_content_type()
        request.get_json()  # decode and check now, before any run or job can exist


def _has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def _check_origin() -> None:
    """A browser names a foreign page in `Origin` (or says `Sec-Fetch-Site: cross-site`); refuse it."""
    origin = request.headers.get("Origin")
    cross = request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site"
    if origin is not None and (origin == "null" or urlsplit(origin).netloc.lower() != request.host.lower()):
        cross = True
    if cross:
        raise PermissionDeniedError("cross-origin requests may not change state here", field="Origin")


def _declared_secure() -> bool:
    """True when the OpenAPI document declares bearer security for this operation."""
    rule = request.url_rule
    if rule is None:
        return False
    operation = current_app.api_doc["paths"].get(parse_rule(rule.rule), {}).get(request.method.lower(), {})
    return bool(operation.get("security"))


def _check_token() -> None:
    """When SEEDCORE_API_TOKEN is set, demand `Authorization: Bearer <token>` (401 none, 403 wrong)."""
    token = current_app.config["SEEDCORE_SETTINGS"].api_token
    if not token:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise AuthenticationError("this endpoint needs 'Authorization: Bearer <token>'", field="Authorization")
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise PermissionDeniedError("the bearer token is not valid", field="Authorization")


def _check_content_type() -> None:
    if request.mimetype not in JSON_TYPES and not request.mimetype.endswith("+json"):
        raise UnsupportedMediaTypeError(
            f"the body must be JSON (Content-Type: application/json), not {request.mimetype or 'untyped'}",
            field="Content-Type")


def _decode(raw: bytes, max_depth: int) -> dict:
    """Raw body -> dict: depth on the text first, then decoding, then the strings and integers inside."""
    if not raw.strip():
        return {}
    if raw_json_depth(raw, max_depth) > max_depth:
        raise ValidationError(f"request body is nested deeper than {max_depth} levels", field="body")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(f"request body is not valid JSON: {exc}", field="body") from None
    if not isinstance(data, dict):
        raise ValidationError("request body must be a JSON object", field="body")
    _check_values(data)
    return data


def _check_values(data: dict) -> None:
    """Walk the decoded body (iteratively: its depth is bounded) for bad strings, keys and integers."""
    stack: list[tuple[str, object]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            _check_pairs(((key, None) for key in value), path)
            stack.extend((_join(path, key), child) for key, child in value.items())
        elif isinstance(value, list):
            stack.extend((_join(path, str(i)), child) for i, child in enumerate(value))
        elif isinstance(value, str):
            _refuse_bad_text(value, path)
        elif isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
            raise ValidationError("integer out of range (64 bits at most)", field=path)


def _check_pairs(pairs, prefix: str = "") -> None:
    """Keys and values of a mapping (query string, path parameters, a JSON object) hold no bad text."""
    for key, value in pairs:
        field = _join(prefix, _printable(key))
        _refuse_bad_text(key, field)
        _refuse_bad_text(value, field)


def _refuse_bad_text(text, field: str) -> None:
    """400 naming `field` when `text` holds a NUL character or a lone UTF-16 surrogate."""
    if isinstance(text, str) and _bad_text(text):
        raise ValidationError("text may not contain NUL characters or lone surrogates", field=field)


def _bad_text(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _printable(key: str) -> str:
    """A key safe to echo in an error body (a bad key is named with its bad characters escaped)."""
    return key if not _bad_text(key) else ascii(key)[1:-1]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def too_large(limit: int) -> PayloadTooLargeError:
    """The 413 for a body over the cap, with or without a Content-Length."""
    return PayloadTooLargeError(f"request body is larger than the {limit}-byte cap", field="body")
