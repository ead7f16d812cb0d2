"""The parse layer every request passes before any view runs: host, origin, token, size, content type, body.

One place for all routes, so a new endpoint gets the same care without asking for it:
- a `Host` this server was not told to answer to is a 403 on every method (a page whose name was rebound
  to our address cannot use a browser to reach us: DNS rebinding);
- a cross-origin browser request to a state-changing method is a 403 (with or without a token);
- a route declared with `security=BEARER` demands the token (the document is the declaration); the
  prediction endpoints (`_http.PREDICTION_ENDPOINTS`) demand SEEDCORE_PREDICT_TOKEN when it is set;
- a prediction endpoint's body is capped at `max_predict_bytes` (refused from its Content-Length before
  it is read), its row lists at `max_predict_rows`, and a large one waits for no one: when every heavy
  slot is taken it is a 429 with `Retry-After`;
- a body must be JSON (415 otherwise), no deeper than `max_json_depth` (checked on the raw text, so
  100,000 levels cost no recursion), a JSON object, with no NUL or lone surrogate in any string or key
  and no integer beyond 64 bits;
- the query string and path parameters carry no NUL or lone surrogate either;
- a write is a 503 naming the store, before its view runs, when our database or MLflow's store is lost or
  read-only (`stores.require_writable`; which endpoint needs which: `_http.STORELESS_WRITES` and
  `DATABASE_ONLY_WRITES`).
"""

from __future__ import annotations

import hmac
import json
from urllib.parse import urlsplit

from flask import Flask, Request, current_app, g, request
from flask_openapi3.utils import parse_rule

from seedcore._json import raw_json_depth
from seedcore.api._hosts import host_allowed
from seedcore.api._http import (ALWAYS_HEAVY, DATABASE_ONLY_WRITES, LIGHT_BODY_BYTES,
                                PREDICTION_ENDPOINTS, ROW_FIELDS, STORELESS_WRITES)
from seedcore.config import Settings
from seedcore.errors import (AuthenticationError, HeavyRequestsBusyError, PayloadTooLargeError,
                             PermissionDeniedError, UnsupportedMediaTypeError, ValidationError)
from seedcore.runtime.store_health import require_writable
from seedcore.services import current_services

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
            cached = self._seedcore_json = _decode(self._body(), current_services().settings.max_json_depth)
        return cached

    def _body(self) -> bytes:
        """The raw body; a chunked body (no Content-Length) cut at the cap is a 413, not a truncated 400."""
        raw = self.get_data(cache=True)
        limit = self.max_content_length
        if self.content_length is None and limit is not None and len(raw) >= limit \
                and self.environ["wsgi.input"].read(1):
            raise too_large(limit, body_cap(current_services().settings, self.endpoint)[1])
        return raw


def init_app(app: Flask) -> None:
    """Use the checked JSON request class and run the guard before every view."""
    app.request_class = JsonRequest
    app.before_request(guard)
    app.teardown_request(_release_heavy_slot)


def guard():
    """Refuse what no view should see; raise the first problem as our error (the handler answers it)."""
    _check_host()
    _check_pairs(request.args.items(multi=True))
    _check_pairs((request.view_args or {}).items())
    if request.method in SAFE_METHODS:
        return None
    _check_origin()
    _check_token()
    if _has_body():
        _check_size()
    if not _take_heavy_slot():
        cap = current_services().settings.max_heavy_requests
        raise HeavyRequestsBusyError(f"{cap} large request(s) are being answered already "
                                     f"(SEEDCORE_MAX_HEAVY_REQUESTS); try again in {HeavyRequestsBusyError.retry_after_s} s")
    if _has_body():
        _check_content_type()
        body = request.get_json()  # decode and check now, before any run or job can exist
        if request.endpoint in PREDICTION_ENDPOINTS:
            _check_rows(body)
    _check_stores()
    return None


