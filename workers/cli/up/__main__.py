"""`python -m workers.cli.up`: what `backfleet up` runs."""

from workers.cli.up import main

main()
