"""Watching the fleet: health and freshness, Prometheus metrics, alerts and their
notifications, the preflight checks and the broker's eviction check."""
