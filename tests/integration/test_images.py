"""Images against real stores: pushing `docker save` archives, copying an image into a
service's prefix, and deleting that copy without touching anything else."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from servicecontrol_server.application.images import (
    ImageCopy,
    ImageNotFound,
    Inventory,
    PushedImage,
    copy_image,
    delete_image_copy,
    inventory,
    parse_image_identifier,
    push_docker_archive,
)
from servicecontrol_server.application.ports import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
)
from tests.support.faults import FlakyObjectStore
from tests.support.images import build_docker_archive
from tests.support.s3 import StoreUnderTest


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def keys(store: ObjectStore, bucket: str, prefix: str) -> list[str]:
    return [info.key for info in store.list_objects(bucket, prefix)]


def archive(
    tmp_path: Path,
    *,
    layers: int = 2,
    layer_size: int = 300,
    legacy: bool = False,
    repo_tag: str = "hello-web:1.0",
    repeat_first_layer: bool = False,
) -> Path:
    name = f"{repo_tag.replace('/', '_')}-{layers}-{legacy}-{repeat_first_layer}.tar"
    return build_docker_archive(
        tmp_path / name,
        layers=layers,
        layer_size=layer_size,
        legacy=legacy,
        repo_tag=repo_tag,
        repeat_first_layer=repeat_first_layer,
    )


def archive_blobs(path: Path) -> tuple[str, list[str]]:
    """(config digest, layer digests) of an archive, read without the code under test."""
    with tarfile.open(path) as tar:

        def digest(name: str) -> str:
            stream = tar.extractfile(name)
            assert stream is not None
            return sha256(stream.read())

        stream = tar.extractfile("manifest.json")
        assert stream is not None
        (entry,) = json.loads(stream.read())
        return digest(entry["Config"]), [digest(layer) for layer in entry["Layers"]]


class RecordingStore(FlakyObjectStore):
    """Remembers the size of every multi-object delete."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.delete_batches: list[int] = []

    def delete_objects(self, bucket: str, keys: Iterable[str]) -> int:
        batch = list(keys)
        self.delete_batches.append(len(batch))
        return super().delete_objects(bucket, batch)


# Identifiers.


@pytest.mark.parametrize(
    ("identifier", "expected"),
    [
        ("hello-web:1.0", ("hello-web", "1.0")),
        ("hello-web", ("hello-web", "latest")),
        ("team/app.api_v2:2024-01-01_rc.1", ("team/app.api_v2", "2024-01-01_rc.1")),
        ("a" * 255 + ":" + "T" * 128, ("a" * 255, "T" * 128)),
    ],
)
def test_parse_image_identifier(identifier: str, expected: tuple[str, str]) -> None:
    assert parse_image_identifier(identifier) == expected


@pytest.mark.parametrize(
    "identifier",
    [
        "",
        ":1.0",
        "Hello:1.0",
        "hello web:1",
        "hello:",
        "hello:.hidden",
        "hello:-x",
        "hello//web:1",
        "hello-:1",
        "/hello:1",
        "hello:1:2",
        "hello@sha256:" + "0" * 63,
        "hello@sha512:" + "0" * 64,
        "hello@sha256:" + "A" * 64,
        "localhost:5000/hello:1",
        "a" * 256 + ":1",
        "hello:" + "t" * 129,
        "../hello:1",
    ],
)
def test_bad_identifiers_are_refused(identifier: str) -> None:
    with pytest.raises(ValueError, match="invalid image identifier"):
        parse_image_identifier(identifier)


def test_push_refuses_a_bad_identifier_before_writing(
    any_store: StoreUnderTest, tmp_path: Path
) -> None:
    with pytest.raises(ValueError):
        push_docker_archive(any_store.store, any_store.source_bucket, archive(tmp_path), "Bad:1")
    assert keys(any_store.store, any_store.source_bucket, "") == []


