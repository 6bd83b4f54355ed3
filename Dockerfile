# syntax=docker/dockerfile:1
# The Propylon image: one image for every role. The operator runs it as `propylon operator`
# (the default command) and deploys the proxy with the same image as `propylon proxy ...`.
#
#   docker build -t propylon:dev .
#   docker run --rm -p 8080:8080 -v "$PWD/examples/quickstart:/config:ro" propylon:dev \
#       serve -f /config --host 0.0.0.0
#
# It also runs Lambda handlers as function Services (examples/kubernetes/function.yaml):
#   docker run --rm -p 9000:8080 -v "$PWD/examples/functions/users:/code:ro" --entrypoint python \
#       propylon:dev -m propylon.function app.lambda_handler --path /code
#
# Two stages: the first builds a virtualenv with a normal (not editable) install, the second
# copies only that virtualenv onto a clean base, so no compiler, pip cache or source tree ships.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/propylon
WORKDIR /src
# Only what the wheel is built from; .dockerignore keeps the rest of the checkout out.
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY operator ./operator
COPY propylon ./propylon
COPY crds ./crds
# The redis extra adds hiredis, the C reply parser `--redis URL` uses (shared limits and quotas);
# the otel extra lets proxies export spans when OTEL_EXPORTER_OTLP_ENDPOINT is set (chart: proxy.env);
# the uvloop extra is the data plane's event loop (`--loop auto` takes it; docs/performance.md).
RUN /opt/propylon/bin/pip install ".[redis,otel,uvloop]"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="propylon" \
      org.opencontainers.image.description="A Kubernetes-native API gateway with Amazon API Gateway semantics" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric id so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 propylon \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin propylon
COPY --from=build /opt/propylon /opt/propylon
ENV PATH=/opt/propylon/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /tmp
# public listener, in-cluster listener, admin listener (healthz, readyz, metrics)
EXPOSE 8080 8081 9090
ENTRYPOINT ["propylon"]
CMD ["operator"]
