"""Celery tasks: thin wrappers from a message to workers.* and back."""