# Pushing.


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy-layout", "oci-layout"])
def test_push_docker_archive(any_store: StoreUnderTest, tmp_path: Path, legacy: bool) -> None:
    store, bucket = any_store.store, any_store.source_bucket
    path = archive(tmp_path, layers=3, layer_size=5000, legacy=legacy, repo_tag="team/web:2")
    config_digest, layer_digests = archive_blobs(path)

    pushed = push_docker_archive(store, bucket, path, "team/web:2")

    body = store.get_bytes(bucket, "team/web/manifests/2")
    manifest = json.loads(body)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["digest"] == config_digest
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert [layer["digest"] for layer in manifest["layers"]] == layer_digests
    assert {layer["mediaType"] for layer in manifest["layers"]} == {
        "application/vnd.oci.image.layer.v1.tar"
    }
    # Every blob is stored under its own digest, whole, with the size the manifest says.
    for descriptor in [manifest["config"], *manifest["layers"]]:
        data = store.get_bytes(bucket, f"team/web/blobs/{descriptor['digest']}")
        assert sha256(data) == descriptor["digest"]
        assert len(data) == descriptor["size"]
    assert (
        json.loads(store.get_bytes(bucket, f"team/web/blobs/{config_digest}"))["rootfs"]["diff_ids"]
        == layer_digests
    )

    # The manifest is kept by digest as well, so that `team/web@<digest>` resolves.
    assert store.get_bytes(bucket, f"team/web/manifests/{sha256(body)}") == body
    stored = inventory(store, bucket, "team/web/")
    assert pushed == PushedImage(
        repository="team/web",
        tag="2",
        manifest_digest=sha256(body),
        objects=stored.objects - 1,
        bytes=stored.bytes - len(body),
    )
    assert pushed.objects == 1 + 1 + 3  # manifest, config, layers


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy-layout", "oci-layout"])
def test_push_stores_a_repeated_layer_once(
    any_store: StoreUnderTest, tmp_path: Path, legacy: bool
) -> None:
    store, bucket = any_store.store, any_store.source_bucket
    path = archive(tmp_path, layers=2, legacy=legacy, repeat_first_layer=True)
    pushed = push_docker_archive(store, bucket, path, "hello-web:1.0")

    manifest = json.loads(store.get_bytes(bucket, "hello-web/manifests/1.0"))
    digests = [layer["digest"] for layer in manifest["layers"]]
    assert len(digests) == 3 and digests[0] == digests[2]
    assert pushed.objects == 1 + 1 + 2
    # And the manifest kept by digest.
    assert inventory(store, bucket, "hello-web/").objects == pushed.objects + 1


def test_repush_uploads_only_the_manifest(any_store: StoreUnderTest, tmp_path: Path) -> None:
    path = archive(tmp_path, layers=3)
    first = push_docker_archive(any_store.store, any_store.source_bucket, path, "hello-web:1.0")
    counting = FlakyObjectStore(any_store.store)

    again = push_docker_archive(counting, any_store.source_bucket, path, "hello-web:1.0")

    assert again == first
    assert counting.calls["put_object"] == 0
    assert counting.calls["put_bytes"] == 2  # the manifest, by digest and by tag
    assert inventory(any_store.store, any_store.source_bucket, "").objects == first.objects + 1


def test_a_new_tag_shares_the_blobs(any_store: StoreUnderTest, tmp_path: Path) -> None:
    store, bucket = any_store.store, any_store.source_bucket
    path = archive(tmp_path, layers=2)
    push_docker_archive(store, bucket, path, "hello-web:1.0")
    push_docker_archive(store, bucket, path, "hello-web:latest")
    assert store.get_bytes(bucket, "hello-web/manifests/1.0") == store.get_bytes(
        bucket, "hello-web/manifests/latest"
    )
    assert len(keys(store, bucket, "hello-web/blobs/")) == 3


def test_push_refuses_what_is_not_a_docker_archive(
    any_store: StoreUnderTest, tmp_path: Path
) -> None:
    store, bucket = any_store.store, any_store.source_bucket
    not_tar = tmp_path / "not.tar"
    not_tar.write_bytes(b"this is not a tar archive" * 100)
    with pytest.raises(ValueError, match="docker save archive"):
        push_docker_archive(store, bucket, not_tar, "hello-web:1.0")

    no_manifest = tmp_path / "no-manifest.tar"
    with tarfile.open(no_manifest, "w") as tar:
        tar.add(not_tar, arcname="something.json")
    with pytest.raises(ValueError, match="manifest.json"):
        push_docker_archive(store, bucket, no_manifest, "hello-web:1.0")

    with pytest.raises(FileNotFoundError):
        push_docker_archive(store, bucket, tmp_path / "absent.tar", "hello-web:1.0")
    assert keys(store, bucket, "") == []


