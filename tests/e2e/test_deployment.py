"""docker-compose.yml and the Dockerfile, checked as far as this machine allows (no Docker
engine): the compose file parses and wires what the README promises, and the image's entry
points run as plain processes with the compose file's own environment variables."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol.v1 import service_control_pb2_grpc as api_grpc

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_compose_names_real_images_and_wires_the_services() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"postgres", "minio", "minio-buckets", "server", "worker"}
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["minio"]["image"].startswith("minio/minio:")
    assert services["minio-buckets"]["image"].startswith("minio/mc:")
    bucket_script = " ".join(services["minio-buckets"]["command"])
    for service in ("server", "worker"):
        env = services[service]["environment"]
        assert services[service]["build"] == "."
        assert env["SERVICECONTROL_DATABASE_URL"].startswith("postgresql://")
        assert "@postgres:5432/" in env["SERVICECONTROL_DATABASE_URL"]
        assert env["SERVICECONTROL_S3_ENDPOINT"] == "minio:9000"
        for bucket in (env["SERVICECONTROL_SOURCE_BUCKET"], env["SERVICECONTROL_IMAGE_BUCKET"]):
            assert f"local/{bucket}" in bucket_script
    assert services["server"]["command"][0] == "serve"
    assert services["worker"]["command"][0] == "worker"
    # `docker compose up --scale worker=3` needs a worker without fixed ports or names.
    assert "ports" not in services["worker"] and "container_name" not in services["worker"]
    assert services["server"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_the_image_and_compose_settings_pass_the_transport_check() -> None:
    """The image listens on every address; without TLS it starts only when the
    environment says plaintext is intended, as compose's server does."""
    from servicecontrol_server.api.tls import TransportRefused, check_transport
    from servicecontrol_server.settings import Settings

    image_listen = re.search(r"SERVICECONTROL_GRPC_LISTEN=(\S+)", DOCKERFILE)
    assert image_listen is not None
    env = COMPOSE["services"]["server"]["environment"]
    listen = {"grpc_listen": image_listen[1], "aws_listen": env["SERVICECONTROL_AWS_LISTEN"]}
    with pytest.raises(TransportRefused):
        check_transport(Settings(**listen))
    check_transport(Settings(**listen, insecure=env["SERVICECONTROL_INSECURE"]))


def test_dockerfile_copies_what_exists_and_runs_the_cli() -> None:
    for source in re.findall(r"^COPY (\S+)", DOCKERFILE, flags=re.M):
        assert (ROOT / source).exists(), source
    assert 'ENTRYPOINT ["servicecontrol"]' in DOCKERFILE
    assert 'CMD ["serve"]' in DOCKERFILE


def compose_env(service: str, database_url: str, s3: Any) -> dict[str, str]:
    """The compose file's environment for `service`, with its host names pointed at this
    machine's test Postgres and S3 server (as the containers' DNS would)."""
    env = {k: str(v) for k, v in COMPOSE["services"][service]["environment"].items()}
    env["SERVICECONTROL_DATABASE_URL"] = database_url
    env["SERVICECONTROL_S3_ENDPOINT"] = s3.endpoint
    env["SERVICECONTROL_S3_ACCESS_KEY"] = s3.access_key
    env["SERVICECONTROL_S3_SECRET_KEY"] = s3.secret_key
    return env


@pytest.mark.slow
async def test_entry_points_run_with_the_compose_environment(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("SERVICECONTROL_")}
    server_env = {**base, **compose_env("server", database_url, s3_server)}
    server_env["SERVICECONTROL_GRPC_LISTEN"] = "127.0.0.1:0"
    server_env["SERVICECONTROL_AWS_LISTEN"] = "127.0.0.1:0"
    worker_env = {**base, **compose_env("worker", database_url, s3_server)}
    push = await asyncio.create_subprocess_exec(
        str(BIN / "servicecontrol"),
        "images",
        "push",
        "--sample",
        "compose-app:1",
        env=server_env,
        stdout=asyncio.subprocess.PIPE,
    )
    assert (await asyncio.wait_for(push.communicate(), 60))[0].startswith(b"pushed")

    server = await asyncio.create_subprocess_exec(
        str(BIN / "servicecontrol"),
        *COMPOSE["services"]["server"]["command"],
        env=server_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=(tmp_path / "server.log").open("wb"),
    )
    worker = None
    try:
        assert server.stdout is not None
        line = (await asyncio.wait_for(server.stdout.readline(), 90)).decode()
        port = re.search(r"port=(\d+)", line)
        assert port, line
        # The server runs no workers (`--workers 0`): only the worker process can finish.
        worker = await asyncio.create_subprocess_exec(
            str(BIN / "servicecontrol"),
            *COMPOSE["services"]["worker"]["command"],
            env=worker_env,
            stdout=asyncio.subprocess.PIPE,
            stderr=(tmp_path / "worker.log").open("wb"),
        )
        assert worker.stdout is not None
        assert (await asyncio.wait_for(worker.stdout.readline(), 60)).startswith(b"SERVICECONTROL")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port[1]}") as channel:
            stub = api_grpc.ServiceControlStub(channel)
            created = await stub.CreateService(
                api.CreateServiceRequest(
                    service_name="composed",
                    source_configuration={
                        "image_repository": {"image_identifier": "compose-app:1"}
                    },
                )
            )
            done = await stub.WaitOperation(
                api.WaitOperationRequest(operation_id=created.operation_id), timeout=60
            )
            assert done.operation.status == done.operation.SUCCEEDED
    finally:
        for proc in (worker, server):
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 30) == 0
