"""The few lines `servicecontrol serve` prints on a terminal once it is ready: where each
endpoint listens, where data lives, which account calls act in, and what to try next."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Endpoints:
    grpc: str
    aws: str | None
    metrics: str | None
    data_dir: Path
    account: str
    credentials_path: Path | None = None
    console: str | None = None


def describe_account(account: str, credentials_path: Path | None = None) -> str:
    """The banner's account line: the account, and where its key is once there is one."""
    if credentials_path is None:
        return account
    return f"{account} (key in {credentials_path})"


def lines(version: str, endpoints: Endpoints) -> list[str]:
    rows = [("gRPC", endpoints.grpc)]
    if endpoints.aws:
        rows.append(("App Runner", f"http://{endpoints.aws}"))
    if endpoints.console:
        rows.append(("console", f"http://{endpoints.console}/"))
    if endpoints.metrics:
        rows.append(("metrics", f"http://{endpoints.metrics}/metrics"))
    rows.append(("data dir", str(endpoints.data_dir)))
    rows.append(("account", describe_account(endpoints.account, endpoints.credentials_path)))
    rows.append(("try", f"scctl --endpoint {endpoints.grpc} services list"))
    width = max(len(name) for name, _ in rows)
    return [f"ServiceControl {version} is ready"] + [
        f"  {name:<{width}}  {value}" for name, value in rows
    ]
