"""Deleting one service's image copy of 1,000 / 10,000 / 100,000 objects, beside the floor:
the same objects deleted directly (the file system's own calls for the local store; the
S3 SDK's list pages and 1,000-key multi-object deletes for the S3 test server).

The measured delete is the job's: `delete_image_copy` through the worker's own store stack
(every call timed, and bounded on the jobs lane's pool), scanning the prefix once, saving
its progress to PostgreSQL before each batch (one commit per batch, as the delete job
does) and deleting batch by batch. Each run is a fresh process, so its peak RSS and its
growth over the RSS before the delete are its own; "flat" means they do not rise with the
object count. Each delete's CPU time (user + system; for the S3 server, the client's and
the server's) is reported beside its wall time: on a shared machine the wall time mostly
measures the other processes.

    .venv/bin/python bench/bench_scale.py [--quick] [--json out.json]
        [--local-sizes 1000,10000] [--s3-sizes 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import ROOT, Row, median, postgres_server, scratch_database

TARGET_VS_FLOOR = 1.5
# Peak RSS of the deleting process at the largest copy over that at the smallest: the
# interpreter and its imports are ~60 MB, so 1.1 is a few MB of growth at most.
FLAT_MEMORY = 1.1
BUCKET = "images"

# One delete in a fresh interpreter: prints {"seconds", "cpu_seconds", "peak_growth_mb",
# "objects"}. cpu_seconds is the process's own CPU time (user + system) over the delete:
# on a shared machine the wall time mostly measures the other processes.
CHILD = r"""
import json, os, resource, sys, time
import psutil
mode, kind, target, prefix, db = sys.argv[1:6]
me = psutil.Process()
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
rss_before = me.memory_info().rss
if kind == "local":
    from servicecontrol_server.adapters.objectstore.local_store import LocalDirectoryObjectStore
    store = LocalDirectoryObjectStore(target, durable=False)
else:
    from servicecontrol_server.adapters.objectstore.minio_store import MinioObjectStore
    store = MinioObjectStore(target, "testing", "testing")
objects = 0
if mode == "engine":
    import psycopg
    from psycopg.types.json import Jsonb
    from servicecontrol_server.adapters.postgres.jobqueue import SAVE_PROGRESS
    from servicecontrol_server.application.images import delete_image_copy
    conn = psycopg.connect(db, autocommit=True)
    job_id, token = conn.execute(
        "INSERT INTO jobs (kind, max_attempts, state, lease_token, lease_owner,"
        " lease_expires_at) VALUES ('delete_service', 3, 'running', gen_random_uuid(),"
        " 'bench', now() + interval '1 hour') RETURNING job_id, lease_token::text"
    ).fetchone()
    # The worker's own stack: every call timed and bounded on the jobs lane's pool.
    from servicecontrol_server.bootstrap import bounded_store
    from servicecontrol_server.adapters.objectstore.timed import TimedObjectStore
    from servicecontrol_server.settings import Settings
    store = bounded_store(TimedObjectStore(store), Settings(), "jobs")
    def save(progress):
        conn.execute(SAVE_PROGRESS, {"job_id": job_id, "token": token,
                                     "changes": Jsonb(progress.as_progress())}, prepare=True)
    rss_before = me.memory_info().rss
    c, t = cpu(), time.perf_counter()
    objects = delete_image_copy(store, "images", prefix, save=save).objects
    seconds, cpu_seconds = time.perf_counter() - t, cpu() - c
elif kind == "local":
    root = os.path.join(target, "images", prefix.rstrip("/"))
    rss_before = me.memory_info().rss
    c, t = cpu(), time.perf_counter()
    for directory, dirs, files in os.walk(root, topdown=False):
        for name in files:
            os.unlink(os.path.join(directory, name))
            objects += 1
        os.rmdir(directory)
    seconds, cpu_seconds = time.perf_counter() - t, cpu() - c
else:
    from minio.deleteobjects import DeleteObject
    client = store.client
    rss_before = me.memory_info().rss
    c, t = cpu(), time.perf_counter()
    batch = []
    for found in client.list_objects("images", prefix=prefix, recursive=True):
        batch.append(DeleteObject(found.object_name))
        if len(batch) == 1000:
            objects += len(batch)
            for error in client.remove_objects("images", batch):
                raise RuntimeError(error)
            batch = []
    if batch:
        objects += len(batch)
        for error in client.remove_objects("images", batch):
            raise RuntimeError(error)
    seconds, cpu_seconds = time.perf_counter() - t, cpu() - c
