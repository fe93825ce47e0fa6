"""The command line (`backfleet`, `python -m workers.cli`), `backfleet up`, the container
healthcheck and progress bars: the only part of workers/ that may import tasks/ or api/.

Commands import what they need inside their function: only so that `backfleet --help`
and every short command start without loading Celery, SQLAlchemy or the store SDKs.
Nothing below imports this package, so those imports close no cycle.
"""

from workers.cli import admin as admin  # registers its commands on `main`
from workers.cli.commands import main as main
