"""AES-GCM encryption of secrets at rest (TOTP secrets, private signing keys).

The key id (a short hash of the key) is stored beside every ciphertext so that a later key
rotation can tell which key sealed a row.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mfa_service.config import Settings, decode_key
from mfa_service.data_dir import ensure_data_dir

KEY_FILE = "data.key"


class DataKeyError(RuntimeError):
    """The data encryption key is missing or malformed (a startup error)."""


@dataclass(frozen=True)
class SecretBox:
    key: bytes = field(repr=False)

    # Made once per box, not per request (cached_property writes the instance's __dict__,
    # which a frozen dataclass allows).
    @functools.cached_property
    def key_id(self) -> str:
        return hashlib.sha256(b"mfa-service data key id:" + self.key).hexdigest()[:16]

    @functools.cached_property
    def _aead(self) -> AESGCM:
        return AESGCM(self.key)

    def seal(self, plaintext: bytes, *, context: bytes) -> bytes:
        """Encrypt; `context` (e.g. the row's purpose and id) is bound as associated data."""
        nonce = secrets.token_bytes(12)
        return nonce + self._aead.encrypt(nonce, plaintext, context)

    @functools.lru_cache(maxsize=16)  # noqa: B019 (a few purposes; the box lives for the app)
    def derive(self, purpose: str) -> bytes:
        """A separate key for another use (e.g. the backup-code pepper)."""
        return hmac.new(self.key, f"mfa-service derive:{purpose}".encode(), hashlib.sha256).digest()

    def open(self, sealed: bytes, *, key_id: str, context: bytes) -> bytes:
        if key_id != self.key_id:
            raise DataKeyError(
                f"row sealed with data key {key_id}, configured key is {self.key_id}"
            )
        return self._aead.decrypt(sealed[:12], sealed[12:], context)


def generate_data_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def _decode(text: str) -> bytes:
    raw = decode_key(text)
    if len(raw) != 32:
        raise DataKeyError(
            "MFA_DATA_KEY must be 32 random bytes, base64-encoded "
            "(generate one with: mfa-service keys generate-data-key)"
        )
    return raw


def load_secret_box(settings: Settings) -> SecretBox:
    """The configured key; in development a key generated once and kept in the data dir."""
    if settings.data_key is not None:
        return SecretBox(_decode(settings.data_key.get_secret_value()))
    if settings.env == "production":
        raise DataKeyError("MFA_DATA_KEY is required when MFA_ENV=production")
    ensure_data_dir(settings.data_dir)
    path = settings.data_dir / KEY_FILE
    if not path.exists():
        _create_exclusively(path, generate_data_key())
    return SecretBox(_decode(path.read_text()))


def _create_exclusively(path: Path, content: str) -> None:
    """Write a file 0600 atomically, keeping the first one if several processes race."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-key-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)
