# syntax=docker/dockerfile:1
# One image for every role of the fleet; the command picks it:
#   docker run backfleet api | worker [--queues backup,restore] | beat | flower | migrate
#   the backup worker, one process (docs/fleet.md, "The backup worker: one process"):
#   docker run backfleet worker --queues backup,restore --pool threads --concurrency 1
#   docker run backfleet --help
# Build arguments (all optional):
#   PYTHON_VERSION  the Python of the image                     (3.11)
#   DEBIAN_RELEASE  the Debian release of the python:*-slim base (bookworm)
#   BASE_IMAGE      the base of both stages (python:PYTHON_VERSION-slim-DEBIAN_RELEASE),
#                   e.g. the same tag from a registry mirror
#   PG_MAJOR        the PostgreSQL client tools' and server's major version (15: Debian
#                   bookworm's own; any other, e.g. 16 or 17, comes from the PostgreSQL
#                   project's apt repository). pg_dump must be at least the major of the
#                   servers it dumps; the server (a scratch instance restores the base
#                   backups of `pitr = true` services) must be their major.
#   VERSION, REVISION, CREATED  recorded in the OCI labels
ARG PYTHON_VERSION=3.11
ARG DEBIAN_RELEASE=bookworm
ARG BASE_IMAGE=python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE}

# --- build: a virtualenv with Backfleet and its dependencies (all wheels, no compiler) ---
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/backfleet
WORKDIR /src
# Dependencies first, so a code change does not reinstall them. The in-tree build/
# and egg-info of this placeholder install go too: setuptools would otherwise keep
# build/lib's empty beat_schedule.py, newer than the real one COPY brings below.
COPY pyproject.toml README.md ./
RUN mkdir -p workers tasks api && touch beat_schedule.py \
    && /opt/backfleet/bin/pip install . \
    && /opt/backfleet/bin/pip uninstall -y backfleet \
    && rm -rf build *.egg-info
COPY beat_schedule.py ./
COPY workers workers
COPY tasks tasks
COPY api api
RUN /opt/backfleet/bin/pip install --no-deps . \
    && /opt/backfleet/bin/python -m compileall -q /opt/backfleet \
    && cd / && /opt/backfleet/bin/python -c "from beat_schedule import build_beat_schedule; import tasks.app, workers.app, api.main"

# --- runtime: Python, the PostgreSQL client tools and server, tini, ps (procps), the virtualenv ---
FROM ${BASE_IMAGE} AS runtime
# Re-declared for the label: a global ARG is not visible inside a stage, and the
# python image's own ENV PYTHON_VERSION (e.g. 3.11.14) would shadow PYTHON_VERSION.
ARG BASE_IMAGE
ARG PG_MAJOR=15
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="backfleet" \
      org.opencontainers.image.description="Backups and an audit trail for self-hosted platforms: API, Celery workers, beat, Flower" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" \
      io.backfleet.postgresql-client.major="${PG_MAJOR}"

# Debian's own client and server when this release has that major, else the PostgreSQL
# project's repository (set up by Debian's postgresql-common helper). The server is only
# run by restores of base backups (a scratch instance in a private folder): no cluster is
# created at install time.
RUN set -eux; \
    mkdir -p /etc/postgresql-common/createcluster.d; \
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/backfleet.conf; \
    apt-get update; \
    if ! apt-cache show "postgresql-client-${PG_MAJOR}" >/dev/null 2>&1; then \
        apt-get install -y --no-install-recommends postgresql-common ca-certificates curl gnupg; \
        /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y; \
    fi; \
    apt-get install -y --no-install-recommends \
        "postgresql-client-${PG_MAJOR}" "postgresql-${PG_MAJOR}" tini procps; \
    rm -rf /var/lib/apt/lists/*; \
    "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_dump" --version; \
    "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_basebackup" --version; \
    "/usr/lib/postgresql/${PG_MAJOR}/bin/postgres" --version

COPY --from=build /opt/backfleet /opt/backfleet

# A fixed, unprivileged uid/gid (Kubernetes' runAsNonRoot needs a numeric USER).
# /backup is the local store's default; mount what a worker backs up under /data
# and name folders inside the mount in the services file.
RUN set -eux; \
    groupadd --system --gid 10001 backfleet; \
    useradd --system --uid 10001 --gid backfleet --home-dir /var/lib/backfleet \
        --shell /usr/sbin/nologin backfleet; \
    mkdir -p /var/lib/backfleet/var /backup /data /etc/backfleet; \
    chown -R backfleet:backfleet /var/lib/backfleet /backup /data

# pg_dump, pg_restore, psql, pg_basebackup and postgres of PG_MAJOR come first on the PATH.
ENV PATH="/opt/backfleet/bin:/usr/lib/postgresql/${PG_MAJOR}/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BACKFLEET_API_HOST=0.0.0.0 \
    BACKFLEET_CONFIG=/etc/backfleet/backfleet.toml \
    DATABASE_URL=sqlite:////var/lib/backfleet/var/backfleet.db
WORKDIR /var/lib/backfleet
USER 10001:10001
EXPOSE 8080 5555
VOLUME ["/backup"]

# Per role: the API's /healthz, Flower's /healthcheck, a ping of this worker
# through the broker, the broker for beat; one-shot roles are always healthy.
HEALTHCHECK --interval=30s --timeout=15s --start-period=30s --retries=3 \
    CMD ["python", "-m", "workers.cli.healthcheck"]

# tini forwards SIGTERM to the role (a worker then finishes its running task)
# and reaps the pg_dump/psql children.
ENTRYPOINT ["tini", "--", "backfleet"]
CMD ["api"]