def test_push_refuses_a_corrupt_oci_blob(any_store: StoreUnderTest, tmp_path: Path) -> None:
    """A blob whose content does not match its name must not enter a content-addressed
    registry under that name; nothing of a corrupt archive is uploaded."""
    good = archive(tmp_path, layers=1)
    bad = tmp_path / "bad.tar"
    with tarfile.open(good) as src, tarfile.open(bad, "w") as dst:
        entry = json.loads(_member(src, "manifest.json"))[0]
        for member in src.getmembers():
            data = _member(src, member.name) if member.isfile() else None
            if member.name == entry["Layers"][0] and data is not None:
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.addfile(member, None if data is None else io.BytesIO(data))
    with pytest.raises(ValueError, match="corrupt"):
        push_docker_archive(any_store.store, any_store.source_bucket, bad, "hello-web:1.0")
    assert keys(any_store.store, any_store.source_bucket, "") == []


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    stream = tar.extractfile(name)
    assert stream is not None
    return stream.read()


# Copying into a service's prefix.


def pushed(
    any_store: StoreUnderTest,
    tmp_path: Path,
    identifier: str = "hello-web:1.0",
    layers: int = 3,
    layer_size: int = 300,
) -> PushedImage:
    path = archive(tmp_path, layers=layers, layer_size=layer_size, repo_tag=identifier)
    return push_docker_archive(any_store.store, any_store.source_bucket, path, identifier)


def test_copy_image_then_inventory(any_store: StoreUnderTest, tmp_path: Path) -> None:
    store = any_store.store
    image = pushed(any_store, tmp_path)
    source_manifest = store.get_bytes(any_store.source_bucket, "hello-web/manifests/1.0")
    registry_before = inventory(store, any_store.source_bucket, "")

    copied = copy_image(
        store, any_store.source_bucket, "hello-web:1.0", any_store.image_bucket, "services/s1/"
    )

    manifest = json.loads(source_manifest)
    digests = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    assert keys(store, any_store.image_bucket, "") == sorted(
        ["services/s1/manifest.json", *(f"services/s1/blobs/{d}" for d in digests)]
    )
    assert store.get_bytes(any_store.image_bucket, "services/s1/manifest.json") == source_manifest
    for digest in digests:
        assert (
            sha256(store.get_bytes(any_store.image_bucket, f"services/s1/blobs/{digest}")) == digest
        )
    assert copied == ImageCopy(
        objects=image.objects, bytes=image.bytes, manifest_digest=image.manifest_digest
    )
    assert inventory(store, any_store.image_bucket, "services/s1/") == Inventory(
        copied.objects, copied.bytes
    )
    assert inventory(store, any_store.source_bucket, "") == registry_before


def test_copy_image_is_idempotent_and_resumable(any_store: StoreUnderTest, tmp_path: Path) -> None:
    store = any_store.store
    pushed(any_store, tmp_path, layers=4)
    args = (any_store.source_bucket, "hello-web:1.0", any_store.image_bucket, "services/s1/")
    first = copy_image(store, *args)

    counting = FlakyObjectStore(store)
    assert copy_image(counting, *args) == first
    assert counting.calls["copy_object"] == 0

    # As if a crash had struck mid-copy: one blob and the manifest are missing.
    blobs = keys(store, any_store.image_bucket, "services/s1/blobs/")
    store.delete_objects(any_store.image_bucket, [blobs[1], "services/s1/manifest.json"])
    counting = FlakyObjectStore(store)
    assert copy_image(counting, *args) == first
    assert counting.calls["copy_object"] == 1
    assert inventory(store, any_store.image_bucket, "services/s1/") == Inventory(
        first.objects, first.bytes
    )


def test_copy_of_a_missing_image(any_store: StoreUnderTest, tmp_path: Path) -> None:
    store = any_store.store
    with pytest.raises(ImageNotFound) as caught:
        copy_image(
            store, any_store.source_bucket, "ghost:1", any_store.image_bucket, "services/s1/"
        )
    assert str(caught.value) == "ghost:1"
    assert caught.value.transient is False
    assert isinstance(caught.value, ObjectNotFound)

    pushed(any_store, tmp_path)
    with pytest.raises(ImageNotFound):  # the repository exists, the tag does not
        copy_image(
            store, any_store.source_bucket, "hello-web:2.0", any_store.image_bucket, "services/s1/"
        )
    assert keys(store, any_store.image_bucket, "") == []


def test_copy_with_a_missing_blob_never_writes_the_manifest(
    any_store: StoreUnderTest, tmp_path: Path
) -> None:
    store = any_store.store
    pushed(any_store, tmp_path, layers=3)
    blobs = keys(store, any_store.source_bucket, "hello-web/blobs/")
    store.delete_objects(any_store.source_bucket, [blobs[-1]])

    with pytest.raises(ImageNotFound, match="hello-web:1.0"):
        copy_image(
            store, any_store.source_bucket, "hello-web:1.0", any_store.image_bucket, "services/s1/"
        )
    assert store.stat_object(any_store.image_bucket, "services/s1/manifest.json") is None


