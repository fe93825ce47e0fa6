"""The FastAPI app.

`create_app` takes the fleet provider and the enqueue function, so tests (and
other embedders) inject their own. The module-level `app` resolves the fleet
per request through `workers.fleet.current_fleet`: importing this module needs
no configured environment, and each process builds its fleet on first use.
"""

from collections.abc import Mapping

from fastapi import FastAPI

from api.audit import AuditMiddleware
from api.auth import ApiKeyMiddleware
from api.deps import FleetProvider
from api.docs import install_docs
from api.errors import install_error_handlers
from api.health import health
from api.limits import DEFAULT_BODY_LIMIT, BodyLimitMiddleware
from api.metrics import metrics
from api.openapi import DESCRIPTION, TAGS
from api.routes import athena
from api.ui.routes import ui
from api.userevents import BODY_LIMIT as USER_EVENTS_BODY_LIMIT
from api.userevents import PATH as USER_EVENTS_PATH
from api.userevents import router as user_events
from tasks.enqueue import celery_enqueue
from workers.fleet import current_fleet
from workers.operations.jobs import Enqueue

# Paths with their own body limit; every other path gets DEFAULT_BODY_LIMIT (1 MiB).
BODY_LIMITS: Mapping[str, int] = {USER_EVENTS_PATH: USER_EVENTS_BODY_LIMIT}


def create_app(
    fleet_provider: FleetProvider = current_fleet,
    enqueue: Enqueue = celery_enqueue,
    *,
    body_limits: Mapping[str, int] = BODY_LIMITS,
    default_body_limit: int = DEFAULT_BODY_LIMIT,
) -> FastAPI:
    app = FastAPI(
        title="Backfleet",
        summary="On-demand backups and restores, and their status.",
        description=DESCRIPTION,
        version="0.1.0",
        openapi_tags=TAGS,
        docs_url=None,  # served by install_docs, from local assets rather than a CDN
        redoc_url=None,
    )
    install_docs(app)
    app.state.fleet_provider = fleet_provider
    app.state.enqueue = enqueue
    app.include_router(health)
    app.include_router(athena)
    app.include_router(metrics)
    app.include_router(user_events)
    app.include_router(ui)  # the catalog page: HTML, not in the OpenAPI document
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, default_limit=default_body_limit, limits=body_limits)
    # Outside the body limit, which reads the body: a call without a valid key is
    # answered 401 from its headers alone, before any body byte is read.
    app.add_middleware(ApiKeyMiddleware)
    # Outermost, so even a refused call (401, 413) is in the audit trail.
    app.add_middleware(AuditMiddleware)
    return app


app = create_app()
