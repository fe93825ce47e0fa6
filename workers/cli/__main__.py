"""`python -m workers.cli`: the same as `backfleet`."""

from workers.cli import run

run()