# Deleting a service's copy.


def test_delete_image_copy_of_more_than_1000_objects(
    any_store: StoreUnderTest, tmp_path: Path
) -> None:
    """A copy bigger than one multi-object delete, an unfinished upload inside it, and
    neighbours that must survive: the registry and a service whose id extends this one's."""
    store, images = any_store.store, any_store.image_bucket
    big = pushed(any_store, tmp_path, "big-app:1", layers=1000, layer_size=1)
    pushed(any_store, tmp_path, "small-app:1", layers=1)
    assert big.objects == 1002
    copied = copy_image(store, any_store.source_bucket, "big-app:1", images, "services/s1/")
    copy_image(store, any_store.source_bucket, "small-app:1", images, "services/s10/")
    any_store.start_upload(images, "services/s1/blobs/sha256:unfinished")
    any_store.start_upload(images, "services/s10/blobs/sha256:unfinished")
    registry_before = inventory(store, any_store.source_bucket, "")
    neighbour_before = inventory(store, images, "services/s10/")

    recording = RecordingStore(store)
    deleted = delete_image_copy(recording, images, "services/s1/")

    assert deleted == Inventory(copied.objects, copied.bytes)
    assert recording.delete_batches == [1000, 2]
    assert keys(store, images, "services/s1/") == []
    assert store.abort_incomplete_uploads(images, "services/s1/") == 0  # already aborted
    assert inventory(store, images, "services/s10/") == neighbour_before
    assert store.abort_incomplete_uploads(images, "services/s10/") == 1  # left alone
    assert inventory(store, any_store.source_bucket, "") == registry_before

    assert delete_image_copy(store, images, "services/s1/") == Inventory(0, 0)


def test_delete_image_copy_streams_in_small_batches(
    any_store: StoreUnderTest, tmp_path: Path
) -> None:
    store, images = any_store.store, any_store.image_bucket
    pushed(any_store, tmp_path, layers=5)
    copied = copy_image(store, any_store.source_bucket, "hello-web:1.0", images, "services/s1/")

    recording = RecordingStore(store)
    deleted = delete_image_copy(recording, images, "services/s1/", batch_size=3)

    assert deleted == Inventory(copied.objects, copied.bytes) == Inventory(7, deleted.bytes)
    assert recording.delete_batches == [3, 3, 1]
    assert recording.calls["abort_incomplete_uploads"] == 1
    assert keys(store, images, "") == []


def test_delete_of_a_copy_that_never_existed(any_store: StoreUnderTest) -> None:
    assert delete_image_copy(
        any_store.store, any_store.image_bucket, "services/never/"
    ) == Inventory(0, 0)


@pytest.mark.parametrize("prefix", ["", "/", "//", "services/s1", "services"])
def test_bad_prefixes_are_refused(any_store: StoreUnderTest, tmp_path: Path, prefix: str) -> None:
    store, images = any_store.store, any_store.image_bucket
    pushed(any_store, tmp_path, layers=1)
    copy_image(store, any_store.source_bucket, "hello-web:1.0", images, "services/s1/")
    before = keys(store, images, "")

    with pytest.raises(ValueError, match="prefix"):
        delete_image_copy(store, images, prefix)
    with pytest.raises(ValueError, match="prefix"):
        copy_image(store, any_store.source_bucket, "hello-web:1.0", images, prefix)
    assert keys(store, images, "") == before


@pytest.mark.parametrize("batch_size", [0, -1, 1001])
def test_bad_batch_sizes_are_refused(any_store: StoreUnderTest, batch_size: int) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        delete_image_copy(
            any_store.store, any_store.image_bucket, "services/s1/", batch_size=batch_size
        )


class PrefixIgnoringStore(FlakyObjectStore):
    """A store whose listing ignores the prefix: the failure that would turn deleting one
    service's copy into wiping the bucket."""

    def list_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        return self.inner.list_objects(bucket, "")

    def scan_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        return self.inner.scan_objects(bucket, "")


def test_delete_stops_when_a_listing_strays_outside_the_prefix(
    any_store: StoreUnderTest, tmp_path: Path
) -> None:
    store, images = any_store.store, any_store.image_bucket
    store.put_bytes(images, "aaa/another-service", b"must survive")
    store.put_bytes(images, "services/s1/blobs/x", b"1")

    with pytest.raises(ObjectStoreError):
        delete_image_copy(PrefixIgnoringStore(store), images, "services/s1/")
    assert keys(store, images, "") == ["aaa/another-service", "services/s1/blobs/x"]
