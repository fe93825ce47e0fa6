"""Fixtures for object_stores tests (see tests/conftest.py)."""
