FROM python:3.11-slim

WORKDIR /app
# The project's own files are its install recipe: the same editable install as README.md.
COPY pyproject.toml README.md ./
COPY server ./server
COPY clients/python ./clients/python
COPY migrations ./migrations
RUN pip install --no-cache-dir -e .

ENV SERVICECONTROL_GRPC_LISTEN=0.0.0.0:50051 \
    SERVICECONTROL_LOG_JSON=true
EXPOSE 50051 50080
ENTRYPOINT ["servicecontrol"]
CMD ["serve"]
