# The egress image: the console (default command), the admission webhook and every CLI command.
#   docker build -t registry.example/egress:0.1.0 .
#   egress render install --image registry.example/egress:0.1.0 | kubectl apply --server-side -f -
# The extras are those `make` installs, minus test (tests/unit/test_render_install.py checks it).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed, non-root user: `render install` runs the pods as UID/GID 10001.
RUN groupadd --system --gid 10001 egress \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/egress --shell /usr/sbin/nologin egress \
    && mkdir -p /var/lib/egress/var \
    && chown -R 10001:10001 /var/lib/egress

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir '.[console,postgres]' \
    && rm -rf /src

WORKDIR /var/lib/egress
USER 10001:10001
EXPOSE 8080 8443

# The console's /healthz on its default port, never through a proxy (for docker; on
# Kubernetes the probes of `render install` apply, and the webhook has its own on 8443).
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:8080/healthz', timeout=2)"]

ENTRYPOINT ["egress"]
CMD ["console", "--host", "0.0.0.0"]
