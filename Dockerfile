# syntax=docker/dockerfile:1
# The Baton server image (a fleet node): baton with the `fleet` extra (etcd, S3), no test tools
# and no framework backends (ONNX Runtime is a core dependency). Build from the repository root:
#
#   docker build -t baton:0.1.0 .
#   docker run --rm -p 8000:8000 -p 8001:8001 -v "$PWD/demo-repository:/models" baton:0.1.0
#
# Kubernetes manifests for a fleet of these: deploy/kubernetes (README there).

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: resolve and install into a virtual environment ------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/baton
WORKDIR /src
# Metadata first, so a source-only change does not invalidate the dependency layer's inputs.
COPY pyproject.toml README.md constraints.txt ./
COPY src ./src
# constraints.txt holds the exact versions known to resolve together (protobuf, grpcio, boto3...).
RUN /opt/baton/bin/pip install --no-cache-dir -c constraints.txt '.[fleet]' \
 && /opt/baton/bin/pip check \
 && /opt/baton/bin/baton --help >/dev/null

# --- runtime: the virtual environment only, run as an unprivileged numeric user ---------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="baton" \
      org.opencontainers.image.description="Baton model-inference server (fleet node)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 baton \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/baton --create-home \
      --shell /usr/sbin/nologin baton \
 && install -d -o 10001 -g 10001 /models /var/cache/baton /var/lib/baton
COPY --from=build /opt/baton /opt/baton
# BATON_* variables are ServerSettings fields; flags given to `serve` override them. S3 versions
# are downloaded to BATON_CACHE_DIR; the compile-cache key goes under XDG_STATE_HOME.
ENV PATH=/opt/baton/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/baton \
    XDG_STATE_HOME=/var/lib/baton \
    BATON_REPOSITORY=/models \
    BATON_CACHE_DIR=/var/cache/baton
USER 10001:10001
WORKDIR /home/baton
EXPOSE 8000 8001
# Liveness only (readiness depends on the models; orchestrators probe /v2/health/ready).
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/live', timeout=2)"]
# SIGTERM: stop taking requests, drain in-flight ones (BATON_SHUTDOWN_TIMEOUT, 30s), exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["baton"]
CMD ["serve", "--host", "0.0.0.0", "--http-port", "8000", "--grpc-port", "8001"]
