"""Running Node.js from the tests: the `node` binary, the marks that skip a test when it
or the repository's Node modules are missing, and one script run to its output."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")


def node_marks(module: str) -> list[pytest.MarkDecorator]:
    """Skips the test module without `node` or without the Node module `module`."""
    return [
        pytest.mark.skipif(NODE is None, reason="node is not installed"),
        pytest.mark.skipif(
            not (REPO / "node_modules" / module).is_dir(),
            reason="the Node modules are not installed: run `npm ci` in the repository root",
        ),
    ]


async def run_node(
    *args: str,
    cwd: Path = REPO,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> str:
    """`node <args>`'s standard output; the test fails with its standard error when it
    exits other than 0."""
    assert NODE is not None
    proc = await asyncio.create_subprocess_exec(
        NODE,
        *args,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode == 0, err.decode()
    return out.decode()
