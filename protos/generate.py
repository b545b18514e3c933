"""Regenerates the Python code for the protos into clients/python.

Run with `python protos/generate.py`. The output is committed; the test suite runs this
into a scratch directory and fails when the committed copy differs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PROTOS = Path(__file__).resolve().parent
DEFAULT_OUT = PROTOS.parent / "clients" / "python"
PACKAGE_DIR = Path("servicecontrol") / "v1"
# The contract's files with their comments (source info), which the generated modules do
# not carry: the server serves them through reflection, so `grpcurl describe` shows them.
DESCRIPTOR_SET = "descriptor_set.binpb"


def generate(out: Path) -> None:
    sources = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / PACKAGE_DIR).glob("*.proto"))
    well_known = str(resources.files("grpc_tools") / "_proto")
    target = out / PACKAGE_DIR
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    bindir = Path(sys.executable).parent
    args = [
        "protoc",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTOS}",
        f"-I{PROTOS / 'third_party'}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--mypy_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_grpc_out={out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    descriptor_set = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{PROTOS / 'third_party'}",
        f"-I{well_known}",
        "--include_source_info",
        f"--descriptor_set_out={target / DESCRIPTOR_SET}",
        *sources,
    ]
    if protoc.main(descriptor_set) != 0:
        raise SystemExit("protoc failed")
    for package in (out / "servicecontrol", target):
        (package / "__init__.py").write_text('"""Generated from protos/; do not edit."""\n')
        (package / "py.typed").write_text("")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    generate(parser.parse_args().out)


if __name__ == "__main__":
    sys.exit(main())
