"""`python -m workers.healthcheck [ROLE]`, as manifests written before it moved name it.

An alias only: the probe is workers/cli/healthcheck.py (`python -m workers.cli.healthcheck`).
"""

import sys

from workers.cli.healthcheck import run

if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