def _check_stores() -> None:
    """503 naming the store before a write's view runs (so before any job or row exists) when a store it
    needs is lost or read-only: `_http.STORELESS_WRITES` need none, `DATABASE_ONLY_WRITES` our database."""
    if request.url_rule is None or request.endpoint in STORELESS_WRITES:
        return
    require_writable(current_services().settings, current_services().database,
                     mlflow=request.endpoint not in DATABASE_ONLY_WRITES)


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
    """Demand `Authorization: Bearer <token>` (401 none, 403 wrong) where a token applies: SEEDCORE_API_TOKEN
    on routes declared secure; on the prediction endpoints, SEEDCORE_PREDICT_TOKEN (or the API token) once
    it is set."""
    settings = current_services().settings
    if request.endpoint in PREDICTION_ENDPOINTS and settings.predict_token:
        tokens = [settings.predict_token, *([settings.api_token] if settings.api_token else [])]
    elif settings.api_token and _declared_secure():
        tokens = [settings.api_token]
    else:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise AuthenticationError("this endpoint needs 'Authorization: Bearer <token>'", field="Authorization")
    # every token compared (no early exit), so the time taken says nothing about which one came close
    matches = [hmac.compare_digest(given.strip().encode(), token.encode()) for token in tokens]
    if not any(matches):
        raise PermissionDeniedError("the bearer token is not valid", field="Authorization")


# -- Host: the names this server answers to ------------------------------------------------------
def _check_host() -> None:
    """403 for a `Host` header outside SEEDCORE_ALLOWED_HOSTS (default: the bound address; `_hosts`)."""
    host = request.environ.get("HTTP_HOST")
    if host is None:  # HTTP/1.0 without one: no name was used, nothing to rebind
        return
    settings = current_services().settings
    if not host_allowed(host, settings, request.environ.get("SERVER_PORT", ""), request.scheme):
        raise PermissionDeniedError(f"Host {_printable(host[:200])!r} is not one this server answers to; "
                                    "SEEDCORE_ALLOWED_HOSTS names the hosts it accepts", field="Host")


# -- size and load of the prediction endpoints ---------------------------------------------------
def body_cap(settings: Settings, endpoint: str | None) -> tuple[int, str]:
    """The byte cap of a request to `endpoint` and the variable that sets it (the front uses it too)."""
    if endpoint in PREDICTION_ENDPOINTS and settings.max_predict_bytes < settings.max_request_bytes:
        return settings.max_predict_bytes, "SEEDCORE_MAX_PREDICT_BYTES"
    return settings.max_request_bytes, "SEEDCORE_MAX_REQUEST_BYTES"


def _check_size() -> None:
    """413 from the Content-Length alone, before a byte is read; a chunked body is cut at the same cap."""
    limit, variable = body_cap(current_services().settings, request.endpoint)
    request.max_content_length = limit
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit, variable)


def _check_rows(body: dict) -> None:
    """413 naming the field when a row list (instances, prediction_ids, labels) is longer than the cap."""
    cap = current_services().settings.max_predict_rows
    for field in ROW_FIELDS:
        rows = body.get(field)
        if isinstance(rows, list) and len(rows) > cap:
            raise PayloadTooLargeError(f"{len(rows)} rows, over the {cap}-row cap (SEEDCORE_MAX_PREDICT_ROWS); "
                                       "send them in several requests", field=field)


def _take_heavy_slot() -> bool:
    """A slot for a heavy request (a large prediction body, any batch_predict); False when all are taken."""
    endpoint = request.endpoint
    if endpoint not in ALWAYS_HEAVY and (endpoint not in PREDICTION_ENDPOINTS
                                         or (request.content_length or 0) <= LIGHT_BODY_BYTES):
        return True
    if not current_services().heavy_slots.acquire(blocking=False):
        return False
    g.seedcore_heavy = True
    return True


def _release_heavy_slot(exc=None) -> None:  # noqa: ARG001
    if g.pop("seedcore_heavy", False):
        current_services().heavy_slots.release()


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


def too_large(limit: int, variable: str = "SEEDCORE_MAX_REQUEST_BYTES") -> PayloadTooLargeError:
    """The 413 for a body over the cap `variable` sets, with or without a Content-Length."""
    return PayloadTooLargeError(f"request body is larger than the {limit}-byte cap ({variable})", field="body")
