# livegate image: the gateway by default, the ingest process on request.
#
#   docker build -t livegate .
#   docker run --rm -p 8000:8000 -e REDIS_URL=redis://HOST:6379/0 livegate
#   docker run --rm -v "$PWD/ingest.toml:/etc/livegate/ingest.toml:ro" \
#       -e REDIS_URL=redis://HOST:6379/0 livegate \
#       python -m ingest --config /etc/livegate/ingest.toml
#
# The final stage mounts the builder's wheels with RUN --mount, which needs
# BuildKit (the default builder of Docker 23.0 and newer).

# Both stages use the same base image, so the wheels built in the first
# match the interpreter and C library of the second.
FROM python:3.11.17-slim-bookworm AS builder

# A compiler is only needed for a dependency without a binary wheel for the
# target platform, and it stays in this stage.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

COPY requirements.txt /build/requirements.txt
RUN pip wheel --no-cache-dir --wheel-dir /wheels --requirement /build/requirements.txt


FROM python:3.11.17-slim-bookworm AS runtime

# tini runs as PID 1: it reaps orphans and forwards SIGTERM to gunicorn's
# master only. The master then stops its workers and the subscriber in
# order. A signal to the whole process group (tini -g) would stop the
# subscriber before the workers have closed their streams.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

# Fixed IDs, so that Kubernetes can check runAsNonRoot and mounted volumes
# get predictable ownership. The Kubernetes manifests use the same numbers.
RUN groupadd --system --gid 10001 livegate \
    && useradd --system --uid 10001 --gid livegate --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin livegate

# Installs only the pinned wheels from the builder (--no-index: no registry
# access here). The bind mounts leave no wheel files in any layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    --mount=type=bind,source=requirements.txt,target=/tmp/requirements.txt \
    pip install --no-cache-dir --root-user-action=ignore --no-index \
        --find-links=/wheels --requirement /tmp/requirements.txt

ENV PYTHONUNBUFFERED=1
WORKDIR /app

# .dockerignore admits only the application's files. They stay owned by
# root, so the service user cannot change its own code. Compiling now means
# a read-only root file system costs nothing at start.
COPY . /app
RUN python -m compileall -q /app

USER 10001:10001
EXPOSE 8000
STOPSIGNAL SIGTERM

ENTRYPOINT ["/usr/bin/tini", "--"]
# gunicorn binds to 127.0.0.1:8000 unless told otherwise.
CMD ["gunicorn", "-c", "gunicorn.conf.py", "--bind", "0.0.0.0:8000", "app:app"]