# The process's peak RSS (VmHWM, this image's high-water mark, unlike ru_maxrss, which
# carries the parent's over exec), read once: no sampling thread competes with the delete.
with open("/proc/self/status") as status:
    hwm = next(line for line in status if line.startswith("VmHWM:"))
peak = max(int(hwm.split()[1]) * 1024, me.memory_info().rss)
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "objects": objects,
                  "peak_rss_mb": peak / 2**20,
                  "peak_growth_mb": max(peak - rss_before, 0) / 2**20}))
"""


def _digest(i: int) -> str:
    return "sha256:" + hashlib.sha256(str(i).encode()).hexdigest()


def seed_local(root: Path, prefix: str, n: int) -> None:
    """Straight into the store's directory: the layout the store itself writes."""
    blobs = root / BUCKET / prefix / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    for i in range(n - 1):
        (blobs / _digest(i)).write_bytes(b"x" * 64)
    (root / BUCKET / prefix / "manifest.json").write_bytes(b"{}")


def seed_s3(server: S3Server, prefix: str, n: int) -> None:
    """Straight into the server's own store (one request to seed n objects): uploading
    100,000 objects one request at a time takes longer than deleting them."""
    server.seed(prefix, n)


def run_child(mode: str, kind: str, target: str, prefix: str, db: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, kind, target, prefix, db],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{mode} {kind} delete failed: {out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# The S3 test server in a process of its own, so its CPU is not the client's (and is
# measured apart). Besides S3 on its port, it reads "<prefix> <n>" lines on stdin and
# seeds a copy of n objects under prefix straight into its store, answering "ok".
SERVER = r"""
import logging, sys
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer
from hashlib import sha256
logging.disable(logging.CRITICAL)
bucket = sys.argv[1]
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
backend.create_bucket(bucket, "us-east-1")
print("%s:%d" % server.get_host_and_port(), flush=True)
for line in sys.stdin:
    prefix, n = line.split()
    n = int(n)
    for i in range(n - 1):
        digest = "sha256:" + sha256(str(i).encode()).hexdigest()
        backend.put_object(bucket, prefix + "blobs/" + digest, b"x" * 64)
    backend.put_object(bucket, prefix + "manifest.json", b"{}")
    print("ok", flush=True)
server.stop()
"""


class S3Server:
    def __enter__(self) -> S3Server:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, BUCKET],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        self.endpoint = self.proc.stdout.readline().strip()
        if not self.endpoint:
            raise RuntimeError("the S3 test server did not start")
        return self

    def seed(self, prefix: str, n: int) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{prefix} {n}\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline().strip() != "ok":
            raise RuntimeError("the S3 test server could not seed the copy")

    def cpu_seconds(self) -> float:
        import psutil

        times = psutil.Process(self.proc.pid).cpu_times()
        return float(times.user + times.system)

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def run(
    quick: bool,
    s3_max: int | None = None,
    *,
    local_sizes: list[int] | None = None,
    s3_sizes: list[int] | None = None,
    repeats: int | None = None,
) -> dict[str, Any]:
    if local_sizes is None:
        local_sizes = [1000, 2000] if quick else [1000, 10_000, 100_000]
    if s3_sizes is None:
        s3_sizes = [1000] if quick else [1000, 10_000, 100_000]
    if s3_max is not None:
        s3_sizes = [n for n in s3_sizes if n <= s3_max]
    repeats = repeats or (1 if quick else 3)
    results: dict[str, dict[int, dict[str, Any]]] = {}
    with postgres_server() as server, scratch_database(server) as url:
        from servicecontrol_server.adapters.postgres.database import libpq_url

        db = libpq_url(url)
        tmp = Path(tempfile.mkdtemp(prefix="sc-bench-scale-"))
        try:
            if local_sizes:
                settle = not quick
                _measure(
                    results, "local", str(tmp), local_sizes, repeats, db, tmp, None, settle=settle
                )
            if s3_sizes:
                with S3Server() as s3:
                    _measure(
                        results, "s3", s3.endpoint, s3_sizes, repeats, db, None, s3, settle=False
                    )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    rows: list[Row] = []
    for kind in ("local", "s3"):
        engine, floor = results.get(f"{kind} engine", {}), results.get(f"{kind} floor", {})
        # The S3 delete's CPU is the client's and the server's together.
        cpu = "client + server CPU" if kind == "s3" else "CPU"
        for n in sorted(engine):
            rows.append(
                Row(
                    "scale",
                    f"{kind} store: delete a {n:,}-object copy (s)",
                    engine[n]["seconds"],
                    "s",
                    "direct deletes (floor)",
                    floor[n]["seconds"],
                    TARGET_VS_FLOOR,
                    lower_is_better=True,
                )
            )
            rows.append(
                Row(
                    "scale",
                    f"{kind} store: {cpu} to delete a {n:,}-object copy (s)",
                    _cpu(engine[n]),
                    "s",
                    "direct deletes (floor)",
                    _cpu(floor[n]),
                    TARGET_VS_FLOOR,
                    lower_is_better=True,
                )
            )
        if len(engine) < 2:
            continue
        small = min(engine)
        for n in sorted(engine)[1:]:
            rows.append(
                Row(
                    "scale",
                    f"{kind} store: time per object at {n:,} vs at {small:,} (linear: ~1)",
                    engine[n]["seconds"] / n,
                    "s/object",
                    f"time per object at {small:,}",
                    engine[small]["seconds"] / small,
                    TARGET_VS_FLOOR,
                    lower_is_better=True,
                )
            )
            rows.append(
                Row(
                    "scale",
                    f"{kind} store: {cpu} per object at {n:,} vs at {small:,} (linear: ~1)",
                    _cpu(engine[n]) / n,
                    "s/object",
                    f"per object at {small:,}",
                    _cpu(engine[small]) / small,
                    TARGET_VS_FLOOR,
                    lower_is_better=True,
                )
            )
            rows.append(
                Row(
                    "scale",
                    f"{kind} store: peak RSS of the deleting process at {n:,} objects"
                    f" vs at {small:,} (flat: ~1; growth {engine[n]['peak_growth_mb']:.1f} MB"
                    f" vs {engine[small]['peak_growth_mb']:.1f})",
                    engine[n]["peak_rss_mb"],
                    "MB",
                    f"at {small:,}",
                    engine[small]["peak_rss_mb"],
                    FLAT_MEMORY,
                    lower_is_better=True,
                )
            )
    return {
        "repeats": repeats,
        "series": {k: {str(n): v for n, v in sorted(s.items())} for k, s in results.items()},
        "rows": [r.as_dict() for r in rows],
        "notes": [],
    }


