"""The hot paths on a grown database beside the same paths on an empty one, in one run.

    .venv/bin/python bench/bench_growth.py [--quick] [--rounds N] [--json report.json]

Two scratch databases on one PostgreSQL server ($SERVICECONTROL_DATABASE_URL, else an
embedded server of its own) and one S3 test server. One stays empty; the other is grown
as a long-lived installation leaves its tables: 100,000 service tombstones (DELETED,
configuration gone, their create and delete operations kept), 1,000,000 outbox rows
relayed and retained inside the event retention, 100,000 certificates unlinked and
retained until they expire (quick: a hundredth of each), then VACUUM ANALYZE and a
checkpoint, and the measurements wait until no autovacuum worker runs on it.

Then, round by round (medians of 3; quick: 1), alternating between the two databases so
that drift in the machine's load hits both alike:

  1. the job engine's no-op jobs/s (4 workers, bench_engine's machinery);
  2. DescribeService and ListServices latency at 1 caller and calls/s at 16 callers; one
     DeleteService at a time on an idle system (bench_delete's shape): request latency
     and request→DELETED.

Each figure's ratio grown/empty stands beside the target (within 20 %). Last, churn on the
grown database: create→delete cycles from several callers for a while (jobs, operations,
outbox rows and tombstones written and rewritten), sampling n_dead_tup and n_live_tup of
the churning tables from pg_stat_user_tables: the maximum, whether dead tuples stay
bounded (never above 1.5× the count at which the table's autovacuum settings make a
vacuum due) and how often autovacuum ran.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from common import Row, machine  # noqa: E402

from servicecontrol.v1 import resources_pb2 as pb  # noqa: E402
from servicecontrol.v1 import service_control_pb2 as api  # noqa: E402
from servicecontrol_server.adapters.postgres.database import libpq_url  # noqa: E402

# Grown/empty: throughput at least 0.8 of the empty figure, latency at most 1.2× (20 %).
TARGET_THROUGHPUT = 0.8
TARGET_LATENCY = 1.2

FULL = {"tombstones": 100_000, "outbox": 1_000_000, "certificates": 100_000}
QUICK = {k: v // 100 for k, v in FULL.items()}

# The tables whose dead tuples the churn run watches.
CHURNING = ("jobs", "outbox", "operations", "services", "request_ids", "certificates")

# Every tombstone in one account in ten is the measured account's: its ListServices and
# DeleteService walk past them.
GROWTH_SQL = [
    "INSERT INTO accounts (account_id) VALUES (%(account)s) ON CONFLICT DO NOTHING",
    """
    INSERT INTO accounts (account_id)
    SELECT lpad((500000000000 + a)::text, 12, '0') FROM generate_series(0, 99) a
    ON CONFLICT DO NOTHING
    """,
    # Service tombstones as a delete leaves them: DELETED, configuration and compute gone,
    # purge_at at the end of the tombstone retention.
    """
    INSERT INTO services (service_id, account_id, region, service_name, service_arn,
                          service_url, status, created_at, updated_at, deleted_at, purge_at)
    SELECT 'g' || md5('svc' || i),
           CASE WHEN i %% 10 = 0 THEN %(account)s
                ELSE lpad((500000000000 + i %% 100)::text, 12, '0') END,
           'us-east-1', 'grown-' || i,
           'arn:aws:apprunner:us-east-1:' || CASE WHEN i %% 10 = 0 THEN %(account)s
                ELSE lpad((500000000000 + i %% 100)::text, 12, '0') END
             || ':service/grown-' || i || '/' || md5('svc' || i),
           md5('url' || i) || '.us-east-1.awsapprunner.com', 'DELETED',
           now() - interval '20 days' + make_interval(secs => i), now(), now(),
           now() + interval '30 days' - make_interval(secs => %(tombstones)s - i)
    FROM generate_series(1, %(tombstones)s) i
    """,
    # Their create and delete operations, ended, kept with the tombstone.
    """
    INSERT INTO operations (operation_id, account_id, service_id, target_arn, type, status,
                            current_step, attempt, started_at, updated_at, ended_at)
    SELECT gen_random_uuid(), s.account_id, s.service_id, s.service_arn, t.type, 'SUCCEEDED',
           'done', 1, s.created_at + t.offset_, s.updated_at, s.created_at + t.offset_
    FROM services s
    CROSS JOIN (VALUES ('CREATE_SERVICE', interval '1 second'),
                       ('DELETE_SERVICE', interval '1 day')) AS t(type, offset_)
    WHERE s.service_id LIKE 'g%%' AND s.status = 'DELETED'
    """,
    # The outbox as the relay leaves it: every row relayed (position, delivered_at), kept
    # until the event retention (7 days) passes, positions after the ones already there.
    """
    INSERT INTO outbox (event_id, account_id, resource_arn, type, payload, occurred_at,
                        position, delivered_at)
    SELECT gen_random_uuid(),
           CASE WHEN i %% 10 = 0 THEN %(account)s
                ELSE lpad((500000000000 + i %% 100)::text, 12, '0') END,
           'arn:aws:apprunner:us-east-1:x:service/grown-' || (i / 10) || '/x',
           'service.status_changed', '{"status": "DELETED"}'::jsonb,
           now() - interval '6 days' + make_interval(secs => i * 0.5),
           (SELECT coalesce(max(position), 0) FROM outbox) + i,
           now() - interval '6 days' + make_interval(secs => i * 0.5)
    FROM generate_series(1, %(outbox)s) i
    """,
    "SELECT setval('outbox_position_seq', (SELECT max(position) FROM outbox))",
    # Certificates unlinked from deleted services, retained until they expire.
    """
    INSERT INTO certificates (certificate_id, account_id, certificate_arn, domain_name, status,
                              validation_records, unlinked_at, expires_at)
    SELECT 'gc' || md5('cert' || i), lpad((500000000000 + i %% 100)::text, 12, '0'),
           'arn:aws:acm:us-east-1:x:certificate/' || md5('cert' || i),
           'd' || i || '.grown.example.com', 'ISSUED', '[]'::jsonb,
           now() - interval '1 day', now() + interval '6 days' - make_interval(secs => i)
    FROM generate_series(1, %(certificates)s) i
    """,
]


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000 if samples else float("nan")


def seed_growth(url: str, sizes: dict[str, int], account: str) -> float:
    """The grown tables, straight into the database; seconds it took."""
    t = time.perf_counter()
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        for sql in GROWTH_SQL:
            conn.execute(sql, {**sizes, "account": account})
        conn.execute("VACUUM ANALYZE services, operations, outbox, certificates")
        # The seed's writes out of the way of the grown phase's (needs superuser or
        # pg_checkpoint; skipped without them).
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")
    return time.perf_counter() - t


async def engine_rate(url: str, jobs: int) -> float:
    from bench_engine import engine_rate as rate

    from servicecontrol_server.adapters.postgres.database import create_engine

    engine = create_engine(url, pool_size=10)
    try:
        return await rate(engine, url, jobs, 4)
    finally:
        await engine.dispose()


async def _timed(call: Callable[[], Awaitable[Any]]) -> float:
    t = time.perf_counter()
    await call()
    return time.perf_counter() - t


async def _throughput(callers: int, seconds: float, call: Callable[[], Awaitable[Any]]) -> float:
    deadline = time.perf_counter() + seconds
    done = 0

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return done / (time.perf_counter() - started)


async def request_path(
    h: Any, reads: list[str], deletes: list[str], n: int, seconds: float
) -> dict[str, float]:
    """Describe and List latency (1 caller) and calls/s (16 callers); one delete at a time
    on an idle system: request latency and request→DELETED."""
    meta = h.meta()

    def describe(i: int) -> Callable[[], Awaitable[Any]]:
        return lambda: h.stub.DescribeService(
            api.DescribeServiceRequest(service_arn=reads[i % len(reads)]), metadata=meta
        )

    def list_page() -> Awaitable[Any]:
        return h.stub.ListServices(api.ListServicesRequest(page_size=20), metadata=meta)

    for i in range(10):  # warm-up
        await describe(i)()
        await list_page()
    describe_s = [await _timed(describe(i)) for i in range(n)]
    list_s = [await _timed(list_page) for _ in range(n)]
    counter = iter(range(10**9))
    describe_rate = await _throughput(16, seconds, lambda: describe(next(counter))())
    list_rate = await _throughput(16, seconds, list_page)
    request_s: list[float] = []
    e2e_s: list[float] = []
    for arn in deletes:
        t = time.perf_counter()
        resp = await h.stub.DeleteService(api.DeleteServiceRequest(service_arn=arn), metadata=meta)
        request_s.append(time.perf_counter() - t)
        op = await h.wait(resp.operation_id)
        e2e_s.append(time.perf_counter() - t)
        assert op.status == pb.Operation.SUCCEEDED, op
        await asyncio.sleep(0.05)  # the next delete meets an idle system
    return {
        "describe_p50_ms": _ms(describe_s),
        "describe_p99_ms": _percentile(describe_s, 0.99) * 1000,
        "list_p50_ms": _ms(list_s),
        "list_p99_ms": _percentile(list_s, 0.99) * 1000,
        "describe_calls_per_s_16": describe_rate,
        "list_calls_per_s_16": list_rate,
        "delete_request_p50_ms": _ms(request_s),
        "delete_to_deleted_p50_ms": _ms(e2e_s),
    }


async def _create_running(h: Any, prefix: str, count: int, image: str) -> list[str]:
    semaphore = asyncio.Semaphore(8)

    async def one(i: int) -> str:
        async with semaphore:
            created = await h.create(f"{prefix}-{i:05d}", image=image)
            op = await h.wait(created.operation_id, timeout=60)
            assert op.status == pb.Operation.SUCCEEDED, op
            return str(created.service.service_arn)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


STAT_SQL = """
    SELECT relname, n_live_tup, n_dead_tup, autovacuum_count, last_autovacuum
    FROM pg_stat_user_tables WHERE relname = ANY(%(tables)s)
