# smppgw container image.
#
#   docker build -t smppgw .
#   docker run -d --name smppgw \
#     -v /srv/smppgw/etc:/etc/smppgw:ro -v smppgw-state:/var/lib/smppgw \
#     -p 9464:9464 smppgw
#
# The config goes in /etc/smppgw/smppgw.yaml; set `metrics.listen: 0.0.0.0:9464` there so
# Prometheus can scrape the published port (the HEALTHCHECK works either way: it asks
# 127.0.0.1 inside the container; set SMPPGW_HEALTHZ_URL if you move the port).
# The SQLite store lives in the /var/lib/smppgw volume, owned by UID 10001 (chown a bind
# mount to 10001:10001). `docker stop` sends SIGTERM: the gateway drains in-flight submits
# (drain_timeout, 10 s by default) within Docker's default 10 s grace; give it more with
# `docker stop -t 30` or `stop_grace_period: 30s` in compose.

# Build stage: the package and its dependencies into a self-contained venv. Every file pip
# downloads is checked against the hashes in requirements/ (scripts/lock writes them from
# pyproject.toml): runtime.txt for the dependencies, build.txt for the setuptools that
# builds the smppgw wheel in a separate venv. The runtime venv gets no pip or setuptools of
# its own: the build venv's pip installs into it (--python).
FROM python:3.11.11-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements/runtime.txt requirements/build.txt ./requirements/
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir --require-hashes -r requirements/build.txt \
    && python -m venv --without-pip /opt/smppgw \
    && /opt/build/bin/pip --python /opt/smppgw/bin/python install --no-cache-dir \
       --require-hashes -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY smppgw ./smppgw
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation \
       --wheel-dir /tmp/dist . \
    && /opt/build/bin/pip --python /opt/smppgw/bin/python install --no-cache-dir --no-deps \
       /tmp/dist/smppgw-*.whl \
    && /opt/smppgw/bin/python -m compileall -q /opt/smppgw/lib

# Run stage: the same slim base, the venv, nothing else (no compiler, no pip cache).
FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="smppgw" \
      org.opencontainers.image.description="SMPP 3.4 gateway: MQTT jobs in, carrier SMSCs out" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/smppgw/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 smppgw \
    && useradd --system --uid 10001 --gid smppgw --no-create-home \
       --home-dir /var/lib/smppgw --shell /usr/sbin/nologin smppgw \
    && install -d -o smppgw -g smppgw -m 0700 /var/lib/smppgw \
    && install -d -m 0755 /etc/smppgw
COPY --from=builder /opt/smppgw /opt/smppgw
USER 10001:10001
WORKDIR /var/lib/smppgw
VOLUME ["/etc/smppgw", "/var/lib/smppgw"]
EXPOSE 9464
STOPSIGNAL SIGTERM
# No curl in slim images: Python's urllib. Exit 0 on HTTP 200; a 503 (stale event loop)
# or a refused connection raises, which exits 1.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen(os.environ.get('SMPPGW_HEALTHZ_URL', 'http://127.0.0.1:9464/healthz'), timeout=4)"]
ENTRYPOINT ["smppgw"]
CMD ["run", "--config", "/etc/smppgw/smppgw.yaml"]