def _cpu(sample: dict[str, Any]) -> float:
    return float(sample["cpu_seconds"] + sample.get("server_cpu_seconds", 0.0))


def _measure(
    results: dict[str, dict[int, dict[str, Any]]],
    kind: str,
    target: str,
    sizes: list[int],
    repeats: int,
    db: str,
    local_root: Path | None,
    s3: S3Server | None,
    *,
    settle: bool,
) -> None:
    for n in sizes:
        samples: dict[str, list[dict[str, Any]]] = {"engine": [], "floor": []}
        for r in range(repeats):
            # Interleaved, and in alternating order, so that a change in the machine's
            # load during the run weighs on both sides alike.
            for mode in ("engine", "floor") if r % 2 == 0 else ("floor", "engine"):
                prefix = f"services/{kind}-{n}-{mode}-{r}/"
                if local_root is not None:
                    seed_local(local_root, prefix, n)
                    if settle:
                        # A copy at rest: its writes are not still being flushed under
                        # the delete (left out of the quick run, whose time is budgeted).
                        os.sync()
                if s3 is not None:
                    seed_s3(s3, prefix, n)
                    before = s3.cpu_seconds()
                sample = run_child(mode, kind, target, prefix, db)
                if s3 is not None:
                    sample["server_cpu_seconds"] = s3.cpu_seconds() - before
                samples[mode].append(sample)
        for mode, runs in samples.items():
            results.setdefault(f"{kind} {mode}", {})[n] = _median_of(runs)


def _median_of(samples: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("seconds", "cpu_seconds", "server_cpu_seconds", "peak_growth_mb", "peak_rss_mb")
    return {
        **{k: median([s[k] for s in samples]) for k in keys if k in samples[0]},
        "objects": samples[0]["objects"],
    }


def _sizes(text: str) -> list[int]:
    return [int(n) for n in text.split(",") if int(n) > 0]


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--s3-max", type=int, help="largest S3 copy to seed")
    parser.add_argument("--local-sizes", type=_sizes, help="e.g. 1000,10000 (0: none)")
    parser.add_argument("--s3-sizes", type=_sizes, help="e.g. 1000,10000 (0: none)")
    parser.add_argument("--repeats", type=int, help="samples per figure (median)")
    args = parser.parse_args()
    report = run(
        args.quick,
        args.s3_max,
        local_sizes=args.local_sizes,
        s3_sizes=args.s3_sizes,
        repeats=args.repeats,
    )
    out = json.dumps(report, indent=2)
    print(out)
    if args.json:
        args.json.write_text(out)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    main()
