"""`celery -A workers.app`, as deployments before the Celery app moved to tasks/app.py name it.

An alias only: the library under workers/ never imports it (the import contract in
pyproject.toml says so), since tasks/ sits above the library.
"""

from tasks.app import app as app
