"""Every benchmark in one run: the job engine beside pgqueuer and a raw SKIP LOCKED loop
(bench_engine.py), deleting copies of 1,000 to 100,000 objects beside the direct deletes
(bench_scale.py), a delete's request latency and request-to-DELETED time
(bench_delete.py), DescribeService, ListServices and DeleteService at 1, 16 and 64
callers beside the gRPC health check (bench_requests.py), jobs under a 64-caller request
load and the server's memory (bench_load.py), and the hot paths on a grown database
beside the empty one, with dead tuples under churn (bench_growth.py). Prints a table with
each ratio beside its target, writes the JSON report, draws the plots and rewrites the
figures block of docs/benchmarks.md.

    .venv/bin/python bench/run.py            # the full run (tens of minutes; not in CI)
    .venv/bin/python bench/run.py --quick    # a smoke run of every benchmark (the suite's)

The full run writes into docs/ (benchmarks.json, the PNG plots, the figures block of
benchmarks.md); --out DIR writes there instead (the quick run defaults to a temporary
directory: its figures mean nothing and never replace the recorded ones). A run of some
benchmarks (--only) keeps the other benchmarks' figures from the report it replaces,
each still named with the run that measured it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import DATABASE_URL_ENV, ROOT, machine, postgres_server

DOCS = ROOT / "docs"
MARK_START = "<!-- figures:start (written by bench/run.py) -->"
MARK_END = "<!-- figures:end -->"


@contextlib.contextmanager
def one_server_for_a_quick_pass(quick: bool) -> Iterator[None]:
    """The quick pass starts one embedded PostgreSQL for every benchmark (each still
    measures on a scratch database of its own) instead of one per benchmark, whose start
    would take most of a quick benchmark's time. The full run keeps a server per benchmark
    unless $SERVICECONTROL_DATABASE_URL names one."""
    if not quick or os.environ.get(DATABASE_URL_ENV):
        yield
        return
    with postgres_server() as url:
        os.environ[DATABASE_URL_ENV] = url
        try:
            yield
        finally:
            os.environ.pop(DATABASE_URL_ENV, None)


def run_all(quick: bool, only: set[str] | None, s3_max: int | None) -> dict[str, Any]:
    with one_server_for_a_quick_pass(quick):
        return _run_all(quick, only, s3_max)


def _run_all(quick: bool, only: set[str] | None, s3_max: int | None) -> dict[str, Any]:
    import bench_delete
    import bench_engine
    import bench_scale

    report: dict[str, Any] = {
        "quick": quick,
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "benchmarks": {},
    }
    if only is None or "engine" in only:
        report["benchmarks"]["engine"] = asyncio.run(bench_engine.run(quick))
    if only is None or "scale" in only:
        report["benchmarks"]["scale"] = bench_scale.run(quick, s3_max)
    if only is None or "delete" in only:
        report["benchmarks"]["delete"] = asyncio.run(bench_delete.run(quick))
    # The request path beside the gRPC health check at 1, 16 and 64 callers.
    if only is None or "requests" in only:
        import bench_requests

        requests = bench_requests.run(argparse.Namespace(quick=quick, runs=None, profile=None))
        requests["rows"] = bench_requests.rows(requests)
        report["benchmarks"]["requests"] = requests
    # Jobs under a 64-caller request load, and the server's memory (bench_load.py).
    if only is None or "load" in only:
        import bench_load

        report["benchmarks"]["load"] = bench_load.run(quick)
    if only is None or "growth" in only:
        import bench_growth

        report["benchmarks"]["growth"] = asyncio.run(bench_growth.run(quick))
    report["machine_after"] = machine()["load_average_1_5_15"]
    return report


def merged(report: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    """`report` (a run of some benchmarks) with the figures of every other benchmark of
    `previous`, the report it replaces. Each kept benchmark stays attributed to the run
    that measured it (`other_runs`: its start, machine and load), so the figures block says
    which run each block's figures come from. A quick report is never merged into."""
    if report["quick"] or previous.get("quick"):
        return report
    other_runs: dict[str, Any] = {}
    before = previous.get("other_runs", {})
    for name, figures in previous.get("benchmarks", {}).items():
        if name in report["benchmarks"]:
            continue
        report["benchmarks"][name] = figures
        other_runs[name] = before.get(name) or {
            "started": previous["started"],
            "machine": previous["machine"],
            "machine_after": previous.get("machine_after"),
        }
    if other_runs:
        report["other_runs"] = other_runs
    return report


def table(report: dict[str, Any]) -> str:
    lines = [
        "| benchmark | measure | value | reference | ratio | target | meets |",
        "|---|---|---:|---|---:|---:|:---:|",
    ]
    for name, bench in report["benchmarks"].items():
        for row in bench.get("rows", []):
            ratio = row["ratio"]
            target = row["target"]
            sign = "≤" if row["lower_is_better"] else "≥"
            target_text = f"{sign} {target:g}" if target is not None else "—"
            if row.get("goal") is not None:
                target_text += f" (goal {row['goal']:g})"
            ref = row["reference"]
            ref_text = f"{row['reference_name']}: {_num(ref)}" if ref is not None else "—"
            meets = {True: "yes", False: "**no**", None: ""}[row["meets_target"]]
            lines.append(
                f"| {name} | {row['measure']} | {_num(row['value'])} {row['unit']} | {ref_text}"
                f" | {'' if ratio is None else f'{ratio:.2f}'} | {target_text} | {meets} |"
            )
        for note in bench.get("notes", []):
            lines.append(f"| {name} | note: {note} | | | | | |")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.4g}"


