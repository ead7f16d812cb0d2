"""The Flask application factory (a flask-openapi3 `OpenAPI` app).

How to add an endpoint (the route, its models and its OpenAPI entry are declared once, together):

1. Models: request/response pydantic models in `api/schemas_<area>.py` (requests: `StrictBody`
   from `seedcore.request_models`, or `ConfigDict(extra="forbid")`; integers bounded, e.g. `le=MAX_INT`).
2. Blueprint: `bp = api_blueprint("<area>", __name__, url_prefix="/xgboost")` from `api._http`.
3. Route: the view's parameters named `body`, `query`, `path` are validated from their annotations::

       @bp.post("/things/<thing_id>", summary="Do X to a thing",
                responses={200: ThingResponse, **NOT_FOUND, **WRITE_ERRORS}, security=BEARER)
       def do_thing(path: ThingPath, body: ThingRequest):
           return respond(ThingResponse, service.do_thing(path.thing_id, body))

   Reads: `@bp.get(..., responses={200: Model})`, no `security`. Anything that changes state declares
   `security=BEARER`: the guard enforces the token exactly where the document says so.
4. Register it in `create_app` below: `app.register_api(area.bp)`. A view reaches the process's services
   (settings, database, runner, promotion, served model, ...) through `current_services()`.
Free of charge for every route (`api/_guard.py`): a bad body, query or path value is a 400 naming the
field in `{"status": "error", "error", "field"}`; JSON only (415); depth, NUL and surrogate checks;
cross-origin browser writes are 403. Views stay thin: parse (done), call one service, answer.
Raise `seedcore.errors` classes for anything else; one handler maps each to its status.
"""

from __future__ import annotations

import logging

from flask import jsonify
from mlflow.exceptions import MlflowException
from flask_openapi3 import Info, OpenAPI
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from seedcore.api._guard import too_large
from seedcore.api._http import SECURITY_SCHEMES, ErrorBody, validation_error_response
from seedcore.config import Settings
from seedcore.errors import RegistryUnavailableError, SeedcoreError
from seedcore.runtime.store_health import first_line
from seedcore.services import EXTENSION, Services

log = logging.getLogger(__name__)

DESCRIPTION = ("XGBoost sweeps on Ray Tune, MLflow registry promotion, serving and flashbulb memory. "
               'Every error is `{"status": "error", "error", "field"}`. A NUL character or a lone surrogate in any '
               "string or key (body, query, path) and an integer beyond 64 bits in a body are refused (400).")


def create_app(settings: Settings | None = None, *, role: str = "all", background: bool = True) -> OpenAPI:
    """Build the app over the process's services (seedcore.services), started here and stopped by
    `services_of(app).stop()`. `role="all"` runs tuning jobs too; `role="serve"` answers predictions only.
    `background=False`: no background thread (seedcore.services.Services.start), for answering requests only."""
    from seedcore.api import _guard, health, metrics, mfb, monitoring, openapi, organism, schedules, serving, xgboost
    from seedcore.api.health import package_version

    settings = settings or Settings.from_env()
    settings.ensure_dirs()
    app = OpenAPI(__name__, info=Info(title="SeedCore Flywheel", version=package_version(), description=DESCRIPTION),
                  security_schemes=SECURITY_SCHEMES, validation_error_status=400, validation_error_model=ErrorBody,
                  validation_error_callback=validation_error_response, doc_ui=False)
    app.extensions[EXTENSION] = Services.start(settings, role, background=background)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json.sort_keys = False
    _register_error_handlers(app)
    metrics.init_app(app)  # first: its timer starts before any other check
    _guard.init_app(app)

    app.register_api(health.bp)
    openapi.init_app(app)
    app.register_api(serving.bp)
    if role == "all":
        for area in (mfb, xgboost, monitoring, schedules, organism):
            app.register_api(area.bp)
        app.register_api(organism.page_bp)  # the flywheel page at /ui
    return app


def _register_error_handlers(app: OpenAPI) -> None:
    @app.errorhandler(SeedcoreError)
    def seedcore_error(exc: SeedcoreError):
        if exc.status_code >= 500:
            log.error("request failed: %s", exc.message)
        retry = getattr(exc, "retry_after_s", None)  # every 429 (TooManyRequestsError) says when to come back
        return jsonify(exc.to_dict()), exc.status_code, ({"Retry-After": str(retry)} if retry else {})

    @app.errorhandler(RequestEntityTooLarge)
    def request_too_large(exc):
        err = too_large(app.config["MAX_CONTENT_LENGTH"])
        return jsonify(err.to_dict()), err.status_code

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.response is not None:  # already in our shape (e.g. the validation-error callback's 400)
            return exc.response
        # keep the headers werkzeug adds (e.g. `Allow` on a 405), drop its HTML body
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
        return jsonify({"status": "error", "error": exc.description, "field": None}), exc.code, headers

    @app.errorhandler(MlflowException)
    def mlflow_error(exc: MlflowException):
        # MLflow failing under us (store gone, server down) is a 503 that says so, first line only (no SQL)
        detail = first_line(getattr(exc, "message", exc))
        log.error("MLflow call failed: %s", detail)
        err = RegistryUnavailableError(f"MLflow is unavailable: {detail}")
        return jsonify(err.to_dict()), err.status_code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return jsonify({"status": "error", "error": f"internal error: {type(exc).__name__}", "field": None}), 500
