"""`scctl` as people use a CLI: help on every flag, profiles, output formats and --query,
services by name, endpoints as URLs, clear one-line failures with their own exit codes,
shell completion, a confirmation before a delete on a terminal, and a Ctrl-C during a
wait that says how to resume. Each runs scctl as a real process."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pty
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from servicecontrol_client import __version__, cli
from servicecontrol_client.cli import build_parser
from tests.e2e.test_scctl import SCCTL, Run, read_all, scctl, scctl_env
from tests.support.images import build_docker_archive
from tests.support.server import ACCOUNT, Harness, harness_settings, running_harness
from tests.support.waiting import wait_until

GLOBAL_FLAGS = {
    "--endpoint",
    "--api-key",
    "--tls",
    "--ca-file",
    "--cert-file",
    "--key-file",
    "--output",
    "--query",
    "--timeout",
    "--region",
    "--profile",
}


def _parsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(parser.prog, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


def test_every_flag_has_help_and_global_flags_are_documented_once() -> None:
    parsers = _parsers(build_parser())
    assert len(parsers) > 20
    for prog, parser in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            flag = next(iter(action.option_strings), action.dest)
            if prog != "scctl" and flag in GLOBAL_FLAGS:
                assert action.help == argparse.SUPPRESS, f"{prog} {flag} is documented again"
            else:
                assert action.help and action.help != argparse.SUPPRESS, f"{prog} {flag}"
    top = build_parser().format_help()
    assert all(flag in top for flag in GLOBAL_FLAGS)
    assert "exit codes:" in top and "6    the server could not be reached" in top


async def test_version_and_completion_scripts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version = await scctl(None, "--version", env=scctl_env(None))
    assert (version.code, version.stdout.strip()) == (0, f"scctl {__version__}")
    for shell, marker in (("bash", "complete "), ("zsh", "compdef"), ("fish", "complete ")):
        assert cli.main(["completion", shell]) == 0
        script = capsys.readouterr().out
        assert marker in script and "scctl" in script
    # What the scripts ask scctl for: the candidates of the word being completed.
    out = tmp_path / "candidates"
    env = scctl_env(
        None,
        _ARGCOMPLETE="1",
        COMP_LINE="scctl services de",
        COMP_POINT=str(len("scctl services de")),
        _ARGCOMPLETE_STDOUT_FILENAME=str(out),
    )
    completed = await scctl(None, env=env)
    assert completed.code == 0, completed.stderr
    assert set(out.read_text().split()) == {"delete", "describe"}


async def test_output_formats_and_query(harness: Harness) -> None:
    await harness.running_service("fmt-web")
    listing = ["services", "list"]
    text = await scctl(harness, *listing, "--query", "services[].serviceName", "--output", "text")
    assert (text.code, text.stdout.strip()) == (0, "fmt-web")
    as_yaml = await scctl(harness, *listing, "--output", "yaml")
    assert yaml.safe_load(as_yaml.stdout)["services"][0]["status"] == "RUNNING"
    table = await scctl(
        harness,
        *listing,
        "--output",
        "table",
        "--query",
        "services[].{name: serviceName, status: status}",
    )
    assert table.stdout.split("\n")[0].split() == ["NAME", "STATUS"]
    assert table.stdout.split("\n")[2].split() == ["fmt-web", "RUNNING"]
    bad = await scctl(harness, *listing, "--query", "services[")
    assert bad.code == 2 and "--query" in bad.stderr and "Traceback" not in bad.stderr


async def test_services_are_addressed_by_name_or_arn(harness: Harness) -> None:
    service = await harness.running_service("named-web")
    by_name = await scctl(harness, "services", "describe", "--service", "named-web")
    assert by_name.code == 0, by_name.stderr
    assert by_name.json()["service"]["serviceArn"] == service.service_arn
    by_arn = await scctl(harness, "services", "describe", "--service-arn", service.service_arn)
    assert by_arn.json() == by_name.json()
    missing = await scctl(harness, "services", "describe", "--service", "nobody-web")
    assert missing.code == 3
    assert "no service named 'nobody-web' in the key's account" in missing.stderr


async def test_profiles_hold_the_connection_settings(harness: Harness, tmp_path: Path) -> None:
    config = tmp_path / "scctl.ini"
    env = scctl_env(None, SCCTL_CONFIG_FILE=str(config))
    for key, value in (
        ("endpoint", f"http://127.0.0.1:{harness.port}"),
        ("api_key", harness.keys[ACCOUNT].token),
        ("output", "text"),
    ):
        done = await scctl(None, "configure", "set", key, value, "--profile", "local", env=env)
        assert done.code == 0, done.stderr
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    await harness.running_service("profiled-web")
    listed = await scctl(
        None, "--profile", "local", "services", "list", "--query", "services[].status", env=env
    )
    assert (listed.code, listed.stdout.strip()) == (0, "RUNNING")
    # A flag wins over the profile.
    as_json = await scctl(
        None, "--profile", "local", "services", "list", "--output", "json", env=env
    )
    assert as_json.json()["services"][0]["serviceName"] == "profiled-web"
    shown = await scctl(None, "configure", "list", "--profile", "local", env=env)
    assert f"endpoint   http://127.0.0.1:{harness.port}" in shown.stdout

    # `scctl configure` prompts; Enter keeps a value. Here stdin is a pipe.
    prompted = await _scctl_with_input(
        ["configure", "--profile", "other"], "127.0.0.1:1\n\nyaml\n\n", env
    )
    assert prompted.code == 0, prompted.stderr
    got = await scctl(None, "configure", "get", "output", "--profile", "other", env=env)
    assert got.stdout.strip() == "yaml"

    unknown = await scctl(None, "--profile", "nope", "services", "list", env=env)
    assert unknown.code == 2
    assert unknown.stderr.strip().count("\n") == 0 and "scctl configure --profile nope" in (
        unknown.stderr
    )


async def test_endpoint_urls_and_tls_files_fail_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("SCCTL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SCCTL_CONFIG_FILE", str(tmp_path / "none"))
    cases: list[tuple[list[str], str]] = [
        (["--endpoint", "ftp://127.0.0.1:1"], "the scheme must be http:// (plaintext) or https://"),
        (["--ca-file", str(tmp_path / "missing.pem")], "missing.pem: No such file or directory"),
        (
            ["--endpoint", "http://127.0.0.1:1", "--ca-file", str(tmp_path / "ca.pem")],
            "use https:// for TLS",
        ),
    ]
    for flags, wanted in cases:
        assert cli.main(["services", "list", *flags]) == 2, flags
        err = capsys.readouterr().err
        assert wanted in err and err.count("\n") == 1, err
    env = scctl_env(None)
    # http:// is plaintext: it reaches a plaintext endpoint's port (nobody there: exit 6).
    plain = await scctl(None, "services", "list", "--endpoint", "http://127.0.0.1:1", env=env)
    assert plain.code == 6 and "(plaintext)" in plain.stderr
    secure = await scctl(None, "services", "list", "--endpoint", "https://127.0.0.1:1", env=env)
    assert secure.code == 6 and "(TLS)" in secure.stderr


async def _scctl_with_input(args: list[str], text: str, env: dict[str, str]) -> Run:
    proc = await asyncio.create_subprocess_exec(
        str(SCCTL),
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(text.encode()), 60)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def _on_a_terminal(args: list[str], env: dict[str, str], answer: str) -> tuple[int, str]:
    """Runs scctl with stdin and stderr on a pseudo-terminal, answering its prompt."""
    leader, follower = pty.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            str(SCCTL),
            *args,
            env=env,
            stdin=follower,
            stdout=asyncio.subprocess.PIPE,
            stderr=follower,
        )
        os.close(follower)
        seen = b""
        loop = asyncio.get_running_loop()
        while b"[y/N]" not in seen:
            seen += await asyncio.wait_for(loop.run_in_executor(None, os.read, leader, 4096), 30)
        os.write(leader, answer.encode() + b"\n")
        await asyncio.wait_for(proc.wait(), 60)
        screen = seen.decode() + read_all(leader)
    finally:
        os.close(leader)
    assert proc.returncode is not None
    return proc.returncode, screen


async def test_delete_on_a_terminal_shows_the_plan_and_asks(harness: Harness) -> None:
    service = await harness.running_service("asked-web")
    args = ["services", "delete", "--service", "asked-web"]
    code, screen = await _on_a_terminal(args, scctl_env(harness), "n")
    assert code == 1, screen
    assert f"Deleting asked-web ({service.service_arn}) will:" in screen
    assert "not deleted" in screen
    assert (await harness.describe(service.service_arn)).status == service.RUNNING

    code, screen = await _on_a_terminal(args, scctl_env(harness), "y")
    assert code == 0, screen
    described = await harness.describe(service.service_arn)
    assert described.status in (described.OPERATION_IN_PROGRESS, described.DELETED)


async def test_yes_deletes_on_a_terminal_without_asking(harness: Harness) -> None:
    service = await harness.running_service("unasked-web")
    leader, follower = pty.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            str(SCCTL),
            *["services", "delete", "--service", "unasked-web", "--yes"],
            env=scctl_env(harness),
            stdin=follower,
            stdout=asyncio.subprocess.PIPE,
            stderr=follower,
        )
        os.close(follower)
        await asyncio.wait_for(proc.wait(), 60)
        screen = read_all(leader)
    finally:
        os.close(leader)
    assert proc.returncode == 0, screen
    assert "[y/N]" not in screen and "will:" not in screen
    described = await harness.describe(service.service_arn)
    assert described.status in (described.OPERATION_IN_PROGRESS, described.DELETED)


async def test_ctrl_c_during_a_wait_prints_the_command_that_resumes_it(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    settings = harness_settings(database_url, s3_server, tmp_path)
    # No workers: the operation stays PENDING, so the wait goes on until interrupted.
    async with running_harness(settings, tmp_path, workers=0) as h:
        h.push_image()
        log = tmp_path / "stderr"
        with log.open("wb") as sink:
            proc = await asyncio.create_subprocess_exec(
                str(SCCTL),
                "services",
                "create",
                "--service-name",
                "waiting-web",
                "--image-identifier",
                "hello-web:1.0",
                "--wait",
                env=scctl_env(h),
                stdout=asyncio.subprocess.PIPE,
                stderr=sink,
            )
            await wait_until(lambda: "PENDING" in log.read_text(), timeout=30)
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), 30)
        text = log.read_text()
        assert proc.returncode == 130, text
        op_id = text.split()[1]
        assert "goes on. Resume waiting with:" in text
        assert f"  scctl operations wait --operation-id {op_id}\n" in text
        assert "Traceback" not in text
        # The operation is still there to wait on.
        described = await scctl(h, "operations", "describe", "--operation-id", op_id)
        assert json.loads(described.stdout)["operation"]["status"] == "PENDING"


async def test_images_push_draws_a_progress_bar_on_a_terminal(harness: Harness) -> None:
    archive = build_docker_archive(
        harness.tmp / "bar.tar", layers=2, layer_size=3 * 1048576, legacy=False, repo_tag="bar:1"
    )
    leader, follower = pty.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            str(SCCTL),
            "images",
            "push",
            str(archive),
            "bar:1",
            env=scctl_env(harness),
            stdout=asyncio.subprocess.PIPE,
            stderr=follower,
        )
        os.close(follower)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        screen = read_all(leader)
    finally:
        os.close(leader)
    assert proc.returncode == 0, screen
    assert json.loads(out)["imageIdentifier"] == "bar:1"
    frames = [f.strip() for f in screen.split("\r\x1b[2K")[1:]]
    assert frames[0].startswith("pushing bar:1 [") and "0%" in frames[0]
    assert frames[-1].endswith("100% 6.0/6.0 MiB"), frames[-1]
