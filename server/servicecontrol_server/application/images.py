"""Images: pushing `docker save` archives into the source registry, copying an image into
a service's private prefix, and deleting that copy.

Source registry layout (one bucket):
    <repository>/blobs/sha256:<hex>     config and layers, content-addressed
    <repository>/manifests/<tag>        OCI image manifest
A service's copy (under a prefix such as `services/<id>/`):
    <prefix>blobs/sha256:<hex>
    <prefix>manifest.json

Manifests are always written after every blob they reference, so a reader that finds a
manifest finds a complete image, however the writer was interrupted."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from ..domain.names import is_digest, parse_image_identifier
from .ports import ObjectInfo, ObjectNotFound, ObjectStore, ObjectStoreError

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"

# S3 multi-object deletes take at most 1000 keys.
MAX_DELETE_BATCH = 1000

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_OCI_BLOB_PATH = re.compile(r"blobs/sha256/([0-9a-f]{64})")
_CHUNK = 1024 * 1024
# Layer compression, recognised by magic number: docker save writes plain tars today, but
# a compressed layer must not be announced as an uncompressed one.
_COMPRESSION_SUFFIX = ((b"\x1f\x8b", "+gzip"), (b"\x28\xb5\x2f\xfd", "+zstd"))


class ImageNotFound(ObjectNotFound):
    """The image (its manifest or a blob it references) is not in the source registry.
    str() is the identifier, which is what callers report."""

    transient = False

    def __init__(self, identifier: str) -> None:
        super().__init__(identifier)
        self.identifier = identifier


@dataclass(frozen=True)
class PushedImage:
    repository: str
    tag: str
    manifest_digest: str
    objects: int  # distinct blobs plus the manifest
    bytes: int


@dataclass(frozen=True)
class ImageCopy:
    objects: int  # distinct blobs plus the manifest
    bytes: int
    manifest_digest: str


@dataclass(frozen=True)
class Inventory:
    objects: int
    bytes: int


@dataclass(frozen=True)
class _Blob:
    digest: str
    size: int
    media_type: str

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def blob_key(repository: str, digest: str) -> str:
    return f"{repository}/blobs/{digest}"


def manifest_key(repository: str, tag: str) -> str:
    return f"{repository}/manifests/{tag}"


def store_manifest(store: ObjectStore, bucket: str, repository: str, tag: str, body: bytes) -> None:
    """Writes a pushed image's manifest under its digest (content-addressed, so an
    identifier `<repository>@sha256:<digest>` resolves to it) and then under its tag."""
    store.put_bytes(bucket, manifest_key(repository, _sha256(body)), body)
    store.put_bytes(bucket, manifest_key(repository, tag), body)


def _manifest(
    store: ObjectStore, bucket: str, repository: str, reference: str, identifier: str
) -> bytes:
    """The manifest a tag or a digest names. A digest is looked up under its own key,
    then among the repository's tags (images pushed before manifests were also kept by
    digest); what is found must hash to the digest."""
    try:
        body = store.get_bytes(bucket, manifest_key(repository, reference))
    except ObjectNotFound:
        body = None
    if body is None and is_digest(reference):
        for info in store.list_objects(bucket, manifest_key(repository, "")):
            candidate = store.get_bytes(bucket, info.key)
            if _sha256(candidate) == reference:
                body = candidate
                break
    if body is None or (is_digest(reference) and _sha256(body) != reference):
        raise ImageNotFound(identifier)
    return body


def copy_blob_key(prefix: str, digest: str) -> str:
    return f"{prefix}blobs/{digest}"


def copy_manifest_key(prefix: str) -> str:
    return f"{prefix}manifest.json"


def push_docker_archive(
    store: ObjectStore, bucket: str, archive: Path, identifier: str
) -> PushedImage:
    """Pushes the image in a `docker save` archive (legacy or OCI layout) as
    `identifier`. Every blob is hashed before anything is uploaded, so a corrupt archive
    changes nothing; blobs the registry already holds with the same size are not
    uploaded again, so pushing the same archive twice transfers only the manifest."""
    repository, tag = parse_image_identifier(identifier)
    if is_digest(tag):
        raise ValueError(f"push {identifier!r} by tag: its digest is what the push computes")
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = {member.name.removeprefix("./"): member for member in tar.getmembers()}
            entry = _archive_entry(tar, members, archive, identifier)
            config, config_member = _hash_member(tar, members, entry["Config"], None)
            layers: list[_Blob] = []
            sources = {config.digest: config_member}
            for path in entry["Layers"]:
                layer, member = _hash_member(tar, members, path, LAYER_MEDIA_TYPE)
                layers.append(layer)
                sources.setdefault(layer.digest, member)
            sizes = {blob.digest: blob.size for blob in (config, *layers)}
            present = _present_sizes(store, bucket, blob_key(repository, ""), set(sizes))
            for digest, member in sources.items():
                if present.get(digest) != sizes[digest]:
                    _upload(store, bucket, blob_key(repository, digest), tar, member, sizes[digest])
    except tarfile.TarError as exc:
        raise ValueError(f"{archive} is not a readable docker save archive: {exc}") from exc
    body = _manifest_body(config, layers)
    store_manifest(store, bucket, repository, tag, body)
    return PushedImage(
        repository=repository,
        tag=tag,
        manifest_digest=_sha256(body),
        objects=len(sizes) + 1,
        bytes=sum(sizes.values()) + len(body),
    )


def copy_image(
    store: ObjectStore,
    source_bucket: str,
    identifier: str,
    dest_bucket: str,
    dest_prefix: str,
) -> ImageCopy:
    """Copies an image from the source registry into dest_prefix, server-side.
    Idempotent: a retry after a crash copies only the blobs that are still missing."""
    _check_prefix(dest_prefix)
    repository, reference = parse_image_identifier(identifier)
    body = _manifest(store, source_bucket, repository, reference, identifier)
    blobs = _manifest_blobs(body, identifier)
    wanted = {blob.digest for blob in blobs}
    present = _present_sizes(store, dest_bucket, copy_blob_key(dest_prefix, ""), wanted)
    for blob in blobs:
        if present.get(blob.digest) == blob.size:
            continue
        source, target = blob_key(repository, blob.digest), copy_blob_key(dest_prefix, blob.digest)
        try:
            store.copy_object(source_bucket, source, dest_bucket, target)
        except ObjectNotFound as exc:
            raise ImageNotFound(identifier) from exc
    store.put_bytes(dest_bucket, copy_manifest_key(dest_prefix), body)
    return ImageCopy(
        objects=len(blobs) + 1,
        bytes=sum(blob.size for blob in blobs) + len(body),
        manifest_digest=_sha256(body),
    )


def prune_image_copy(
    store: ObjectStore, bucket: str, prefix: str, *, batch_size: int = MAX_DELETE_BATCH
) -> Inventory:
    """Deletes what is under prefix beside the image its manifest names now (the blobs of
    the image it replaced), and returns what was deleted. Idempotent."""
    _check_prefix(prefix)
    manifest = copy_manifest_key(prefix)
    blobs = _manifest_blobs(store.get_bytes(bucket, manifest), prefix)
    keep = {manifest, *(copy_blob_key(prefix, blob.digest) for blob in blobs)}
    objects = size = 0
    stale = (i for i in _within(store.list_objects(bucket, prefix), prefix) if i.key not in keep)
    while batch := list(itertools.islice(stale, batch_size)):
        store.delete_objects(bucket, [info.key for info in batch])
        objects += len(batch)
        size += sum(info.size for info in batch)
    return Inventory(objects=objects, bytes=size)


def manifest_inventory(body: bytes, where: str) -> Inventory:
    """What an image copy holds by its manifest: its distinct blobs and the manifest."""
    blobs = _manifest_blobs(body, where)
    return Inventory(objects=len(blobs) + 1, bytes=sum(b.size for b in blobs) + len(body))


def inventory(store: ObjectStore, bucket: str, prefix: str) -> Inventory:
    """What is stored under prefix, counted from a streamed scan."""
    objects = size = 0
    for info in store.scan_objects(bucket, prefix):
        objects += 1
        size += info.size
    return Inventory(objects=objects, bytes=size)


@dataclass(frozen=True)
class DeleteProgress:
    """How far a delete of an image copy got, saved before each batch is deleted.

    `objects` and `bytes` count every object of the batches begun so far, the current one
    included. `pending` names the current batch (8-byte key digests, hex): objects a
    rerun finds again that are in it were counted already. None when the counts are
    complete (an inventory taken before the delete began)."""

    objects: int
    bytes: int
    pending: str | None

    def as_progress(self) -> dict[str, Any]:
        return {
            "image_objects": self.objects,
            "image_bytes": self.bytes,
            "image_pending": self.pending,
        }

    @classmethod
    def from_progress(cls, progress: dict[str, Any]) -> DeleteProgress | None:
        """None when no delete began. Counts saved without a pending batch (a finished
        count, or a full inventory taken before the delete) are complete."""
        if "image_objects" not in progress:
            return None
        return cls(
            int(progress["image_objects"]),
            int(progress.get("image_bytes", 0)),
            progress.get("image_pending"),
        )


def _key_digest(key: str) -> str:
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def _digests(pending: str | None) -> set[str]:
    if not pending:
        return set()
    return {pending[i : i + 16] for i in range(0, len(pending), 16)}


def delete_image_copy(
    store: ObjectStore,
    bucket: str,
    prefix: str,
    *,
    batch_size: int = MAX_DELETE_BATCH,
    resume: DeleteProgress | None = None,
    save: Callable[[DeleteProgress], None] | None = None,
) -> Inventory:
    """Deletes everything under prefix, including unfinished multipart uploads, and
    returns what was deleted (counted across reruns when `resume` is the progress the
    last run saved through `save`).

    The prefix is scanned once, counting and deleting as it goes: each batch of at most
    `batch_size` keys is counted, its progress saved, then deleted in one call. Memory
    stays bounded by one batch however large the copy. A rerun after a crash anywhere
    counts exactly: objects of the batch in flight were counted before it was deleted,
    and are recognised by their digests. A scan that deleted a full batch before it ended
    is followed by another (which finds nothing, unless a store's scan skipped keys
    deleted under it); a copy smaller than a batch is scanned once.
    Idempotent: once the prefix is empty a rerun deletes nothing and changes no count."""
    _check_prefix(prefix)
    if not 1 <= batch_size <= MAX_DELETE_BATCH:
        raise ValueError(f"batch_size must be between 1 and {MAX_DELETE_BATCH}, not {batch_size}")
    counting = resume is None or resume.pending is not None
    objects = resume.objects if resume else 0
    size = resume.bytes if resume else 0
    # A batch the previous run counted but may not have deleted.
    counted_before = _digests(resume.pending if resume else None)
    rescan = True
    while rescan:
        rescan = False
        listing = iter(store.scan_objects(bucket, prefix))
        while batch := list(itertools.islice(listing, batch_size)):
            # A full batch is deleted while its scan may go on, and a store's scan may
            # skip keys deleted under it: another scan confirms the prefix is empty. A
            # short batch is the scan's last (the listing had ended before its delete).
            rescan = rescan or len(batch) == batch_size
            keys = [info.key for info in batch]
            _check_within(keys, prefix)
            if counting:
                pending = []
                for info in batch:
                    digest = _key_digest(info.key)
                    pending.append(digest)
                    if digest in counted_before:
                        counted_before.discard(digest)
                        continue
                    objects += 1
                    size += info.size
                if save is not None:
                    # Still counted-before digests stay pending: not yet met in this run.
                    save(DeleteProgress(objects, size, "".join([*pending, *counted_before])))
            store.delete_objects(bucket, keys)
    # No final save: a rerun finds nothing left, so the saved counts stand as they are.
    store.abort_incomplete_uploads(bucket, prefix)
    return Inventory(objects=objects, bytes=size)


def _within(listing: Iterable[ObjectInfo], prefix: str) -> Iterable[ObjectInfo]:
    """A store that ignored the prefix must not turn a delete into a bucket wipe."""
    for info in listing:
        if not info.key.startswith(prefix):
            raise ObjectStoreError(f"listing of {prefix!r} returned {info.key!r}")
        yield info


def _check_within(keys: list[str], prefix: str) -> None:
    """As _within, a batch at a time (one C-level pass, no generator step per object),
    before anything of the batch is counted or deleted."""
    if all(map(str.startswith, keys, itertools.repeat(prefix))):
        return
    key = next(key for key in keys if not key.startswith(prefix))
    raise ObjectStoreError(f"listing of {prefix!r} returned {key!r}")


def _present_sizes(
    store: ObjectStore, bucket: str, blobs_prefix: str, wanted: set[str]
) -> dict[str, int]:
    """Sizes of the wanted blobs already stored under blobs_prefix. One listing costs a
    request per thousand keys where checking each blob costs a request per blob; only
    what is wanted is kept, so memory stays bounded by the image, not the prefix."""
    present: dict[str, int] = {}
    for info in store.list_objects(bucket, blobs_prefix):
        digest = info.key[len(blobs_prefix) :]
        if digest in wanted:
            present[digest] = info.size
    return present


def _check_prefix(prefix: str) -> None:
    if not prefix or not prefix.endswith("/") or not prefix.strip("/"):
        raise ValueError(
            f"invalid image copy prefix {prefix!r}: it must be non-empty and end with '/'"
        )


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _manifest_body(config: _Blob, layers: list[_Blob]) -> bytes:
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    return json.dumps(manifest, separators=(",", ":")).encode()


def _manifest_blobs(body: bytes, identifier: str) -> list[_Blob]:
    """The distinct blobs a manifest references. Digests become object keys, so anything
    that is not a plain sha256 digest is refused rather than used in a key."""
    try:
        manifest = json.loads(body)
        descriptors = [manifest["config"], *manifest["layers"]]
        blobs: dict[str, _Blob] = {}
        for descriptor in descriptors:
            digest, size = descriptor["digest"], descriptor["size"]
            if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
                raise ValueError(f"bad digest {digest!r}")
            if not isinstance(size, int) or size < 0:
                raise ValueError(f"bad size {size!r}")
            blobs.setdefault(digest, _Blob(digest, size, str(descriptor.get("mediaType", ""))))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"the manifest of {identifier} is corrupt: {exc}") from exc
    return list(blobs.values())


def _archive_entry(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], archive: Path, identifier: str
) -> dict[str, Any]:
    """The image to push from the archive's manifest.json: the only one, or the one
    tagged as identifier when the archive holds several."""
    if "manifest.json" not in members:
        raise ValueError(f"{archive} is not a docker save archive: it has no manifest.json")
    try:
        entries = json.loads(_read_member(tar, members["manifest.json"]))
    except ValueError as exc:
        raise ValueError(f"{archive}: manifest.json is not valid JSON: {exc}") from exc
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{archive}: manifest.json lists no image")
    if len(entries) > 1:
        wanted = identifier if ":" in identifier else f"{identifier}:latest"
        entries = [
            e for e in entries if isinstance(e, dict) and wanted in (e.get("RepoTags") or [])
        ]
        if len(entries) != 1:
            raise ValueError(f"{archive} holds several images and none is tagged {wanted}")
    entry = entries[0]
    if not isinstance(entry, dict):
        raise ValueError(f"{archive}: manifest.json entry is not an object")
    config, layers = entry.get("Config"), entry.get("Layers")
    if not isinstance(config, str) or not isinstance(layers, list):
        raise ValueError(f"{archive}: manifest.json entry lacks Config or Layers")
    for path in (config, *layers):
        if not isinstance(path, str) or path.removeprefix("./") not in members:
            raise ValueError(f"{archive}: manifest.json references {path!r}, which is missing")
    return entry


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    with _open_member(tar, member) as stream:
        return stream.read()


def _open_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> BinaryIO:
    stream = tar.extractfile(member)  # follows links: legacy archives link shared layers
    if stream is None:
        raise ValueError(f"{member.name} is not a regular file")
    return cast(BinaryIO, stream)


def _upload(
    store: ObjectStore,
    bucket: str,
    key: str,
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    size: int,
) -> None:
    with _open_member(tar, member) as stream:
        store.put_object(bucket, key, stream, size)


def _hash_member(
    tar: tarfile.TarFile,
    members: dict[str, tarfile.TarInfo],
    path: str,
    layer_media_type: str | None,
) -> tuple[_Blob, tarfile.TarInfo]:
    """The descriptor of one archive member, from a streamed pass over its content."""
    member = members[path.removeprefix("./")]
    hasher = hashlib.sha256()
    size = 0
    head = b""
    with _open_member(tar, member) as stream:
        while chunk := stream.read(_CHUNK):
            if not head:
                head = chunk[:4]
            hasher.update(chunk)
            size += len(chunk)
    digest = "sha256:" + hasher.hexdigest()
    named = _OCI_BLOB_PATH.fullmatch(path.removeprefix("./"))
    if named and named.group(1) != hasher.hexdigest():
        raise ValueError(f"{path} is corrupt: its content hashes to {digest}")
    if layer_media_type is None:
        media_type = CONFIG_MEDIA_TYPE
    else:
        media_type = layer_media_type + next(
            (suffix for magic, suffix in _COMPRESSION_SUFFIX if head.startswith(magic)), ""
        )
    return _Blob(digest, size, media_type), member
