"""Images on the client's side of a push: a `docker save` archive (either layout docker
writes), or a small generated sample, as blobs with their sha256 digests. Content is read
in chunks, never whole: an archive may be larger than memory."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

# Under the server's default 1 MiB message limit, with room for the rest of the message.
CHUNK_SIZE = 512 * 1024
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
_OCI_BLOB_PATH = re.compile(r"blobs/sha256/([0-9a-f]{64})")
_COMPRESSION_SUFFIX = ((b"\x1f\x8b", "+gzip"), (b"\x28\xb5\x2f\xfd", "+zstd"))


@dataclass(frozen=True)
class LocalBlob:
    digest: str
    size: int
    media_type: str
    open: Callable[[], IO[bytes]]


@dataclass(frozen=True)
class LocalImage:
    config: LocalBlob
    layers: list[LocalBlob]

    def blobs(self) -> list[LocalBlob]:
        """Distinct blobs, config first: what a push sends."""
        seen: dict[str, LocalBlob] = {}
        for blob in (self.config, *self.layers):
            seen.setdefault(blob.digest, blob)
        return list(seen.values())

    @property
    def size(self) -> int:
        return sum(blob.size for blob in self.blobs())


@contextlib.contextmanager
def docker_archive(path: Path, identifier: str) -> Iterator[LocalImage]:
    """The image in a `docker save` archive, hashed in one streamed pass. Raises
    ValueError (with the archive's name) for anything that is not such an archive."""
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {member.name.removeprefix("./"): member for member in tar.getmembers()}
            entry = _entry(tar, members, path, identifier)
            config = _blob(tar, members, entry["Config"], None)
            layers = [_blob(tar, members, layer, LAYER_MEDIA_TYPE) for layer in entry["Layers"]]
            yield LocalImage(config, layers)
    except tarfile.TarError as exc:
        raise ValueError(f"{path} is not a readable docker save archive: {exc}") from exc


def sample_image(identifier: str, *, layers: int = 2, layer_size: int = 4096) -> LocalImage:
    """A small image made here: each layer a tar holding one file of layer_size bytes."""
    contents = []
    for index in range(layers):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            data = hashlib.sha256(f"{identifier} {index}".encode()).digest()
            data = (data * (layer_size // len(data) + 1))[:layer_size]
            info = tarfile.TarInfo(f"layer-{index}/content")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        contents.append(buffer.getvalue())
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/serve"], "Env": ["PORT=8080"]},
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(c).hexdigest() for c in contents],
            },
        },
        sort_keys=True,
    ).encode()
    return LocalImage(
        _memory_blob(config, ""), [_memory_blob(c, LAYER_MEDIA_TYPE) for c in contents]
    )


def _memory_blob(data: bytes, media_type: str) -> LocalBlob:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return LocalBlob(digest, len(data), media_type, lambda: io.BytesIO(data))


def _entry(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], path: Path, identifier: str
) -> dict[str, Any]:
    if "manifest.json" not in members:
        raise ValueError(f"{path} is not a docker save archive: it has no manifest.json")
    try:
        entries = json.loads(_open(tar, members["manifest.json"]).read())
    except ValueError as exc:
        raise ValueError(f"{path}: manifest.json is not valid JSON: {exc}") from exc
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: manifest.json lists no image")
    if len(entries) > 1:
        wanted = identifier if ":" in identifier else f"{identifier}:latest"
        entries = [
            e for e in entries if isinstance(e, dict) and wanted in (e.get("RepoTags") or [])
        ]
        if len(entries) != 1:
            raise ValueError(f"{path} holds several images and none is tagged {wanted}")
    entry = entries[0]
    config, layers = (
        (entry.get("Config"), entry.get("Layers"))
        if isinstance(entry, dict)
        else (
            None,
            None,
        )
    )
    if not isinstance(config, str) or not isinstance(layers, list):
        raise ValueError(f"{path}: manifest.json entry lacks Config or Layers")
    for name in (config, *layers):
        if not isinstance(name, str) or name.removeprefix("./") not in members:
            raise ValueError(f"{path}: manifest.json references {name!r}, which is missing")
    return cast(dict[str, Any], entry)


def _open(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    stream = tar.extractfile(member)  # follows links: legacy archives link shared layers
    if stream is None:
        raise ValueError(f"{member.name} is not a regular file")
    return stream


def _blob(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str, media_type: str | None
) -> LocalBlob:
    member = members[name.removeprefix("./")]
    hasher = hashlib.sha256()
    size = 0
    head = b""
    with _open(tar, member) as stream:
        while chunk := stream.read(CHUNK_SIZE):
            head = head or chunk[:4]
            hasher.update(chunk)
            size += len(chunk)
    named = _OCI_BLOB_PATH.fullmatch(name.removeprefix("./"))
    if named and named.group(1) != hasher.hexdigest():
        raise ValueError(f"{name} is corrupt: its content hashes to sha256:{hasher.hexdigest()}")
    if media_type is not None:
        media_type += next((s for magic, s in _COMPRESSION_SUFFIX if head.startswith(magic)), "")
    return LocalBlob(
        "sha256:" + hasher.hexdigest(), size, media_type or "", lambda: _open(tar, member)
    )
