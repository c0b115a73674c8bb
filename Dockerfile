# pushwire in a container: Debian slim Python base, `pip install` of this checkout.
#   docker build -t pushwire .
#   docker run -d --name pushwire -p 1883:1883 -p 8080:8080 -v pushwire-data:/var/lib/pushwire pushwire
#   docker exec -i pushwire pushwire user add alice --password-stdin <<< 's3cret'
# See docs/deploy.md (reverse proxy, TLS, sizing). Linted by tests/unit/test_deploy_files.py.
FROM python:3.12-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# an unprivileged user owns the data directory; the server never runs as root
RUN groupadd --system --gid 10001 pushwire \
    && useradd --system --uid 10001 --gid pushwire --home-dir /var/lib/pushwire \
       --create-home pushwire

COPY pyproject.toml README.md /tmp/pushwire/
COPY src /tmp/pushwire/src
RUN pip install --no-cache-dir /tmp/pushwire && rm -rf /tmp/pushwire

USER 10001:10001
WORKDIR /var/lib/pushwire
# listen on every interface of the container; the store lives in the volume
ENV PUSHWIRE_BIND=0.0.0.0 \
    PUSHWIRE_DATA_DIR=/var/lib/pushwire/data
VOLUME ["/var/lib/pushwire"]
# MQTT, HTTP (+ MQTT over WebSocket at /mqtt), MQTT over TLS when --tls-cert is given
EXPOSE 1883 8080 8883

HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v1/health', timeout=4)"]

# `docker run IMAGE serve --flag ...`, or settings as PUSHWIRE_* environment variables
ENTRYPOINT ["pushwire"]
CMD ["serve"]
