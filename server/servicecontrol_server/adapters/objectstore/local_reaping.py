"""What the local-directory store's `reap_stale_uploads` removes: the groups of staged
objects under a prefix (one directory each) whose newest file is older than the cutoff,
and partly written files (`.uploads/…​.part`) of writers that died before the cutoff. A
group is reaped whole or not at all, so a resumable upload keeps every part it has until
it has been left alone for the whole retention."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def reap_groups(directory: Path, cutoff: float) -> int:
    """Under `directory`, every entry (a group's directory, or a lone file) whose newest
    file was modified before `cutoff` (a POSIX timestamp) is removed; returns how many
    files went."""
    removed = 0
    if not directory.is_dir():
        return 0
    for entry in os.scandir(directory):
        if entry.is_dir(follow_symlinks=False):
            files = [
                os.path.join(parent, name)
                for parent, _dirs, names in os.walk(entry.path)
                for name in names
            ]
        else:
            files = [entry.path]
        newest = max((_mtime(path) for path in files), default=0.0)
        if newest >= cutoff:
            continue
        for path in files:
            removed += _unlink(path)
        if entry.is_dir(follow_symlinks=False):
            prune(Path(entry.path))
    return removed


def reap_partial_files(directory: Path, suffix: str, cutoff: float) -> int:
    """Files ending in `suffix` under `directory` modified before `cutoff`: writes that
    never finished (a write in progress keeps touching its file)."""
    removed = 0
    if not directory.is_dir():
        return 0
    for parent, _dirs, names in os.walk(directory):
        for name in names:
            path = os.path.join(parent, name)
            if name.endswith(suffix) and _mtime(path) < cutoff:
                removed += _unlink(path)
    for parent, _dirs, _names in os.walk(directory, topdown=False):
        if parent != str(directory):
            with contextlib.suppress(OSError):
                os.rmdir(parent)
    return removed


def prune(top: Path) -> None:
    """Removes `top` and the directories below it that are empty."""
    for parent, _dirs, _names in os.walk(top, topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(parent)


def _mtime(path: str) -> float:
    try:
        return os.stat(path, follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return 0.0


def _unlink(path: str) -> int:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return 0
    return 1
