"""`GET /openapi.json` (the document flask-openapi3 builds from the route declarations) and `GET /docs`
(Swagger UI from the installed flask-openapi3-swagger package: no CDN, works offline)."""

from __future__ import annotations

from flask import current_app, jsonify, redirect, url_for
from flask_openapi3 import OpenAPI
from flask_openapi3_swagger.plugins import RegisterPlugin as SwaggerUI

from seedcore.api._http import api_blueprint

DOCUMENT_URL = "/openapi.json"
DOCS_PREFIX = "/docs"

bp = api_blueprint("openapi", __name__)

_DOCUMENT = {"description": "this API as an OpenAPI 3.1 document",
             "content": {"application/json": {"schema": {"type": "object"}}}}


@bp.get(DOCUMENT_URL, summary="This API as an OpenAPI 3.1 document", responses={200: _DOCUMENT})
def openapi_json():
    """The document, built once per app from the declarations of the routes it serves."""
    return jsonify(current_app.api_doc)


@bp.get(DOCS_PREFIX, summary="Interactive API page (Swagger UI): browse endpoints and try requests",
        responses={302: {"description": "to the Swagger UI page (HTML)"}})
def docs():
    """Redirect to the Swagger UI page mounted under /docs (its assets are served from the package)."""
    return redirect(url_for(f"{SwaggerUI.name}.{SwaggerUI.name}"))


def init_app(app: OpenAPI) -> None:
    """Serve the document and mount the packaged Swagger UI at /docs/swagger, reading our document."""
    app.register_api(bp)
    app.register_blueprint(SwaggerUI.register(doc_url=DOCUMENT_URL), url_prefix=DOCS_PREFIX)
