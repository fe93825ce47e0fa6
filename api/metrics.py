"""`GET /metrics`: Prometheus text format, computed from the catalog at each scrape.

Unauthenticated like /healthz (Prometheus scrapes without the API key); it
carries counts, times and names of namespaces and services, never a secret.
"""

from typing import cast

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api.deps import FleetProvider
from workers.monitoring.metrics import CatalogCollector

metrics = APIRouter(tags=["health"])


@metrics.get("/metrics", response_class=Response)
def prometheus_metrics(request: Request) -> Response:
    provider = cast(FleetProvider, request.app.state.fleet_provider)
    depths = getattr(request.app.state, "queue_depths", None)
    registry = CollectorRegistry(auto_describe=False)
    collector = CatalogCollector(provider) if depths is None else CatalogCollector(provider, depths)
    registry.register(collector)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