def plots(report: dict[str, Any], out: Path) -> list[str]:
    """PNG plots: jobs/s by workers, delete time by object count, request latency by
    concurrency. Skipped (and said so)
    when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plots")
        return []
    written = []
    engine = report["benchmarks"].get("engine")
    if engine:
        fig, ax = plt.subplots(figsize=(6.4, 4))
        for name, series in engine["series"].items():
            workers = sorted(int(w) for w in series)
            ax.plot(workers, [series[str(w)] for w in workers], marker="o", label=name)
        ax.set_xlabel("workers")
        ax.set_ylabel("no-op jobs/s")
        ax.set_xticks([1, 2, 4])
        ax.set_title(f"Job throughput by workers (batch {engine['batch']})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        path = out / "bench-jobs-by-workers.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path.name)
    scale = report["benchmarks"].get("scale")
    if scale:
        fig, ax = plt.subplots(figsize=(6.4, 4))
        for name, series in scale["series"].items():
            counts = sorted(int(n) for n in series)
            ax.plot(counts, [series[str(n)]["seconds"] for n in counts], marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("objects in the image copy")
        ax.set_ylabel("seconds to delete")
        ax.set_title("Deleting one image copy, by object count")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        path = out / "bench-delete-by-objects.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path.name)
    requests = report["benchmarks"].get("requests")
    if requests:
        fig, ax = plt.subplots(figsize=(6.4, 4))
        names = {"health": "health check (ceiling)", "describe": "DescribeService"}
        names |= {"list": "ListServices", "delete": "DeleteService"}
        for i, (rpc, by_callers) in enumerate(requests["results"].items()):
            callers = sorted(int(c) for c in by_callers)
            for key, style in (("p50_ms", "-"), ("p99_ms", ":")):
                ax.plot(
                    callers,
                    [by_callers[str(c)][key] for c in callers],
                    style,
                    color=f"C{i}",
                    marker="o",
                    label=f"{names.get(rpc, rpc)} {key.split('_')[0]}",
                )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks([1, 16, 64], ["1", "16", "64"])
        ax.set_xlabel("concurrent callers")
        ax.set_ylabel("latency (ms)")
        ax.set_title("Request latency by concurrency (p50 solid, p99 dotted)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, ncol=2)
        path = out / "bench-latency-by-callers.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path.name)
    return written


def figures_block(report: dict[str, Any], images: list[str]) -> str:
    parts = [MARK_START, "", _provenance(report), "", table(report), ""]
    parts += [f"![{name}]({name})" for name in images]
    parts += ["", MARK_END]
    return "\n".join(parts)


def _provenance(report: dict[str, Any]) -> str:
    """The machine and the runs: this one, and each other run whose figures were kept."""
    m = report["machine"]
    others: dict[str, Any] = report.get("other_runs", {})
    text = (
        f"Run of {report['started']}{' (quick)' if report['quick'] else ''}: "
        f"{m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, Python {m['python']}, "
        f"{m['platform']}; load average (1/5/15 min) {m['load_average_1_5_15']} before, "
        f"{report.get('machine_after')} after"
    )
    if others:
        measured = [name for name in report["benchmarks"] if name not in others]
        text += f" ({', '.join(measured)})"
    for name, run in others.items():
        text += (
            f"; {name} from the run of {run['started']}, load average "
            f"{run['machine']['load_average_1_5_15']} before, {run.get('machine_after')} after"
        )
    return text + "."


def write_docs(report: dict[str, Any], out: Path, images: list[str]) -> Path:
    doc = out / "benchmarks.md"
    block = figures_block(report, images)
    text = doc.read_text() if doc.exists() else f"# Benchmarks\n\n{MARK_START}\n{MARK_END}\n"
    if MARK_START in text and MARK_END in text:
        head, rest = text.split(MARK_START, 1)
        tail = rest.split(MARK_END, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)
    return doc


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of every benchmark")
    parser.add_argument("--out", type=Path, help="where the JSON, plots and document go")
    parser.add_argument(
        "--only",
        action="append",
        choices=["engine", "scale", "delete", "requests", "load", "growth"],
        help="repeatable",
    )
    parser.add_argument("--s3-max", type=int, help="largest S3 copy bench_scale seeds")
    args = parser.parse_args()
    out = args.out or (Path(tempfile.mkdtemp(prefix="sc-bench-")) if args.quick else DOCS)
    out.mkdir(parents=True, exist_ok=True)
    report = run_all(args.quick, set(args.only) if args.only else None, args.s3_max)
    recorded = out / "benchmarks.json"
    if args.only and recorded.exists():
        report = merged(report, json.loads(recorded.read_text()))
    recorded.write_text(json.dumps(report, indent=2))
    images = plots(report, out)
    doc = write_docs(report, out, images)
    print(table(report))
    if "requests" in report["benchmarks"]:
        import bench_requests

        # The request path's own table: p50, p99 and server CPU per call beside the ceiling.
        print("\n" + bench_requests.table(report["benchmarks"]["requests"]))
    print(f"\nreport: {out / 'benchmarks.json'}; document: {doc}", file=sys.stderr)


if __name__ == "__main__":
    main()
