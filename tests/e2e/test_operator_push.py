"""`servicecontrol images push`, the operator's push: it says where the image went (the
absolute path a server with the same settings reads), and with --endpoint it pushes
through the server, so the image lands where that server looks whatever the directory."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from servicecontrol.v1 import resources_pb2 as pb
from tests.support.processes import SERVICECONTROL
from tests.support.server import ACCOUNT, Harness


async def _run(*args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        SERVICECONTROL,
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _bare_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SERVICECONTROL_")}


async def test_a_local_push_names_the_absolute_registry_it_wrote(tmp_path: Path) -> None:
    code, out, err = await _run(
        "images", "push", "--sample", "local:1", cwd=tmp_path, env=_bare_env()
    )
    assert code == 0, err
    registry = tmp_path.resolve() / ".servicecontrol" / "objects" / "servicecontrol-source"
    assert out.strip().endswith(f"into {registry}")
    assert (registry / "local" / "manifests" / "1").is_file()
    # No server ever ran on that data dir: the push says so, and what to do instead.
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "no server has run on the data dir" in warning[0]
    assert "--endpoint" in warning[0] and "Traceback" not in err


async def test_a_push_with_an_endpoint_lands_where_the_server_looks(
    harness: Harness, tmp_path: Path
) -> None:
    # Another directory and no storage settings: only the endpoint says where to push.
    code, out, err = await _run(
        "images",
        "push",
        "--sample",
        "through:1",
        "--endpoint",
        f"127.0.0.1:{harness.port}",
        "--account",
        ACCOUNT,
        cwd=tmp_path,
        env=_bare_env(),
    )
    assert code == 0, err
    assert f"through 127.0.0.1:{harness.port}" in out
    assert not (tmp_path / ".servicecontrol").exists()
    service = await harness.running_service("through-web", image="through:1")
    assert service.status == pb.Service.RUNNING
