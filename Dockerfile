# syntax=docker/dockerfile:1
# stagepost: one image for the Dagster webserver, the daemon and the code server (and, on
# Kubernetes, for the run pods). Dependencies come only from a hash-pinned lock file; the
# project is installed on top of them without dependencies, so nothing unpinned gets in.
#
#   docker build -t stagepost:0.1.0 .                              (compose: deploy/compose)
#   docker build --build-arg LOCK=k8s -t stagepost:0.1.0-k8s .     (Helm: adds dagster-k8s)
#
# Commands (deploy/docker-entrypoint.sh): webserver | daemon | code-server | health |
# backup DIR | retention [--dry-run] | any other command as given.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
FROM ${PYTHON_IMAGE}

ARG LOCK=app
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    STAGEPOST_DATA_DIR=/var/lib/stagepost

# pg_dump / pg_restore for stagepost-backup (bookworm: PostgreSQL 15 client; pg_dump must be
# the server's major version or newer).
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/stagepost
COPY requirements/${LOCK}.lock requirements/${LOCK}.lock
RUN python -m pip install --require-hashes --no-deps -r requirements/${LOCK}.lock

COPY pyproject.toml README.md ./
COPY commands ./commands
COPY pipelines ./pipelines
COPY desk ./desk
COPY assets ./assets
COPY staging_models ./staging_models
COPY io_managers ./io_managers
COPY resources ./resources
COPY posting ./posting
COPY reconciliation ./reconciliation
COPY reports ./reports
COPY config ./config
COPY connectors ./connectors
# setuptools is in the lock; --no-build-isolation keeps the build offline and pinned too.
RUN python -m pip install --no-deps --no-build-isolation . \
 && python -m pip check

COPY deploy/dagster.postgres.yaml ${DAGSTER_HOME}/dagster.yaml
COPY deploy/workspace.yaml /opt/dagster/workspace.yaml
COPY deploy/docker-entrypoint.sh /usr/local/bin/stagepost-entrypoint

RUN useradd --system --uid 10001 --user-group --home-dir /opt/dagster --shell /usr/sbin/nologin stagepost \
 && mkdir -p "${STAGEPOST_DATA_DIR}" "${DAGSTER_HOME}" \
 && chown -R stagepost:stagepost "${STAGEPOST_DATA_DIR}" "${DAGSTER_HOME}"
USER 10001:10001
WORKDIR /opt/dagster
VOLUME ["/var/lib/stagepost"]
EXPOSE 3000 4000
ENTRYPOINT ["stagepost-entrypoint"]
CMD ["webserver"]
