"""A worker process that runs a scratch PostgreSQL on a base backup, then waits to be killed.

    python -m tests.pitr_scratch_child ROOT TAR

It unpacks TAR (pg_basebackup's output) into a scratch under ROOT, starts the server,
prints the scratch folder and sleeps, so the test can send it SIGTERM (the scratch must
stop and go before the process ends) or SIGKILL (the kernel stops the server; the next
scratch under ROOT removes the folder).
"""

import sys
import time
from pathlib import Path

from workers.pitr.scratch import ScratchPostgres
from workers.pitr.unpack import unpack_base_backup


def main(root: Path, tar: Path) -> None:
    with ScratchPostgres(root=root, timeout=60) as scratch:
        with tar.open("rb") as stream:
            unpack_base_backup(stream, scratch.data)
        server = scratch.start(users=["postgres"])
        with server.connect() as conn:
            conn.execute("SELECT 1")
        print(scratch.folder, flush=True)
        time.sleep(120)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
