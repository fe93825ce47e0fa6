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

# Azurite, the Azure Blob emulator, goes from npm into the repo's gitignored
# .cache/azurite (tests/plugins/object_stores.py looks there, then at
# $AZURITE_BLOB and PATH); npm itself comes from Debian when it is missing.
azurite_prefix="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.cache/azurite"
azurite_present() {
    [ -x "$azurite_prefix/node_modules/.bin/azurite-blob" ] || [ -x "${AZURITE_BLOB:-}" ] \
        || command -v azurite-blob >/dev/null 2>&1
}

install_azurite() {
    azurite_present && return 0
    echo "test-deps: installing Azurite into $azurite_prefix" >&2
    mkdir -p "$azurite_prefix"
    npm install --prefix "$azurite_prefix" --no-audit --no-fund --loglevel=error azurite@3 >/dev/null
}

missing_packages() {
    local packages=()
    azurite_present || command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
    works redis-server || packages+=(redis-server)
    for tool in initdb postgres pg_ctl; do
        pg_server_tool "$tool" || { packages+=(postgresql); break; }
    done
    for tool in pg_dump pg_restore psql; do
        works "$tool" || { packages+=(postgresql-client); break; }
    done
    # MariaDB server and client (Debian keeps mariadbd in /usr/sbin, often outside PATH).
    { works mariadbd || works /usr/sbin/mariadbd || works mysqld || works /usr/sbin/mysqld; } \
        && { works mariadb-dump || works mysqldump; } \
        || packages+=(mariadb-server mariadb-client)
    # Chromium, for the headless browser tests of the API's docs pages and of the catalog
    # page: only where apt-get is (without it those tests are skipped, saying so). They drive
    # `chromium --dump-dom`, or its DevTools protocol over a pipe (tests/cdp.py): no
    # WebDriver is needed.
    works chromium || ! command -v apt-get >/dev/null 2>&1 || packages+=(chromium)
    echo "${packages[@]}"
}

# promtool, for `promtool test rules` of compose's alert rules, comes with Debian's
# `prometheus` package (~19 MB; its server is not started): installed where apt-get is,
# and optional: without it those tests are skipped, saying so.
optional_packages() {
    works promtool || ! command -v apt-get >/dev/null 2>&1 || echo prometheus
}

say_what_is_skipped() {
    works promtool \
        || echo "test-deps: no promtool (Debian package prometheus): the alert-rule unit tests are skipped" >&2
}

works chromium || command -v apt-get >/dev/null 2>&1 \
    || echo "test-deps: no apt-get here: install chromium, or the browser tests are skipped" >&2

read -r -a needed <<<"$(missing_packages) $(optional_packages)"
if [ "${#needed[@]}" -eq 0 ]; then
    install_azurite
    say_what_is_skipped
    exit 0
fi

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
install_azurite
say_what_is_skipped
