"""The contract's tooling: the committed Python code matches the protos, the protos pass
buf lint, and they stay wire- and JSON-compatible with the last released contract."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROTOS = REPO / "protos"
COMMITTED_CLIENT = REPO / "clients" / "python" / "servicecontrol"
RELEASED = PROTOS / "released" / "servicecontrol-v1.binpb"
BUF = REPO / "node_modules" / ".bin" / "buf"

needs_buf = pytest.mark.skipif(
    not BUF.exists() or shutil.which("npx") is None,
    reason="buf is not installed: run `npm ci` in the repository root",
)


def _buf(*args: str) -> subprocess.CompletedProcess[str]:
    # From the repository root, so that npx resolves the buf pinned in package.json.
    return subprocess.run(
        ["npx", "--no", "buf", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_committed_python_code_is_what_the_protos_generate(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("protos_generate", PROTOS / "generate.py")
    assert spec is not None and spec.loader is not None
    generate_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate_module)

    generate_module.generate(tmp_path)

    fresh = _files(tmp_path / "servicecontrol")
    committed = _files(COMMITTED_CLIENT)
    differing = sorted(
        name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name)
    )
    assert not differing, (
        "clients/python/servicecontrol is stale; run `python protos/generate.py`. "
        f"Differing files: {differing}"
    )


@needs_buf
def test_buf_lint_passes() -> None:
    result = _buf("lint", "protos")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_buf
def test_no_breaking_change_since_the_released_contract() -> None:
    assert RELEASED.is_file(), f"{RELEASED} is missing"
    result = _buf("breaking", "protos", "--against", str(RELEASED.relative_to(REPO)))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_buf
def test_buf_breaking_rejects_a_renumbered_field(tmp_path: Path) -> None:
    """The check above has teeth: a copy of the protos with one field renumbered fails it."""
    protos = tmp_path / "protos"
    shutil.copytree(PROTOS, protos)
    resources = protos / "servicecontrol" / "v1" / "resources.proto"
    source = resources.read_text()
    assert source.count("string service_name = 1;") == 1
    resources.write_text(source.replace("string service_name = 1;", "string service_name = 99;"))

    result = _buf("breaking", str(protos), "--against", str(RELEASED))

    assert result.returncode != 0, "buf breaking accepted a renumbered field"
    assert "service_name" in result.stdout + result.stderr
