"""The layers of docs/architecture.md hold in the code: import-linter's contracts (in
pyproject.toml) pass, and they are not toothless: an inward layer importing an outward
one, or a driver, breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")
PACKAGE = ROOT / "server" / "servicecontrol_server"


def lint_imports(pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        # Found before the editable install, whose finder comes after sys.path.
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_contracts_are_kept() -> None:
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "forbidden_import", "contract"),
    [
        # The domain must not know the application, nor the application an adapter.
        (
            "domain/model.py",
            "from servicecontrol_server.application import ports",
            "Dependencies point inwards",
        ),
        (
            "application/reaper.py",
            "from servicecontrol_server.adapters.postgres import ttl",
            "Dependencies point inwards",
        ),
        ("application/events.py", "import sqlalchemy", "speak to the world through ports"),
        ("api/use_cases.py", "import psycopg", "only through use cases"),
        ("api/errors.py", "from servicecontrol_server.api import servicer", "No import cycles"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(
    tmp_path: Path, module: str, forbidden_import: str, contract: str
) -> None:
    copy = tmp_path / "servicecontrol_server"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    source = target.read_text()
    marker = "from __future__ import annotations\n"
    assert marker in source
    target.write_text(source.replace(marker, f"{marker}\n{forbidden_import}\n", 1))
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    broken = [line for line in result.stdout.splitlines() if "BROKEN" in line]
    assert broken, result.stdout
    assert contract in result.stdout.replace("\n", " ")


def test_the_architecture_document_draws_the_layers_as_the_code_has_them() -> None:
    from tests.support.layers import mermaid

    document = (ROOT / "docs" / "architecture.md").read_text()
    drawn = document.partition("<!-- layers:begin -->\n")[2].partition("\n<!-- layers:end -->")[0]
    assert drawn == mermaid(), (
        "docs/architecture.md's picture is stale; regenerate it with "
        "`python -m tests.support.layers`"
    )