"""


async def churn(h: Any, url: str, seconds: float, callers: int, image: str) -> dict[str, Any]:
    """create→delete cycles from `callers` callers for `seconds`, sampling dead tuples."""
    stop = asyncio.Event()
    cycles = 0

    async def cycle_loop(k: int) -> None:
        nonlocal cycles
        i = 0
        while not stop.is_set():
            created = await h.create(f"churn-{k}-{i}", image=image)
            await h.wait(created.operation_id, timeout=60)
            deleted = await h.stub.DeleteService(
                api.DeleteServiceRequest(service_arn=created.service.service_arn),
                metadata=h.meta(),
            )
            await h.wait(deleted.operation_id, timeout=60)
            cycles += 1
            i += 1

    samples: list[dict[str, Any]] = []
    async with await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True) as conn:
        # From a vacuumed state: what the earlier phases left dead is not the churn's.
        await conn.execute(f"VACUUM {', '.join(CHURNING)}")
        first = await _stats(conn)
        loops = [asyncio.create_task(cycle_loop(k)) for k in range(callers)]
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            await asyncio.sleep(min(1.0, seconds / 20))
            samples.append({"t": time.perf_counter() - started, **(await _stats(conn))})
        stop.set()
        await asyncio.gather(*loops)
        last = await _stats(conn)
    tables: dict[str, Any] = {}
    for table in CHURNING:
        dead = [s[table]["dead"] for s in samples]
        live = [s[table]["live"] for s in samples]
        cut = max(1, (2 * len(dead)) // 3)
        early, late = max(dead[:cut], default=0), max(dead[cut:], default=0)
        tables[table] = {
            "max_dead": max(dead, default=0),
            "max_dead_ratio": max(
                (d / (d + lv) for d, lv in zip(dead, live, strict=True) if d + lv), default=0.0
            ),
            "dead_at_end": last[table]["dead"],
            "live_at_end": last[table]["live"],
            "max_dead_first_two_thirds": early,
            "max_dead_last_third": late,
            "autovacuum_runs": last[table]["autovacuum_count"] - first[table]["autovacuum_count"],
            "last_autovacuum": last[table]["last_autovacuum"],
        }
    return {
        "seconds": seconds,
        "callers": callers,
        "cycles": cycles,
        "tables": tables,
        "samples": samples,
    }


async def _stats(conn: Any) -> dict[str, dict[str, Any]]:
    rows = await (await conn.execute(STAT_SQL, {"tables": list(CHURNING)})).fetchall()
    return {
        name: {
            "live": live,
            "dead": dead,
            "autovacuum_count": count,
            "last_autovacuum": last.isoformat() if last else None,
        }
        for name, live, dead, count, last in rows
    }


async def quiet(url: str, timeout: float = 120.0) -> float:
    """Waits (up to `timeout`) until no autovacuum worker runs on the database: the
    seed's aftermath is not what the grown phase measures. Seconds waited."""
    t = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True) as conn:
        while time.perf_counter() - t < timeout:
            cursor = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE backend_type = 'autovacuum worker' AND datname = current_database()"
            )
            row = await cursor.fetchone()
            if not row or row[0] == 0:
                break
            await asyncio.sleep(0.5)
    return time.perf_counter() - t


