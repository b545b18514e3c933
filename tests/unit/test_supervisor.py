"""What `serve` hands its worker processes: its settings as it resolved them (so a worker
runs exactly as an in-process one would), and a place for their metrics, which the
server's /metrics adds to its own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from servicecontrol_server import metrics
from servicecontrol_server.settings import Settings
from servicecontrol_server.supervisor import WorkerSupervisor, child_environment, in_processes


def test_a_worker_process_reads_back_the_servers_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SERVICECONTROL_S3_ENDPOINT", "from-the-environment:9000")
    server = Settings(
        data_dir=tmp_path,
        s3_endpoint="flag:9000",
        insecure=True,
        job_lease_seconds=7.5,
        workers_in_server=5,
        dns_zone_file=None,
        log_level="DEBUG",
        mutation_rate_per_second=0,
    )
    env = child_environment(server, "postgresql://u@h/embedded", json_logs=False)
    for key in [k for k in os.environ if k.startswith("SERVICECONTROL_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    worker = Settings()
    expected = server.model_dump() | {
        "database_url": "postgresql://u@h/embedded",
        "migrate_on_start": False,
        "log_format": "text",
    }
    assert worker.model_dump() == expected
    assert "SERVICECONTROL_DNS_ZONE_FILE" not in env


def test_process_mode_is_the_default_and_needs_workers() -> None:
    assert in_processes(Settings())
    assert not in_processes(Settings(workers_in_server=0))
    assert not in_processes(Settings(worker_mode="in-process"))


def test_the_worker_command_names_its_server_and_number(tmp_path: Path) -> None:
    supervisor = WorkerSupervisor(
        Settings(workers_in_server=3, worker_processes=2),
        "postgresql://x",
        json_logs=True,
        metrics_dir=tmp_path,
    )
    command = supervisor.command(2)
    assert command[1:3] == ["-m", "servicecontrol_server"]
    assert command[command.index("--concurrency") + 1] == "3"
    assert command[command.index("--worker-index") + 1] == "2"
    assert supervisor.env["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path)
    assert supervisor.env["SERVICECONTROL_LOG_FORMAT"] == "json"


def test_scrapes_add_the_worker_processes_counters_to_the_servers(tmp_path: Path) -> None:
    labels = ("create_service", "succeeded")
    ours = metrics.JOBS.labels(*labels)
    ours.inc()
    own = ours._value.get()
    for pid, value in ((101, 3.0), (102, 4.0)):  # a live worker and one that died
        files = MmapedDict(str(tmp_path / f"counter_{pid}.db"))
        # As prometheus_client keys a counter's sample in a process's file.
        key = mmap_key(
            "servicecontrol_jobs",
            "servicecontrol_jobs_total",
            ["kind", "outcome"],
            list(labels),
            "jobs",
        )
        files.write_value(key, value, 0.0)
        files.close()
    metrics.include_worker_processes(tmp_path)
    try:
        text = metrics.exposition().decode()
    finally:
        metrics.include_worker_processes(None)
    line = 'servicecontrol_jobs_total{kind="create_service",outcome="succeeded"} '
    (sample,) = [row for row in text.splitlines() if row.startswith(line)]
    assert float(sample[len(line) :]) == own + 7.0
    assert text.count("# TYPE servicecontrol_jobs_total counter") == 1
    # Without worker processes, the server's own only.
    alone = metrics.exposition().decode()
    (sample,) = [row for row in alone.splitlines() if row.startswith(line)]
    assert float(sample[len(line) :]) == own
