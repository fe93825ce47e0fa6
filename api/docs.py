"""`/docs` (Swagger UI) and `/redoc` (ReDoc), with every script, style and icon served here.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so without the internet (an
air-gapped cluster, a laptop offline) they are blank. The assets come from the
fastapi-offline package (Swagger UI 5, Apache-2.0; ReDoc 2, MIT; both as their projects
publish them), mounted as FastAPI documents for self-hosting them ("Custom Docs UI Static
Assets"): the app is made with `docs_url=None, redoc_url=None`, and these routes render
FastAPI's own pages pointed at the local files.

As /openapi.json, the pages and the assets need no API key: they describe the API and
hold no data; a call tried from /docs carries the key given to its "Authorize" button.
"""

from importlib.util import find_spec
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/docs/assets"
ASSETS_PACKAGE = ("fastapi_offline", "static")  # swagger-ui-bundle.js, swagger-ui.css, ...
SWAGGER_UI_PARAMETERS: dict[str, Any] = {
    # Never send the document to Swagger's online validator (another host), whatever the
    # layout: its badge is in the standalone layout only, but that is one setting away.
    "validatorUrl": None,
}


def _root(request: Request) -> str:
    """The path prefix a proxy serves the API under (`--root-path`), as FastAPI's pages use."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def install_docs(app: FastAPI) -> None:
    """Serve the docs pages and their assets; `app` was made with docs_url=redoc_url=None."""
    assert app.openapi_url is not None, "the docs pages need the OpenAPI document"
    if find_spec(ASSETS_PACKAGE[0]) is None:
        raise RuntimeError(
            "the API docs' scripts come from the fastapi-offline package, which is not "
            "installed: reinstall Backfleet (`make venv`, or `pip install -e .`)"
        )
    openapi_url = app.openapi_url
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url
    app.mount(ASSETS_URL, StaticFiles(packages=[ASSETS_PACKAGE]), name="docs-assets")

    @app.get(DOCS_URL, include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=root + oauth2_redirect_url if oauth2_redirect_url else None,
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), **SWAGGER_UI_PARAMETERS},
        )

    if oauth2_redirect_url:  # as FastAPI's own /docs has it

        @app.get(oauth2_redirect_url, include_in_schema=False)
        def swagger_ui_redirect() -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,  # fonts from Google: another host; the page works without
        )
