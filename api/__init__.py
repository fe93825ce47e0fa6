"""Backfleet's HTTP API: enqueue on-demand backups and restores, answer status questions."""
