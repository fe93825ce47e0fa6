"""The statuses of backups, artifacts and restores (the API's words), without SQLAlchemy:
models.py declares the columns that hold them, direct_rows.py writes them in plain SQL."""

PENDING, RUNNING, SUCCESS, FAILED = "Pending", "Running", "Success", "Failed"
ACTIVE_STATUSES = (PENDING, RUNNING)
