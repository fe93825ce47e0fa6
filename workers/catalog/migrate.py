"""Apply the catalog's Alembic migrations (`backfleet migrate`, and `up` before it starts)."""

from pathlib import Path

from alembic import command
from alembic.config import Config

from workers.catalog.db import normalize_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Alembic's option parser treats % as interpolation: double it in passwords.
    config.set_main_option("sqlalchemy.url", normalize_url(database_url).replace("%", "%%"))
    return config


def upgrade_catalog(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)
