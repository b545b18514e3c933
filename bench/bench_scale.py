"""Deleting one service's image copy of 1,000 / 10,000 / 100,000 objects, beside the floor:
the same objects deleted directly (the file system's own calls for the local store; the
S3 SDK's list pages and 1,000-key multi-object deletes for the S3 test server).

The measured delete is the job's: `delete_image_copy` scanning the prefix once, saving its
progress to PostgreSQL before each batch (one commit per batch, as the delete job does)
and deleting batch by batch. Each run is a fresh process, so its peak memory growth
(peak RSS minus RSS before the delete) is its own; "flat" means the growth does not rise
with the object count.

    .venv/bin/python bench/bench_scale.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, Row, median, postgres_server, scratch_database

TARGET_VS_FLOOR = 1.5
BUCKET = "images"

# One delete in a fresh interpreter: prints {"seconds", "peak_growth_mb", "objects"}.
CHILD = r"""
import json, os, sys, threading, time
import psutil
mode, kind, target, prefix, db = sys.argv[1:6]
me = psutil.Process()
peak = 0
def sample():
    global peak
    while True:
        peak = max(peak, me.memory_info().rss)
        time.sleep(0.002)
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
    def save(progress):
        conn.execute(SAVE_PROGRESS, {"job_id": job_id, "token": token,
                                     "changes": Jsonb(progress.as_progress())}, prepare=True)
    rss_before = me.memory_info().rss
    threading.Thread(target=sample, daemon=True).start()
    t = time.perf_counter()
    objects = delete_image_copy(store, "images", prefix, save=save).objects
    seconds = time.perf_counter() - t
elif kind == "local":
    root = os.path.join(target, "images", prefix.rstrip("/"))
    rss_before = me.memory_info().rss
    threading.Thread(target=sample, daemon=True).start()
    t = time.perf_counter()
    for directory, dirs, files in os.walk(root, topdown=False):
        for name in files:
            os.unlink(os.path.join(directory, name))
            objects += 1
        os.rmdir(directory)
    seconds = time.perf_counter() - t
else:
    from minio.deleteobjects import DeleteObject
    client = store.client
    rss_before = me.memory_info().rss
    threading.Thread(target=sample, daemon=True).start()
    t = time.perf_counter()
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
    seconds = time.perf_counter() - t
peak = max(peak, me.memory_info().rss)
print(json.dumps({"seconds": seconds, "objects": objects,
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


def seed_s3(endpoint: str, prefix: str, n: int) -> None:
    """Parallel uploads."""
    import io

    from minio import Minio

    client = Minio(endpoint, "testing", "testing", secure=False)
    if not client.bucket_exists(BUCKET):
        client.make_bucket(BUCKET)

    def put(i: int) -> None:
        key = f"{prefix}blobs/{_digest(i)}" if i < n - 1 else f"{prefix}manifest.json"
        client.put_object(BUCKET, key, io.BytesIO(b"x" * 64), 64)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(n)))


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoProcess:
    """The S3 test server in a process of its own, so its CPU is not the client's."""

    def __enter__(self) -> str:
        port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return f"127.0.0.1:{port}"
            time.sleep(0.1)
        raise RuntimeError("the S3 test server did not start")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def run(quick: bool, s3_max: int | None = None) -> dict[str, Any]:
    local_sizes = [1000, 2000] if quick else [1000, 10_000, 100_000]
    s3_sizes = [1000] if quick else [1000, 10_000, 100_000]
    if s3_max is not None:
        s3_sizes = [n for n in s3_sizes if n <= s3_max]
    repeats = 1 if quick else 3
    results: dict[str, dict[int, dict[str, Any]]] = {}
    with postgres_server() as server, scratch_database(server) as url:
        from servicecontrol_server.adapters.postgres.database import libpq_url

        db = libpq_url(url)
        tmp = Path(tempfile.mkdtemp(prefix="sc-bench-scale-"))
        try:
            _measure(results, "local", str(tmp), local_sizes, repeats, db, tmp)
            with MotoProcess() as endpoint:
                _measure(results, "s3", endpoint, s3_sizes, repeats, db, None)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    rows: list[Row] = []
    for kind in ("local", "s3"):
        engine, floor = results.get(f"{kind} engine", {}), results.get(f"{kind} floor", {})
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
        if len(engine) >= 2:
            small, large = min(engine), max(engine)
            rows.append(
                Row(
                    "scale",
                    f"{kind} store: time per object at {large:,} vs at {small:,} (linear: ~1)",
                    engine[large]["seconds"] / large,
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
                    f"{kind} store: peak memory growth at {large:,} objects (MB)",
                    engine[large]["peak_growth_mb"],
                    "MB",
                    f"growth at {small:,} objects",
                    None,
                )
            )
    return {
        "repeats": repeats,
        "series": {k: {str(n): v for n, v in sorted(s.items())} for k, s in results.items()},
        "rows": [r.as_dict() for r in rows],
        "notes": [],
    }


def _measure(
    results: dict[str, dict[int, dict[str, Any]]],
    kind: str,
    target: str,
    sizes: list[int],
    repeats: int,
    db: str,
    local_root: Path | None,
) -> None:
    for n in sizes:
        for mode in ("engine", "floor"):
            samples = []
            for r in range(repeats):
                prefix = f"services/{kind}-{n}-{mode}-{r}/"
                if local_root is not None:
                    seed_local(local_root, prefix, n)
                else:
                    seed_s3(target, prefix, n)
                samples.append(run_child(mode, kind, target, prefix, db))
            results.setdefault(f"{kind} {mode}", {})[n] = _median_of(samples)


def _median_of(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "seconds": median([s["seconds"] for s in samples]),
        "peak_growth_mb": median([s["peak_growth_mb"] for s in samples]),
        "objects": samples[0]["objects"],
    }


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--s3-max", type=int, help="largest S3 copy to seed")
    args = parser.parse_args()
    report = run(args.quick, args.s3_max)
    out = json.dumps(report, indent=2)
    print(out)
    if args.json:
        args.json.write_text(out)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    main()
