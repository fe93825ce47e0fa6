"""The probes' routes, outside /athena and without an API key: liveness (`/healthz`) and
readiness (`/readyz`: the catalog, the broker and the store answer)."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ReadinessDep
from api.openapi import HEALTH
from api.schemas import Health, NotReady, Readiness

health = APIRouter(tags=[HEALTH])


@health.get(
    "/healthz",
    operation_id="Healthz",
    summary="Check that the API is alive",
    description="Answers while the API process serves requests; checks nothing else "
    "(`/readyz` does). No API key needed: for liveness probes.",
    response_description="The API is alive",
)
def healthz() -> Health:
    return Health(status="ok")


@health.get(
    "/readyz",
    operation_id="Readyz",
    summary="Check that the API can serve requests",
    description="Checks that the catalog and the broker answer and that the object store's "
    "bucket or container exists (`backfleet store init` creates it). No API key needed: "
    "for readiness probes.",
    response_model=Readiness,
    response_description="Every check passed",
    responses={
        503: {
            "model": NotReady,
            "description": "A check failed: the message names each failed check and why",
        }
    },
)
def readyz(checks: ReadinessDep) -> JSONResponse:
    failed = sorted(name for name, outcome in checks.items() if outcome != "ok")
    if not failed:
        return JSONResponse({"status": "ready", "checks": checks})
    message = "not ready: " + ", ".join(f"{name} {checks[name]}" for name in failed)
    return JSONResponse(
        {"code": 503, "message": message, "status": "not ready", "checks": checks},
        status_code=503,
    )
