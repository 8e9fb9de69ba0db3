"""The OpenAPI document, and Swagger UI served from this service's own files: no CDN, works
offline."""

from __future__ import annotations

import os
from importlib import resources
from os import PathLike
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from mfa_service.errors import problem_schemas

ASSETS = "/docs/assets"


class _Assets(StaticFiles):
    """Public files, not `no-store` like every API answer: a browser keeps them and asks
    again with the ETag (a 304), so an upgraded package is never served stale."""

    def file_response(
        self,
        full_path: PathLike[str] | str,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        return response


def operation_id(route: APIRoute) -> str:
    """FastAPI's `generate_unique_id_function`: a route's explicit `operation_id`, else its
    function's name in camelCase (`totp_setup` → `totpSetup`), never FastAPI's default
    (`totp_setup_mfa_totp_setup_post`), which generated clients turn into method names."""
    if route.operation_id:
        return route.operation_id
    head, *rest = route.name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def install_openapi(app: FastAPI) -> None:
    """`/openapi.json` as FastAPI builds it, plus the problem+json schemas that the routes'
    `responses(...)` refer to."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = FastAPI.openapi(app)  # builds and caches app.openapi_schema
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(problem_schemas())
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way


def install_docs(app: FastAPI) -> None:
    install_openapi(app)
    # fastapi-swagger ships a current swagger-ui-dist (5.x, which reads OpenAPI 3.1).
    assets = resources.files("fastapi_swagger").joinpath("resources")
    app.mount(ASSETS, _Assets(directory=str(assets)), name="swagger-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
            # The tokens pasted into Authorize survive a reload (kept in this browser's local
            # storage, like any SPA keeps them).
            swagger_ui_parameters={"persistAuthorization": True, "tryItOutEnabled": True},
        )
