"""C2SP tlog-cosignature v1 (Ed25519): a witness's timestamped signature on a checkpoint.

Signed message: ``cosignature/v1\\n``, ``time <POSIX seconds>\\n``, then the checkpoint's note
body. Signature line: ``— <witness name> base64(key id || u64 big-endian timestamp || sig)``;
key id = SHA-256(name || 0x0A || 0x04 || public key)[:4]; verifier keys are written as
``<name>+<hex key id>+<base64(0x04 || public key)>``.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.errors import KeyFileError, SignatureError

COSIGNATURE_V1 = b"\x04"
_DASH = "\u2014 "


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, public: Ed25519PublicKey) -> bytes:
    return sha256(name.encode() + b"\n" + COSIGNATURE_V1 + _raw(public)).digest()[:4]


@dataclass(frozen=True)
class WitnessKey:
    """A witness's public key, as auditors and the sealer trust it."""

    name: str
    public: Ed25519PublicKey

    @property
    def vkey(self) -> str:
        encoded = base64.b64encode(COSIGNATURE_V1 + _raw(self.public)).decode()
        return f"{self.name}+{key_id(self.name, self.public).hex()}+{encoded}"


def parse_witness_vkey(text: str) -> WitnessKey:
    try:
        name, hex_id, encoded = text.strip().split("+", 2)
        raw = base64.b64decode(encoded, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise KeyFileError(f"malformed witness key {text.strip()!r}") from exc
    if len(raw) != 33 or raw[:1] != COSIGNATURE_V1:
        raise KeyFileError("witness key: want a cosignature/v1 Ed25519 key (type byte 0x04)")
    key = WitnessKey(name, Ed25519PublicKey.from_public_bytes(raw[1:]))
    if key_id(name, key.public).hex() != hex_id:
        raise KeyFileError(f"witness key id: got {hex_id}, want {key_id(name, key.public).hex()}")
    return key


def load_witness_key(path: Path) -> WitnessKey:
    try:
        return parse_witness_vkey(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeyFileError(f"cannot read the witness key {path}: {exc}") from exc


def _message(body: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


def cosign(body: str, name: str, private: Ed25519PrivateKey, timestamp: int) -> str:
    """The cosignature line (with its newline) on a checkpoint body (text before the blank
    line of its note, with the final newline)."""
    signature = private.sign(_message(body, timestamp))
    blob = key_id(name, private.public_key()) + struct.pack(">Q", timestamp) + signature
    return f"{_DASH}{name} {base64.b64encode(blob).decode()}\n"


def body_of(note: str) -> str:
    text, sep, _ = note.partition("\n\n")
    if not sep:
        raise SignatureError("signed note: want a body, an empty line and signature lines")
    return text + "\n"


def verify_cosignature(note: str, line: str, witness: WitnessKey) -> int:
    """The timestamp of ``witness``'s cosignature ``line`` on ``note``; raise
    ``SignatureError`` unless it is one and verifies."""
    signer, _, blob = line.removeprefix(_DASH).rstrip("\n").rpartition(" ")
    if not line.startswith(_DASH) or signer != witness.name:
        raise SignatureError(f"not a cosignature by {witness.name!r}")
    try:
        raw = base64.b64decode(blob, validate=True)
    except binascii.Error as exc:
        raise SignatureError("cosignature: not base64") from exc
    if len(raw) != 4 + 8 + 64 or raw[:4] != key_id(witness.name, witness.public):
        raise SignatureError(f"cosignature: not made with {witness.name!r}'s key")
    (timestamp,) = struct.unpack(">Q", raw[4:12])
    try:
        witness.public.verify(raw[12:], _message(body_of(note), timestamp))
    except InvalidSignature as exc:
        raise SignatureError(f"cosignature by {witness.name!r} does not verify") from exc
    return int(timestamp)


def cosigners(note: str, lines: list[str], witnesses: list[WitnessKey]) -> set[str]:
    """Names of the ``witnesses`` with a valid cosignature on ``note`` among ``lines``
    (lines of unknown or other keys are ignored, as the protocol says)."""
    valid = set()
    for witness in witnesses:
        for line in lines:
            try:
                verify_cosignature(note, line, witness)
            except SignatureError:
                continue
            valid.add(witness.name)
            break
    return valid
