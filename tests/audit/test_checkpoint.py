"""C2SP signed-note checkpoints: format, signatures, verifier keys."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import checkpoint as notes
from audit.errors import CheckpointError, KeyFileError, SignatureError
from audit.types import ChainHash, Checkpoint, Hash

ROOT = Hash(hashlib.sha256(b"root").digest())
CHAIN = ChainHash(hashlib.sha256(b"chain").digest())
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def test_note_layout_follows_c2sp() -> None:
    signed = notes.sign(Checkpoint("example.org/log", 42, ROOT, CHAIN), "example.org/log", KEY)
    body, signatures = signed.note.split("\n\n")
    assert body.split("\n") == [
        "example.org/log",
        "42",
        base64.b64encode(ROOT).decode(),
        f"chain {base64.b64encode(CHAIN).decode()}",
    ]
    line = signatures.rstrip("\n")
    assert line.startswith("\u2014 example.org/log ")
    raw = base64.b64decode(line.rsplit(" ", 1)[1])
    assert len(raw) == 4 + 64
    assert raw[:4] == notes.key_id("example.org/log", KEY.public_key())


def test_round_trip_and_vkey() -> None:
    signed = notes.sign(Checkpoint("o", 7, ROOT, None), "o", KEY)
    name, public = notes.parse_vkey(notes.vkey("o", KEY.public_key()))
    opened = notes.open_note(signed.note, name, public, origin="o")
    assert opened.checkpoint == Checkpoint("o", 7, ROOT, None)


def test_another_key_or_an_edit_is_a_signature_error() -> None:
    signed = notes.sign(Checkpoint("o", 7, ROOT), "o", KEY)
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(SignatureError):
        notes.open_note(signed.note, "o", other)
    forged = signed.note.replace("\n7\n", "\n8\n")
    with pytest.raises(SignatureError, match="bad signature"):
        notes.open_note(forged, "o", KEY.public_key())


def test_wrong_origin_and_malformed_bodies() -> None:
    signed = notes.sign(Checkpoint("o", 7, ROOT), "o", KEY)
    with pytest.raises(CheckpointError, match="origin"):
        notes.open_note(signed.note, "o", KEY.public_key(), origin="p")
    for body in ("o\n07\nAAAA\n", "o\nx\nAAAA\n", "o\n1\n", "o\n1\nAAAA\n"):
        with pytest.raises(CheckpointError):
            notes.parse_body(body)


def test_verifier_key_files(tmp_path: Path) -> None:
    good = notes.vkey("o", KEY.public_key())
    (tmp_path / "k").write_text(good + "\n")
    assert notes.load_verifier_key(tmp_path / "k")[0] == "o"
    name, key_hex, blob = good.split("+", 2)
    for bad in (f"{name}+00000000+{blob}", "garbage", f"{name}+{key_hex}+AAAA"):
        with pytest.raises(KeyFileError):
            notes.parse_vkey(bad)
    with pytest.raises(KeyFileError):
        notes.load_private_key(tmp_path / "k")
