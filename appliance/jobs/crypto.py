"""Item texts at rest: AES-256-GCM under a per-job data key, itself wrapped by a key file.

A bulk job has to keep its texts until a worker gets to them, across restarts, on whichever
node runs the worker: they wait in PostgreSQL, but only encrypted. Each job has a random data
key; it is stored wrapped (AES-GCM) by the key-encryption key, a file outside the database
(``APPLIANCE_JOB_KEY_PATH``), so a database backup or a replica alone gives no text. The
associated data binds each ciphertext to its place: a wrapped key to its job, an item's text to
its job and line, so a ciphertext copied to another row does not decrypt.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.errors import ServiceUnavailable

KEY_BYTES = 32
NONCE_BYTES = 12


class JobKeyError(ServiceUnavailable):
    """The key-encryption key is missing or wrong, or a stored ciphertext does not decrypt."""

    code = "job_key_unavailable"


def load_job_key(path: Path) -> bytes:
    """The key-encryption key from its file: 64 hex characters (``openssl rand -hex 32``)."""
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError) as exc:
        raise JobKeyError(f"cannot read the job key {path}: {exc}") from exc
    if len(key) != KEY_BYTES:
        raise JobKeyError(f"job key {path}: got {len(key)} bytes, want {KEY_BYTES}")
    return key


def _seal(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


def _open(key: bytes, sealed: bytes, associated: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated)
    except (InvalidTag, ValueError) as exc:
        raise JobKeyError("a stored ciphertext does not decrypt with this key") from exc


class JobCipher:
    """Encrypts and decrypts one job's item texts."""

    def __init__(self, job_id: uuid.UUID, data_key: bytes) -> None:
        self._job = job_id.bytes
        self._key = data_key

    @classmethod
    def new(cls, job_id: uuid.UUID, key_encryption_key: bytes) -> tuple[JobCipher, bytes]:
        """A cipher with a fresh data key, and that key wrapped for storage."""
        data_key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
        return cls(job_id, data_key), _seal(key_encryption_key, data_key, job_id.bytes)

    @classmethod
    def unwrap(cls, job_id: uuid.UUID, wrapped_key: bytes, key_encryption_key: bytes) -> JobCipher:
        return cls(job_id, _open(key_encryption_key, wrapped_key, job_id.bytes))

    def encrypt(self, position: int, text: str) -> bytes:
        return _seal(self._key, text.encode("utf-8"), self._place(position))

    def decrypt(self, position: int, ciphertext: bytes) -> str:
        return _open(self._key, ciphertext, self._place(position)).decode("utf-8")

    def _place(self, position: int) -> bytes:
        return self._job + position.to_bytes(8, "big")
