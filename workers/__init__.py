"""Backfleet's runtime: settings, stores, sources, the pipeline and the catalog."""
