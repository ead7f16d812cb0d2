"""The five routes of a stored rule set (monitors, schedules: seedcore.monitoring.rules.StoredRules):
create, list, get, change, delete, each documented by its own request and response models."""

from __future__ import annotations

from typing import Callable

from flask_openapi3 import APIBlueprint
from pydantic import BaseModel

from seedcore.api._http import BEARER, NOT_FOUND, WRITE_ERRORS, respond


def add_rule_routes(bp: APIBlueprint, noun: str, service: Callable, *, body: type[BaseModel],
                    patch: type[BaseModel], path: type[BaseModel], response: type[BaseModel],
                    listing: type[BaseModel], deleted: type[BaseModel], summaries: dict[str, str]) -> None:
    """`/<noun>s` (POST, GET) and `/<noun>s/<<noun>_id>` (GET, PATCH, DELETE) on `bp`, answered by `service()`;
    the Flask endpoints are named create_<noun>, list_<noun>s, get_<noun>, update_<noun>, delete_<noun>."""
    key = f"{noun}_id"

    def create(body):
        return respond(response, service().create(body), 201)

    def list_all():
        items = service().list()
        return respond(listing, {"items": items, "total": len(items)})

    def get(path):
        return respond(response, service().get(getattr(path, key)))

    def update(path, body):
        return respond(response, service().update(getattr(path, key), body))

    def delete(path):
        return respond(deleted, service().delete(getattr(path, key)))

    # flask-openapi3 reads each view's parameters from its annotations, and names its endpoint after it
    for view, name, params in ((create, f"create_{noun}", {"body": body}), (list_all, f"list_{noun}s", {}),
                                    (get, f"get_{noun}", {"path": path}),
                                    (update, f"update_{noun}", {"path": path, "body": patch}),
                                    (delete, f"delete_{noun}", {"path": path})):
        view.__name__ = view.__qualname__ = name
        view.__annotations__ = params
    one = f"/{noun}s/<{key}>"
    bp.post(f"/{noun}s", summary=summaries["create"], responses={201: response, **WRITE_ERRORS},
            security=BEARER)(create)
    bp.get(f"/{noun}s", summary=summaries["list"], responses={200: listing})(list_all)
    bp.get(one, summary=summaries["get"], responses={200: response, **NOT_FOUND})(get)
    bp.patch(one, summary=summaries["update"], responses={200: response, **NOT_FOUND, **WRITE_ERRORS},
             security=BEARER)(update)
    bp.delete(one, summary=summaries["delete"], responses={200: deleted, **NOT_FOUND, **WRITE_ERRORS},
              security=BEARER)(delete)