async def run(quick: bool, rounds: int | None = None) -> dict[str, Any]:
    from common import postgres_server, scratch_database
    from moto.server import ThreadedMotoServer

    tmp = Path(tempfile.mkdtemp(prefix="sc-bench-growth-"))
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    moto.start()
    host, port = moto.get_host_and_port()
    try:
        with (
            postgres_server() as server,
            scratch_database(server) as empty_url,
            scratch_database(server) as grown_url,
        ):
            return await _measure(empty_url, grown_url, f"{host}:{port}", tmp, quick, rounds)
    finally:
        moto.stop()


async def _measure(
    empty_url: str, grown_url: str, endpoint: str, tmp: Path, quick: bool, rounds: int | None
) -> dict[str, Any]:
    """Two databases on one server, one grown: every measurement alternates between them
    round by round, so drift in the machine's load hits both alike; medians of the rounds."""
    from tests.support.server import ACCOUNT, harness_settings, running_harness

    class S3:
        access_key = secret_key = "testing"

    S3.endpoint = endpoint  # type: ignore[attr-defined]
    sizes = QUICK if quick else FULL
    rounds = rounds or (1 if quick else 3)
    jobs = 200 if quick else 5000
    reads = 2 if quick else 20
    n_calls = 10 if quick else 200
    n_deletes = 2 if quick else 20
    seconds = 0.3 if quick else 3.0
    churn_seconds = 1.0 if quick else 180.0
    urls = {"empty": empty_url, "grown": grown_url}
    image = "bench-app:1"
    report: dict[str, Any] = {
        "sizes": sizes,
        "rounds": rounds,
        "load_before": machine()["load_average_1_5_15"],
    }
    samples: dict[str, list[dict[str, float]]] = {"empty": [], "grown": []}
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 2)
        clock = now

    report["seed_seconds"] = seed_growth(grown_url, sizes, ACCOUNT)
    report["quiet_wait_seconds"] = await quiet(grown_url)
    lap("seed")
    for _ in range(rounds):
        for phase, url in urls.items():
            samples[phase].append({"engine_jobs_per_s": await engine_rate(url, jobs)})
    lap("engine")
    settings = {
        phase: harness_settings(
            url,
            S3,
            tmp / phase,
            service_quota=100_000,
            job_poll_seconds=1.0,
            mutation_rate_per_second=0,
        )
        for phase, url in urls.items()
    }
    async with (
        running_harness(settings["empty"], tmp / "empty", workers=2) as empty,
        running_harness(settings["grown"], tmp / "grown", workers=2) as grown,
    ):
        harnesses = {"empty": empty, "grown": grown}
        prepared: dict[str, tuple[list[str], list[str]]] = {}
        for phase, h in harnesses.items():
            h.push_image(image, layers=2, layer_size=256)
            prepared[phase] = (
                await _create_running(h, "read", reads, image),
                await _create_running(h, "del", rounds * n_deletes, image),
            )
        lap("services prepared")
        for r in range(rounds):
            for phase, h in harnesses.items():
                read_arns, delete_arns = prepared[phase]
                batch = delete_arns[r * n_deletes : (r + 1) * n_deletes]
                samples[phase][r].update(await request_path(h, read_arns, batch, n_calls, seconds))
        lap("request path")
        report["churn"] = await churn(grown, grown_url, churn_seconds, 4 if quick else 8, image)
        lap("churn")
    figures = {
        phase: {key: statistics.median(s[key] for s in runs) for key in runs[0]}
        for phase, runs in samples.items()
    }
    report["timings"] = timings
    report["samples"] = samples
    report["figures"] = figures
    report["load_after"] = machine()["load_average_1_5_15"]
    report["rows"] = [r.as_dict() for r in _rows(figures)]
    report["notes"] = _notes(report["churn"], quick)
    return report


