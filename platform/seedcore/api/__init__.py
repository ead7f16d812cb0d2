"""The Flask application factory."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from seedcore.config import Settings
from seedcore.errors import PayloadTooLargeError, SeedcoreError

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, role: str = "all") -> Flask:
    """Build the app. `role="all"` runs tuning jobs too; `role="serve"` answers predictions only."""
    settings = settings or Settings.from_env()
    settings.ensure_dirs()
    app = Flask(__name__)
    app.config["SEEDCORE_SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json.sort_keys = False
    _register_error_handlers(app)

    from seedcore.api import health, openapi

    app.register_blueprint(health.bp)
    app.register_blueprint(openapi.bp)
    from seedcore.api import serving

    serving.init_app(app)
    app.register_blueprint(serving.bp)
    if role == "all":
        from seedcore.api import mfb, xgboost

        mfb.init_app(app)
        app.register_blueprint(mfb.bp)
        xgboost.init_app(app)
        app.register_blueprint(xgboost.bp)
    return app


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(SeedcoreError)
    def seedcore_error(exc: SeedcoreError):
        if exc.status_code >= 500:
            log.error("request failed: %s", exc.message)
        return jsonify(exc.to_dict()), exc.status_code

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc):
        limit = app.config["MAX_CONTENT_LENGTH"]
        err = PayloadTooLargeError(f"request body is larger than the {limit}-byte cap", field="body")
        return jsonify(err.to_dict()), 413

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return jsonify({"status": "error", "error": exc.description, "field": None}), exc.code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return jsonify({"status": "error", "error": f"internal error: {type(exc).__name__}", "field": None}), 500
