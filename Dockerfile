# Assistants gateway. Config by mount (-v ./gateway.yaml:/etc/gateway/gateway.yaml) and by
# environment (${VAR} in the file: OPENAI_API_KEY, GATEWAY_UPSTREAM_URL, ...).
#   docker build -t assistants-gateway .
#   docker run -p 8080:8080 assistants-gateway serve --mock-upstream --host 0.0.0.0   # demo, no upstream
#   docker run -p 8080:8080 -v ./gateway.yaml:/etc/gateway/gateway.yaml -e OPENAI_API_KEY assistants-gateway
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GATEWAY_HOST=0.0.0.0 GATEWAY_PORT=8080

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install . && useradd --system --uid 10001 --no-create-home gateway
COPY config/gateway.yaml /etc/gateway/gateway.yaml

USER gateway
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"GATEWAY_PORT\"]}/healthz', timeout=2)"
# SIGTERM drains: no new connections, open streams get listen.drain_timeout_s to finish.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "gateway"]
CMD ["serve", "--config", "/etc/gateway/gateway.yaml"]