MEASURES = [
    # key, measure, unit, higher is better
    ("engine_jobs_per_s", "engine no-op jobs/s, 4 workers", "jobs/s", True),
    ("describe_p50_ms", "DescribeService p50, 1 caller (ms)", "ms", False),
    ("describe_calls_per_s_16", "DescribeService calls/s, 16 callers", "calls/s", True),
    ("list_p50_ms", "ListServices p50, 1 caller (ms)", "ms", False),
    ("list_calls_per_s_16", "ListServices calls/s, 16 callers", "calls/s", True),
    ("delete_request_p50_ms", "DeleteService request p50, idle (ms)", "ms", False),
    ("delete_to_deleted_p50_ms", "request to DELETED p50, idle (ms)", "ms", False),
]


def _rows(figures: dict[str, dict[str, float]]) -> list[Row]:
    return [
        Row(
            "growth",
            f"{measure}, grown vs empty",
            figures["grown"][key],
            unit,
            "empty database",
            figures["empty"][key],
            TARGET_THROUGHPUT if higher else TARGET_LATENCY,
            lower_is_better=not higher,
        )
        for key, measure, unit, higher in MEASURES
    ]


def vacuum_trigger(table: str, live: int) -> float:
    """Dead tuples at which autovacuum becomes due on `table` (its threshold plus its
    scale factor times its live rows: schema.STORAGE_PARAMETERS, else Postgres's
    defaults, 50 and 0.2)."""
    from servicecontrol_server.adapters.postgres.schema import STORAGE_PARAMETERS

    own = STORAGE_PARAMETERS.get(table, {})
    threshold = float(own.get("autovacuum_vacuum_threshold", "50"))
    scale = float(own.get("autovacuum_vacuum_scale_factor", "0.2"))
    return threshold + scale * live


