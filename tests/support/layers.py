"""The picture of the layers in docs/architecture.md, drawn from the code's imports:
`python -m tests.support.layers` prints it; tests/checks/test_layers.py fails when the
document's copy differs."""

from __future__ import annotations

import grimp

PACKAGE = "servicecontrol_server"
# Top-level modules every outer layer may use; drawn apart, not as layers.
SHARED = {"settings", "faults", "logs", "latches"}
ORDER = ["cli", "bootstrap", "api", "adapters", "engine", "application", "domain"]


def layer_edges() -> list[tuple[str, str]]:
    """(importer, imported) between the package's top-level parts, from every import."""
    graph = grimp.build_graph(PACKAGE)
    edges: set[tuple[str, str]] = set()
    for module in graph.modules:
        source = _part(module)
        if source is None:
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            target = _part(imported)
            if target is not None and target != source:
                edges.add((source, target))
    return sorted(edges, key=lambda e: (_rank(e[0]), _rank(e[1]), e))


def mermaid() -> str:
    lines = ["```mermaid", "flowchart TD"]
    for source, target in layer_edges():
        if source in SHARED or target in SHARED:
            continue
        lines.append(f"  {source} --> {target}")
    shared_users = sorted({s for s, t in layer_edges() if t in SHARED}, key=lambda p: (_rank(p), p))
    lines.append(
        f"  %% shared modules ({', '.join(sorted(SHARED))}) are used by: " + ", ".join(shared_users)
    )
    lines.append("```")
    return "\n".join(lines)


def _part(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        return None
    return parts[1]


def _rank(part: str) -> int:
    return ORDER.index(part) if part in ORDER else len(ORDER)


if __name__ == "__main__":
    print(mermaid())
