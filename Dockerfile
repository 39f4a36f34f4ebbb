# lockgate: the gateway image. Two stages: the first installs lockgate into a virtualenv, the
# second copies only that virtualenv onto a clean base, so no build tool reaches production.
#
#   docker build -t lockgate .
#   docker run -p 8080:8080 -v lockgate-cache:/var/lib/lockgate \
#     -e MLFLOW_TRACKING_URI=http://mlflow:5000 -e LOCKGATE_STORE=s3://models/lockgate \
#     lockgate models:/fraud/Production
#
# Configure with LOCKGATE_* variables (see docs/gateway.md) and, optionally, an endpoints file:
#   docker run -v ./endpoints.yaml:/etc/lockgate/endpoints.yaml -e LOCKGATE_CONFIG=/etc/lockgate/endpoints.yaml lockgate

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python3 -m venv /opt/lockgate
COPY pyproject.toml README.md ./
COPY store/ store/
COPY loader/ loader/
COPY gateway/ gateway/
COPY monitoring/ monitoring/
# lockgate/: the one import namespace; its four folders are links to the packages above.
COPY lockgate/ lockgate/
# A plain (not editable) install: the runtime stage gets site-packages and nothing from /src.
# With XGBoost (its CPU build) and LightGBM, so their MLflow flavors serve on the tree engine.
RUN /opt/lockgate/bin/pip install --no-cache-dir '.[xgboost-cpu,lightgbm,granian]' \
 && /opt/lockgate/bin/lockgate --help > /dev/null

FROM python:3.11-slim
# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it and volumes can be prepared for it.
RUN groupadd --system --gid 10001 lockgate \
 && useradd --system --uid 10001 --gid lockgate --home-dir /var/lib/lockgate --shell /usr/sbin/nologin lockgate \
 && mkdir -p /var/lib/lockgate /etc/lockgate \
 && chown lockgate:lockgate /var/lib/lockgate
COPY --from=build /opt/lockgate /opt/lockgate
# Defaults for a single container: everything under the volume. Override the store and the
# registry for real deployments (S3, an MLflow tracking server).
ENV PATH=/opt/lockgate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/lockgate \
    LOCKGATE_HOST=0.0.0.0 \
    LOCKGATE_PORT=8080 \
    LOCKGATE_CACHE_DIR=/var/lib/lockgate/cache \
    LOCKGATE_STORE=/var/lib/lockgate/store \
    MLFLOW_TRACKING_URI=sqlite:////var/lib/lockgate/mlflow.db
WORKDIR /var/lib/lockgate
VOLUME ["/var/lib/lockgate"]
USER 10001:10001
EXPOSE 8080
# /health answers as soon as the process serves; /ready (the Kubernetes readiness probe) waits for models.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('LOCKGATE_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["lockgate", "serve"]
CMD []
