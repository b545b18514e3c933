"""Key secrets sealed with AES-256-GCM under the key-encryption key (KEK).

The KEK is 32 random bytes, base64 in a setting or a file. The embedded default creates
the file in the data dir (mode 0600) on first start; every replica must use the same KEK."""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "v1"


class KeyEncryptionKeyError(Exception):
    """The KEK is missing, malformed or does not open a sealed secret."""


def decode_kek(text: str, where: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyEncryptionKeyError(f"{where}: the key-encryption key is not base64") from exc
    if len(raw) != 32:
        raise KeyEncryptionKeyError(
            f"{where}: the key-encryption key must be 32 bytes (base64), got {len(raw)}"
        )
    return raw


def load_or_create_kek(path: Path, *, create: bool) -> bytes:
    """The KEK in `path`; created there (mode 0600) when absent and `create` is set."""
    if not path.exists():
        if not create:
            raise KeyEncryptionKeyError(f"{path}: no key-encryption key file")
        path.parent.mkdir(parents=True, exist_ok=True)
        encoded = base64.b64encode(secrets.token_bytes(32)).decode() + "\n"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            # Another process created it first: use theirs.
            return decode_kek(path.read_text(), str(path))
        with os.fdopen(fd, "w") as out:
            out.write(encoded)
        return decode_kek(encoded, str(path))
    return decode_kek(path.read_text(), str(path))


class AesGcmSecretBox:
    def __init__(self, kek: bytes) -> None:
        self._aead = AESGCM(kek)

    def seal(self, plaintext: str, associated: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), associated.encode())
        return f"{VERSION}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, associated: str) -> str:
        version, _, body = sealed.partition(":")
        if version != VERSION:
            raise KeyEncryptionKeyError(f"sealed secret of unknown version {version!r}")
        raw = base64.b64decode(body)
        try:
            return self._aead.decrypt(raw[:12], raw[12:], associated.encode()).decode()
        except InvalidTag as exc:
            raise KeyEncryptionKeyError(
                "a key secret does not open with this key-encryption key "
                "(is every replica configured with the same one?)"
            ) from exc
