"""Crash points for chaos testing. `SERVICECONTROL_CRASH_AT=<name>` makes the process
kill itself with SIGKILL when it reaches the checkpoint of that name, the way a power cut
or an OOM kill would: no cleanup, no lease release, no rollback message to Postgres.

Unset (always, in production), a checkpoint is one dictionary lookup."""

from __future__ import annotations

import os
import signal

ENV = "SERVICECONTROL_CRASH_AT"


def armed() -> str:
    return os.environ.get(ENV, "")


def checkpoint(name: str) -> None:
    if armed() == name:
        os.kill(os.getpid(), signal.SIGKILL)