def bounded(table: str, figures: dict[str, Any]) -> bool:
    """Dead tuples stayed within what autovacuum lets pile up before it is due (its
    trigger, with half again for the naptime and the vacuum's own duration)."""
    return bool(figures["max_dead"] <= 1.5 * vacuum_trigger(table, figures["live_at_end"]))


def _notes(churn_report: dict[str, Any], quick: bool) -> list[str]:
    notes = [
        f"churn: {churn_report['cycles']} create→delete cycles in "
        f"{churn_report['seconds']:.0f} s from {churn_report['callers']} callers"
    ]
    for table, t in churn_report["tables"].items():
        trigger = vacuum_trigger(table, t["live_at_end"])
        notes.append(
            f"{table}: max dead {t['max_dead']:,} ({t['max_dead_ratio']:.1%} of the table;"
            f" autovacuum due at {trigger:,.0f}), {t['dead_at_end']:,} dead /"
            f" {t['live_at_end']:,} live at the end, autovacuum ran {t['autovacuum_runs']}×:"
            f" {'bounded' if bounded(table, t) else 'NOT bounded'}"
        )
    if quick:
        notes.append("quick: a churn of seconds shows no autovacuum cycle; see the full run")
    return notes


def main() -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a hundredth of the growth")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--rounds", type=int, help="rounds to take medians of (default 3)")
    args = parser.parse_args()
    report = asyncio.run(run(args.quick, args.rounds))
    for row in report["rows"]:
        meets = {True: "yes", False: "NO", None: ""}[row["meets_target"]]
        print(
            f"{row['measure']:<62} {row['value']:>10.2f} {row['reference']:>10.2f}"
            f" {row['ratio']:>6.2f} {meets}"
        )
    for note in report["notes"]:
        print(note)
    print(f"phases (s): {report['timings']}")
    print(
        f"seeded in {report['seed_seconds']:.1f} s; load {report['load_before']} → "
        f"{report['load_after']}"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
