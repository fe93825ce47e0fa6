"""Backfleet's throughput benchmark against its peers (see bench/README.md)."""
