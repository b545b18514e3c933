"""The load generator's process, shared by the benchmarks that load a real server: the
benchmark script re-runs itself with `--client TARGET`, and drives that process one phase
at a time over its stdin and stdout (one JSON line each way). Light on purpose: the
generator imports grpc and nothing of the server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

Phase = Callable[[Any, dict[str, Any]], Awaitable[dict[str, Any]]]


async def client_main(target: str, phase: Phase) -> None:
    """The generator's side: one channel to `target`; each line read is a phase to run."""
    import grpc

    channel = grpc.aio.insecure_channel(target)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        out = await phase(channel, json.loads(line))
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    await channel.close()


class Client:
    """The benchmark's side: the generator process (`script --client target`), driven one
    phase at a time."""

    def __init__(self, script: str, target: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, script, "--client", target],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the load generator exited")
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
