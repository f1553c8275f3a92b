"""C2SP tlog-checkpoint bodies in C2SP signed notes, signed with Ed25519.

Body: ``<origin>\\n<size>\\n<base64 root>\\n`` plus our extension lines ``chain <base64>\\n`` and,
on a key rotation, ``key <vkey>\\n`` (the key of every later checkpoint).
Note: body, an empty line, then ``— <key name> <base64(key id || signature)>\\n`` lines. The key
id is the first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key). Verifier keys are written
in the note ``vkey`` form ``<name>+<hex key id>+<base64(0x01 || public key)>``.
"""

from __future__ import annotations

import base64
import binascii
from hashlib import sha256
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.errors import CheckpointError, KeyFileError, SignatureError
from audit.types import HASH_SIZE, ChainHash, Checkpoint, Hash, SignedCheckpoint

_DASH = "\u2014 "
_ED25519 = b"\x01"


def b64decode(text: str) -> bytes:
    """Strict base64: only the canonical encoding of the bytes it decodes to, so no changed
    character (in the unused low bits of the last one, say) leaves a signed note or a receipt
    meaning the same. Raises ``binascii.Error``."""
    raw = base64.b64decode(text, validate=True)
    if base64.b64encode(raw).decode("ascii") != text:
        raise binascii.Error("not the canonical base64 encoding")
    return raw


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, public: Ed25519PublicKey) -> bytes:
    return sha256(name.encode() + b"\n" + _ED25519 + _raw(public)).digest()[:4]


def vkey(name: str, public: Ed25519PublicKey) -> str:
    """The verifier key string auditors keep and pass to ``audit-tool --public-key``."""
    encoded = base64.b64encode(_ED25519 + _raw(public)).decode()
    return f"{name}+{key_id(name, public).hex()}+{encoded}"


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise KeyFileError(f"cannot load the signing key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: got a {type(key).__name__}, want an Ed25519 private key")
    return key


def parse_vkey(text: str) -> tuple[str, Ed25519PublicKey]:
    """``name+keyid+base64`` -> (name, key); the key id must match."""
    try:
        name, hex_id, encoded = text.strip().split("+", 2)
        raw = base64.b64decode(encoded, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise KeyFileError(f"malformed verifier key {text.strip()!r}") from exc
    if len(raw) != 33 or raw[:1] != _ED25519:
        raise KeyFileError("verifier key: want an Ed25519 key (type byte 0x01, 32 bytes)")
    public = Ed25519PublicKey.from_public_bytes(raw[1:])
    if key_id(name, public).hex() != hex_id:
        raise KeyFileError(f"verifier key id: got {hex_id}, want {key_id(name, public).hex()}")
    return name, public


def load_verifier_key(path: Path) -> tuple[str, Ed25519PublicKey]:
    try:
        return parse_vkey(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeyFileError(f"cannot read the verifier key {path}: {exc}") from exc


def body(checkpoint: Checkpoint) -> str:
    text = f"{checkpoint.origin}\n{checkpoint.size}\n{base64.b64encode(checkpoint.root).decode()}\n"
    if checkpoint.chain is not None:
        text += f"chain {base64.b64encode(checkpoint.chain).decode()}\n"
    if checkpoint.next_key is not None:
        text += f"key {checkpoint.next_key}\n"
    return text


def sign(checkpoint: Checkpoint, name: str, private: Ed25519PrivateKey) -> SignedCheckpoint:
    text = body(checkpoint)
    return SignedCheckpoint(checkpoint, f"{text}\n{_signature_line(text, name, private)}")


def add_signature(
    signed: SignedCheckpoint, name: str, private: Ed25519PrivateKey
) -> SignedCheckpoint:
    """The same note with one more signature line (a key rotation is signed by both keys)."""
    line = _signature_line(body(signed.checkpoint), name, private)
    return SignedCheckpoint(signed.checkpoint, signed.note + line)


def _signature_line(text: str, name: str, private: Ed25519PrivateKey) -> str:
    signature = private.sign(text.encode())
    blob = base64.b64encode(key_id(name, private.public_key()) + signature).decode()
    return f"{_DASH}{name} {blob}\n"


def _b64hash(text: str, what: str) -> bytes:
    try:
        raw = b64decode(text)
    except binascii.Error as exc:
        raise CheckpointError(f"{what}: not base64") from exc
    if len(raw) != HASH_SIZE:
        raise CheckpointError(f"{what}: got {len(raw)} bytes, want {HASH_SIZE}")
    return raw


def parse_body(text: str) -> Checkpoint:
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "" or not lines[0]:
        raise CheckpointError("checkpoint body: want origin, size and root lines ending in \\n")
    if not lines[1].isdigit() or (lines[1] != "0" and lines[1].startswith("0")):
        raise CheckpointError(f"checkpoint size: got {lines[1]!r}, want a decimal integer")
    chain, next_key = None, None
    for extension in lines[3:-1]:
        if extension.startswith("chain "):
            chain = ChainHash(_b64hash(extension.removeprefix("chain "), "chain extension"))
        elif extension.startswith("key "):
            next_key = extension.removeprefix("key ")
            try:
                parse_vkey(next_key)
            except KeyFileError as exc:
                raise CheckpointError(f"key extension: {exc}") from exc
    root = Hash(_b64hash(lines[2], "checkpoint root"))
    return Checkpoint(lines[0], int(lines[1]), root, chain, next_key)


def open_note(
    note: str, name: str, public: Ed25519PublicKey, origin: str | None = None
) -> SignedCheckpoint:
    """Parse a signed note; raise ``SignatureError`` unless ``name``'s key signed it."""
    text, sep, signatures = note.partition("\n\n")
    if not sep or not note.endswith("\n"):
        raise CheckpointError("signed note: want a body, an empty line and signature lines")
    text += "\n"
    checkpoint = parse_body(text)
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(f"checkpoint origin: got {checkpoint.origin!r}, want {origin!r}")
    want_id = key_id(name, public)
    for line in signatures.splitlines():
        signer, _, blob = line.removeprefix(_DASH).rpartition(" ")
        if not line.startswith(_DASH) or signer != name:
            continue
        try:
            raw = b64decode(blob)
        except binascii.Error as exc:
            raise SignatureError("checkpoint signature: not base64") from exc
        if raw[:4] != want_id:
            continue
        try:
            public.verify(raw[4:], text.encode())
        except InvalidSignature as exc:
            raise SignatureError(f"checkpoint of size {checkpoint.size}: bad signature") from exc
        return SignedCheckpoint(checkpoint, note)
    raise SignatureError(f"checkpoint of size {checkpoint.size}: no signature by {name!r}")
