#!/usr/bin/env bash
# Make sure the server and client binaries the tests need are installed, installing
# Debian packages for whatever is missing. Idempotent, and silent when nothing is
# missing. It never starts a server: the pytest fixtures start private ones.
set -euo pipefail

works() { "$1" --version >/dev/null 2>&1; }  # Debian's pg_wrapper exists without a client

# A PostgreSQL server tool, in PATH or in Debian's versioned directory.
pg_server_tool() {
    local candidate
    works "$1" && return 0
    for candidate in /usr/lib/postgresql/*/bin/"$1"; do
        works "$candidate" && return 0
    done
    return 1
}

missing_packages() {
    local packages=()
    works redis-server || packages+=(redis-server)
    for tool in initdb postgres pg_ctl; do
        pg_server_tool "$tool" || { packages+=(postgresql); break; }
    done
    for tool in pg_dump pg_restore psql; do
        works "$tool" || { packages+=(postgresql-client); break; }
    done
    echo "${packages[@]}"
}

read -r -a needed <<<"$(missing_packages)"
[ "${#needed[@]}" -eq 0 ] && exit 0

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo -n)
    else
        echo "test-deps: missing ${needed[*]} and not root (no sudo): install them" >&2
        exit 1
    fi
fi

echo "test-deps: installing ${needed[*]}" >&2
# Packages must not start their services: forbid it while installing, as Docker images do.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >/dev/null || true
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null || true

read -r -a still <<<"$(missing_packages)"
if [ "${#still[@]}" -ne 0 ]; then
    echo "test-deps: could not install ${still[*]}; install them and run again" >&2
    exit 1
fi
