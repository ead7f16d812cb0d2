"""Request plumbing shared by every blueprint: body parsing, auth, endpoint documentation."""

from __future__ import annotations

import functools
import hmac
import json
from dataclasses import dataclass
from typing import Callable, TypeVar

import pydantic
from flask import current_app, request

from seedcore.errors import AuthenticationError, PermissionDeniedError, ValidationError

M = TypeVar("M", bound=pydantic.BaseModel)


@dataclass(frozen=True)
class EndpointDoc:
    """What the OpenAPI document says of one endpoint; filled by `@documented`."""

    rule: str
    method: str
    summary: str
    request: type[pydantic.BaseModel] | None
    response: type[pydantic.BaseModel] | None
    query: type[pydantic.BaseModel] | None
    status: int
    mutating: bool


ENDPOINTS: list[EndpointDoc] = []


def documented(rule: str, method: str, summary: str, *, request_model=None, response_model=None,
               query_model=None, status: int = 200, mutating: bool | None = None):
    """Record an endpoint for the OpenAPI document (the blueprint prefix is part of `rule`)."""
    def decorate(view):
        ENDPOINTS.append(EndpointDoc(rule, method.upper(), summary, request_model, response_model, query_model,
                                     status, method.upper() != "GET" if mutating is None else mutating))
        return view
    return decorate


def parse_body(model: type[M]) -> M:
    """The JSON body validated into `model`; every problem is a 400 naming the field."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        data = {}
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValidationError(f"request body is not valid JSON: {exc}", field="body") from exc
    if not isinstance(data, dict):
        raise ValidationError("request body must be a JSON object", field="body")
    return validate_model(model, data)


def parse_query(model: type[M]) -> M:
    """Query-string parameters validated into `model`."""
    return validate_model(model, request.args.to_dict())


def validate_model(model: type[M], data: dict) -> M:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise ValidationError(f"{field or 'body'}: {first['msg']}", field=field) from None


def require_token(view: Callable):
    """When SEEDCORE_API_TOKEN is set, demand `Authorization: Bearer <token>` (401 none, 403 wrong)."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        token = current_app.config["SEEDCORE_SETTINGS"].api_token
        if token:
            header = request.headers.get("Authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not given:
                raise AuthenticationError("this endpoint needs 'Authorization: Bearer <token>'", field="Authorization")
            if not hmac.compare_digest(given.strip().encode(), token.encode()):
                raise PermissionDeniedError("the bearer token is not valid", field="Authorization")
        return view(*args, **kwargs)
    return wrapper
