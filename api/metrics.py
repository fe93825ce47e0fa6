"""`GET /metrics`: Prometheus text format, computed from the catalog at each scrape.

Unauthenticated like /healthz (Prometheus scrapes without the API key); it
carries counts, times and names of namespaces and services, never a secret.
"""

from typing import cast

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api.deps import FleetProvider
from api.openapi import HEALTH
from api.window_metrics import WindowCollector
from workers.monitoring.metrics import CatalogCollector

metrics = APIRouter(tags=[HEALTH])


@metrics.get(
    "/metrics",
    response_class=Response,
    operation_id="Metrics",
    summary="Read the fleet's Prometheus metrics",
    description="Prometheus' text format, computed from the catalog at each scrape: each "
    "namespace's and service's newest backups, their ages, sizes and verifications, and the "
    "queues' depths. No API key needed; it names every namespace and service with a backup, "
    "so serve it to Prometheus only.",
    response_description="The metrics",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def prometheus_metrics(request: Request) -> Response:
    provider = cast(FleetProvider, request.app.state.fleet_provider)
    depths = getattr(request.app.state, "queue_depths", None)
    registry = CollectorRegistry(auto_describe=False)
    collector = CatalogCollector(provider) if depths is None else CatalogCollector(provider, depths)
    registry.register(collector)
    registry.register(WindowCollector(provider))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
