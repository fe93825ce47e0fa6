"""Fixtures for mariadb tests (see tests/conftest.py)."""
