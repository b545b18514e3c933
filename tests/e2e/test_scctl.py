"""`scctl`, run as a real process against a real server: output, progress while waiting,
and exit codes (0 ok, 2 usage, 3 API error, 4 timeout, 5 operation failed)."""

from __future__ import annotations

import asyncio
import errno
import io
import json
import os
import pty
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol_client.output import Progress, TransferProgress
from tests.support.images import build_docker_archive
from tests.support.server import ACCOUNT, Harness, harness_settings, running_harness

SCCTL = Path(sys.executable).parent / "scctl"
PROGRESS = re.compile(
    r"^(?P<type>[A-Z_]+) (?P<id>[0-9a-f-]{36}) (?P<status>[A-Z_]+) step=(?P<step>\S+) "
    r"attempt=(?P<attempt>\d+) elapsed=(?P<elapsed>\d+)s"
)


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def scctl_env(h: Harness | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCCTL_", "SERVICECONTROL_"))}
    # No profile of the machine's user: only what a test sets.
    env["SCCTL_CONFIG_FILE"] = str(Path(os.devnull).parent / "nonexistent" / "scctl-config")
    if h is not None:
        env["SCCTL_ENDPOINT"] = f"127.0.0.1:{h.port}"
        env["SERVICECONTROL_API_KEY"] = h.keys[ACCOUNT].token
    env.update(extra)
    return env


async def scctl(
    h: Harness | None, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> Run:
    proc = await asyncio.create_subprocess_exec(
        str(SCCTL),
        *args,
        env=env or scctl_env(h),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def progress_lines(stderr: str) -> list[dict[str, str]]:
    lines = [PROGRESS.match(line) for line in stderr.splitlines()]
    return [m.groupdict() for m in lines if m]


async def test_a_service_lifecycle(harness: Harness) -> None:
    created = await scctl(
        harness,
        "services",
        "create",
        "--service-name",
        "hello-web",
        "--image-identifier",
        "hello-web:1.0",
        "--port",
        "8000",
        "--env",
        "MODE=test",
        "--wait",
    )
    assert created.code == 0, created.stderr
    body = created.json()
    arn = body["service"]["serviceArn"]
    assert body["service"]["status"] == "RUNNING"
    assert body["operation"]["status"] == "SUCCEEDED"
    image = body["service"]["sourceConfiguration"]["imageRepository"]
    assert image["imageConfiguration"] == {
        "port": "8000",
        "runtimeEnvironmentVariables": {"MODE": "test"},
    }
    # Not a terminal: one line per state change, ending on the operation's outcome.
    shown = progress_lines(created.stderr)
    assert shown, created.stderr
    assert all(
        line["type"] == "CREATE_SERVICE" and line["id"] == body["operationId"] for line in shown
    )
    assert shown[-1]["status"] == "SUCCEEDED" and shown[-1]["step"] == "done"
    assert len(shown) == len({(s["status"], s["step"], s["attempt"]) for s in shown})

    # Global flags after the command words, as with `aws`; a human table.
    env = scctl_env(None)
    listed = await scctl(
        None,
        "services",
        "list",
        "--output",
        "table",
        "--endpoint",
        f"127.0.0.1:{harness.port}",
        "--api-key",
        harness.keys[ACCOUNT].token,
        env=env,
    )
    assert listed.code == 0, listed.stderr
    header, rule, row = listed.stdout.splitlines()
    assert header.split() == [
        "SERVICE",
        "NAME",
        "STATUS",
        "SERVICE",
        "ARN",
        "SERVICE",
        "URL",
        "UPDATED",
        "AT",
    ]
    assert set(rule) <= {"-", " "}
    assert row.split()[:3] == ["hello-web", "RUNNING", arn]
    described = await scctl(
        harness, "services", "describe", "--service-arn", arn, "--output", "table"
    )
    assert described.code == 0
    assert re.search(r"^serviceName\s+hello-web$", described.stdout, re.MULTILINE)
    assert re.search(r"^instanceConfiguration\.cpu\s+1 vCPU$", described.stdout, re.MULTILINE)

    # An update merges the flags into the current configuration.
    updated = await scctl(
        harness,
        "services",
        "update",
        "--service-arn",
        arn,
        "--cpu",
        "2 vCPU",
        "--memory",
        "4096",
        "--wait",
    )
    assert updated.code == 0, updated.stderr
    assert updated.json()["service"]["instanceConfiguration"] == {"cpu": "2 vCPU", "memory": "4096"}
    assert progress_lines(updated.stderr)[-1]["type"] == "UPDATE_SERVICE"

    paused = await scctl(harness, "services", "pause", "--service-arn", arn, "--wait")
    assert paused.code == 0 and paused.json()["service"]["status"] == "PAUSED"
    resumed = await scctl(harness, "services", "resume", "--service-arn", arn, "--wait")
    assert resumed.code == 0 and resumed.json()["service"]["status"] == "RUNNING"

    operations = await scctl(harness, "operations", "list", "--service-arn", arn)
    assert [o["type"] for o in operations.json()["operations"]] == [
        "RESUME_SERVICE",
        "PAUSE_SERVICE",
        "UPDATE_SERVICE",
        "CREATE_SERVICE",
    ]
    op_id = operations.json()["operations"][0]["id"]
    waited = await scctl(harness, "operations", "wait", "--operation-id", op_id)
    assert waited.code == 0 and waited.json()["operation"]["status"] == "SUCCEEDED"

    plan = await scctl(harness, "services", "delete", "--service-arn", arn, "--dry-run")
    assert plan.code == 0, plan.stderr
    assert "service_configuration" in plan.json()["plan"]["configurationRecords"]
    assert int(plan.json()["plan"]["imageObjects"]) > 0
    assert "operationId" not in plan.json()
    assert (await harness.describe(arn)).status == pb.Service.RUNNING

    deleted = await scctl(harness, "services", "delete", "--service-arn", arn, "--wait")
    assert deleted.code == 0, deleted.stderr
    assert deleted.json()["service"]["status"] == "DELETED"
    assert progress_lines(deleted.stderr)[-1]["type"] == "DELETE_SERVICE"
    assert (await harness.describe(arn)).status == pb.Service.DELETED
    assert (await scctl(harness, "services", "list")).json() == {"services": []}

    # The event stream tells the same story, one JSON line per event.
    events = await scctl(harness, "events", "watch", "--resource-arn", arn, "--max-events", "2")
    assert events.code == 0, events.stderr
    types = [json.loads(line)["type"] for line in events.stdout.splitlines()]
    assert types == ["service.create_requested", "service.created"]


async def test_errors_and_exit_codes(harness: Harness) -> None:
    unknown = f"arn:aws:apprunner:us-east-1:{ACCOUNT}:service/nope/{'0' * 32}"
    missing = await scctl(harness, "services", "describe", "--service-arn", unknown)
    assert missing.code == 3 and missing.stdout == ""
    assert "ResourceNotFoundException" in missing.stderr
    assert "reason: SERVICE_NOT_FOUND" in missing.stderr
    assert f"metadata serviceArn: {unknown}" in missing.stderr

    invalid = await scctl(
        harness,
        "services",
        "create",
        "--service-name",
        "ab",
        "--image-identifier",
        "hello-web:1.0",
        "--memory",
        "3 TB",
    )
    assert invalid.code == 3
    assert "reason: INVALID_REQUEST" in invalid.stderr
    assert "field service_name:" in invalid.stderr
    assert "field instance_configuration.memory:" in invalid.stderr

    usage = await scctl(harness, "services", "create", "--image-identifier", "hello-web:1.0")
    assert usage.code == 2 and "--service-name" in usage.stderr
    no_source = await scctl(harness, "services", "create", "--service-name", "hello-web")
    assert no_source.code == 2 and "--image-identifier" in no_source.stderr
    nothing = await scctl(harness, "services", "update", "--service-arn", unknown)
    assert nothing.code == 3  # the service is looked up first
    bad_json = await scctl(
        harness,
        "services",
        "create",
        "--service-name",
        "hello-web",
        "--source-configuration",
        '{"imageRepository": 7}',
    )
    assert bad_json.code == 2 and "--source-configuration" in bad_json.stderr

    # The operation ends FAILED (no such image): exit 5, with the reason.
    failed = await scctl(
        harness,
        "services",
        "create",
        "--service-name",
        "no-image",
        "--image-identifier",
        "does-not-exist:1",
        "--wait",
    )
    assert failed.code == 5, failed.stderr
    assert failed.json()["operation"]["status"] == "FAILED"
    assert failed.json()["service"]["status"] == "CREATE_FAILED"
    assert "ended FAILED" in failed.stderr and "does-not-exist" in failed.stderr

    nobody = scctl_env(None, SCCTL_ENDPOINT="127.0.0.1:1")
    unreachable = await scctl(None, "services", "list", env=nobody)
    # Unreachable is its own exit code, with a hint rather than an API error report.
    assert unreachable.code == 6, unreachable.stderr
    assert unreachable.stderr.startswith("scctl: cannot reach the server at 127.0.0.1:1 ")
    assert "hint:" in unreachable.stderr and "Traceback" not in unreachable.stderr
    keyless = scctl_env(None, SCCTL_ENDPOINT=f"127.0.0.1:{harness.port}")
    refused = await scctl(None, "services", "list", env=keyless)
    assert refused.code != 0 and "authorization: Bearer" in refused.stderr, refused.stderr


async def test_waits_time_out_with_exit_4_and_redraw_one_line_on_a_terminal(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    settings = harness_settings(database_url, s3_server, tmp_path)
    # No workers: operations stay PENDING, so every wait runs into its deadline.
    async with running_harness(settings, tmp_path, workers=0) as h:
        h.push_image()
        created = await scctl(
            h,
            "services",
            "create",
            "--service-name",
            "stuck",
            "--image-identifier",
            "hello-web:1.0",
            "--wait",
            "--wait-timeout",
            "1",
        )
        assert created.code == 4, created.stderr
        assert "timed out" in created.stderr
        shown = progress_lines(created.stderr)
        assert shown and shown[0]["status"] == "PENDING" and shown[0]["step"] == "queued"
        op_id = shown[0]["id"]

        waited = await scctl(
            h, "operations", "wait", "--operation-id", op_id, "--wait-timeout", "0.5"
        )
        assert waited.code == 4

        # On a terminal the progress line is redrawn in place as the seconds pass.
        leader, follower = pty.openpty()
        try:
            proc = await asyncio.create_subprocess_exec(
                str(SCCTL),
                "operations",
                "wait",
                "--operation-id",
                op_id,
                "--wait-timeout",
                "2.5",
                env=scctl_env(h),
                stdout=asyncio.subprocess.PIPE,
                stderr=follower,
            )
            os.close(follower)
            await asyncio.wait_for(proc.communicate(), 30)
            screen = read_all(leader)
        finally:
            os.close(leader)
        assert proc.returncode == 4
        draws = screen.split("\r\x1b[2K")[1:]
        assert len(draws) >= 3, repr(screen)
        assert all(PROGRESS.match(d) for d in draws), repr(screen)
        # One line: no newline until the wait is over.
        assert all("\n" not in d for d in draws[:-1])
        elapsed = [int(PROGRESS.match(d).group("elapsed")) for d in draws]  # type: ignore[union-attr]
        assert elapsed == sorted(elapsed) and elapsed[-1] >= 2


def read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError as exc:
            # Linux reports the closed far end of a pty as EIO.
            if exc.errno == errno.EIO:
                break
            raise
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_progress_without_a_terminal_prints_each_state_once() -> None:
    clock = iter([0.0, 0.4, 1.2, 2.6]).__next__
    stream = io.StringIO()
    progress = Progress(stream, tty=False, clock=clock)
    op = pb.Operation(
        id="0" * 36,
        type=pb.Operation.DELETE_SERVICE,
        status=pb.Operation.PENDING,
        current_step="queued",
    )
    progress.update(op)
    progress.update(op)
    op.status, op.current_step, op.attempt = pb.Operation.IN_PROGRESS, "delete_image_copy", 1
    op.last_error = "object store unreachable"
    progress.update(op)
    op.status, op.current_step, op.last_error = pb.Operation.SUCCEEDED, "done", ""
    progress.update(op)
    progress.finish()
    assert stream.getvalue().splitlines() == [
        f"DELETE_SERVICE {'0' * 36} PENDING step=queued attempt=0 elapsed=0s",
        f"DELETE_SERVICE {'0' * 36} IN_PROGRESS step=delete_image_copy attempt=1 elapsed=1s "
        "retrying after: object store unreachable",
        f"DELETE_SERVICE {'0' * 36} SUCCEEDED step=done attempt=1 elapsed=3s",
    ]


async def test_images_push_goes_through_the_endpoint(harness: Harness) -> None:
    archive = build_docker_archive(
        harness.tmp / "app.tar", layers=1, layer_size=128, legacy=False, repo_tag="pushed:2.0"
    )
    # No storage settings at all: the image travels through --endpoint to the server.
    env = scctl_env(None)
    endpoint = ["--endpoint", f"127.0.0.1:{harness.port}", "--api-key", harness.keys[ACCOUNT].token]
    pushed = await scctl(None, "images", "push", str(archive), "pushed:2.0", *endpoint, env=env)
    assert pushed.code == 0, pushed.stderr
    assert pushed.json()["imageIdentifier"] == "pushed:2.0"
    assert pushed.json()["manifestDigest"].startswith("sha256:")
    assert pushed.stderr == ""  # no progress bar when stderr is not a terminal
    created = await scctl(
        None,
        "services",
        "create",
        "--service-name",
        "from-push",
        "--image-identifier",
        "pushed:2.0",
        "--wait",
        *endpoint,
        env=env,
    )
    assert created.code == 0, created.stderr
    assert created.json()["service"]["status"] == "RUNNING"


async def test_images_push_of_a_missing_archive_is_a_usage_error(harness: Harness) -> None:
    pushed = await scctl(harness, "images", "push", str(harness.tmp / "nope.tar"), "x:1")
    assert pushed.code == 2
    assert "nope.tar" in pushed.stderr and "Traceback" not in pushed.stderr


def test_the_transfer_progress_bar_draws_on_a_terminal_only() -> None:
    clock = iter([0.0, 0.05, 0.5, 0.6])
    stream = io.StringIO()
    bar = TransferProgress(stream, True, "pushing a:1", clock=lambda: next(clock))
    bar.update(0, 4 * 1048576)
    bar.update(1048576, 4 * 1048576)  # within the redraw interval: skipped
    bar.update(2 * 1048576, 4 * 1048576)
    bar.update(4 * 1048576, 4 * 1048576)
    bar.finish()
    frames = stream.getvalue().split("\r\x1b[2K")[1:]
    assert [frame.split("] ")[1].strip() for frame in frames] == [
        "0% 0.0/4.0 MiB",
        "50% 2.0/4.0 MiB",
        "100% 4.0/4.0 MiB",
    ]
    assert stream.getvalue().endswith("\n")
    quiet = io.StringIO()
    silent = TransferProgress(quiet, False, "pushing a:1")
    silent.update(1, 2)
    silent.finish()
    assert quiet.getvalue() == ""


async def test_the_client_package_does_not_need_the_server_package() -> None:
    program = "\n".join(
        [
            "import sys",
            "sys.modules['servicecontrol_server'] = None  # as if not installed",
            "import servicecontrol_client",
            "from servicecontrol_client import cli",
            "assert not [m for m, v in sys.modules.items()"
            " if m.startswith('servicecontrol_server.')]",
            "sys.exit(cli.main(['services', 'list', '--help']))",
        ]
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        program,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert b"--page-size" in out
