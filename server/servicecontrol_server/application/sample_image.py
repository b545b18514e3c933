"""Builds `docker save` archives with random layers, in either layout docker writes: the
sample image of `servicecontrol images push --sample`, and images of any number and size
of objects for tests and benchmarks."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class _Layer:
    digest: str  # sha256:<hex> of the layer tar
    size: int
    file: Path


class _RandomBytes(io.RawIOBase):
    """`size` random bytes, produced as read: a layer never has to fit in memory."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return os.urandom(n)


def build_docker_archive(
    path: Path,
    *,
    layers: int,
    layer_size: int,
    legacy: bool,
    repo_tag: str,
    repeat_first_layer: bool = False,
) -> Path:
    """Writes a `docker save` archive at path and returns path.

    legacy=True: `manifest.json`, `<config hex>.json`, `<layer id>/layer.tar` (docker before
    25); False: the OCI layout docker 25+ writes (`index.json`, `blobs/sha256/<hex>`) with
    its `manifest.json` pointing into blobs/. Each layer is a tar holding one file of
    layer_size random bytes. repeat_first_layer appends the first layer again, as images
    with identical layers have (a symlinked layer.tar in the legacy layout)."""
    if ":" not in repo_tag.rpartition("/")[2]:
        repo_tag += ":latest"
    repository, _, tag = repo_tag.rpartition(":")
    # Layers go through files, not memory: an archive may be bigger than RAM.
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        built = [_layer_tar(Path(scratch), index, layer_size) for index in range(layers)]
        order = built + built[:1] if repeat_first_layer else built
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Cmd": ["/serve"], "Env": ["PORT=8080"]},
                "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in order]},
                "history": [{"created_by": f"layer {i}"} for i in range(len(order))],
            },
            sort_keys=True,
        ).encode()
        config_hex = hashlib.sha256(config).hexdigest()
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
            if legacy:
                _legacy_layout(tar, order, config, config_hex, repo_tag, repository, tag)
            else:
                _oci_layout(tar, order, config, config_hex, repo_tag, repository, tag)
    return path


def _layer_tar(scratch: Path, index: int, size: int) -> _Layer:
    file = scratch / f"layer-{index}.tar"
    with tarfile.open(file, "w", format=tarfile.PAX_FORMAT) as layer:
        info = tarfile.TarInfo(f"app/layer-{index}.bin")
        info.size = size
        info.mode = 0o644
        layer.addfile(info, _RandomBytes(size))
    hasher = hashlib.sha256()
    with file.open("rb") as stream:
        while chunk := stream.read(1024 * 1024):
            hasher.update(chunk)
    return _Layer("sha256:" + hasher.hexdigest(), file.stat().st_size, file)


def _add(tar: tarfile.TarFile, name: str, data: bytes | _Layer) -> None:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    if isinstance(data, _Layer):
        info.size = data.size
        with data.file.open("rb") as stream:
            tar.addfile(info, stream)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _legacy_layout(
    tar: tarfile.TarFile,
    layers: list[_Layer],
    config: bytes,
    config_hex: str,
    repo_tag: str,
    repository: str,
    tag: str,
) -> None:
    paths: list[str] = []
    first_path: dict[str, str] = {}
    parent = ""
    for layer in layers:
        # v1 layer ids chain on the parent, so they never equal the layer digest.
        layer_id = hashlib.sha256(f"{parent}\n{layer.digest}".encode()).hexdigest()
        _add_dir(tar, layer_id)
        _add(tar, f"{layer_id}/VERSION", b"1.0")
        _add(tar, f"{layer_id}/json", _json({"id": layer_id, "parent": parent or None}))
        path = f"{layer_id}/layer.tar"
        if layer.digest in first_path:
            link = tarfile.TarInfo(path)
            link.type = tarfile.SYMTYPE
            link.linkname = f"../{first_path[layer.digest]}"
            tar.addfile(link)
        else:
            _add(tar, path, layer)
            first_path[layer.digest] = path
        paths.append(path)
        parent = layer_id
    _add(tar, f"{config_hex}.json", config)
    _add(
        tar,
        "manifest.json",
        _json([{"Config": f"{config_hex}.json", "RepoTags": [repo_tag], "Layers": paths}]),
    )
    _add(tar, "repositories", _json({repository: {tag: parent}}))


def _oci_layout(
    tar: tarfile.TarFile,
    layers: list[_Layer],
    config: bytes,
    config_hex: str,
    repo_tag: str,
    repository: str,
    tag: str,
) -> None:
    _add_dir(tar, "blobs")
    _add_dir(tar, "blobs/sha256")
    written: set[str] = set()
    for layer in layers:
        if layer.digest not in written:
            _add(tar, f"blobs/sha256/{layer.digest.removeprefix('sha256:')}", layer)
            written.add(layer.digest)
    _add(tar, f"blobs/sha256/{config_hex}", config)
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": f"sha256:{config_hex}",
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer.digest,
                    "size": layer.size,
                }
                for layer in layers
            ],
        }
    )
    manifest_hex = hashlib.sha256(manifest).hexdigest()
    _add(tar, f"blobs/sha256/{manifest_hex}", manifest)
    _add(
        tar,
        "index.json",
        _json(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": f"sha256:{manifest_hex}",
                        "size": len(manifest),
                        "annotations": {
                            "io.containerd.image.name": repo_tag,
                            "org.opencontainers.image.ref.name": tag,
                        },
                    }
                ],
            }
        ),
    )
    _add(tar, "oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
    _add(
        tar,
        "manifest.json",
        _json(
            [
                {
                    "Config": f"blobs/sha256/{config_hex}",
                    "RepoTags": [repo_tag],
                    "Layers": [
                        f"blobs/sha256/{layer.digest.removeprefix('sha256:')}" for layer in layers
                    ],
                }
            ]
        ),
    )
    _add(tar, "repositories", _json({repository: {tag: manifest_hex}}))
