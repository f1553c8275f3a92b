"""Reading a JSON Lines archive export, offline (no database, no psycopg).

Layout, one object per line: a ``header``, every ``checkpoint`` (note and compact range), the
``head``, then one ``entry`` per sealed row with the stored bytes (base64), both hashes, the
decoded event for reading and, optionally, an RFC 9162 inclusion ``proof`` against the newest
checkpoint in the file. ``read_jsonl`` gives back what ``integrity.verify_log`` needs; it checks
that each decoded ``event`` matches the bytes and that each proof verifies.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from audit.chain import decode_event, event_bytes
from audit.checkpoint import parse_body
from audit.errors import AuditError, ExportError, TamperingDetected
from audit.rfc6962 import hash_leaf
from audit.types import Row, StoredCheckpoint, TamperKind
from audit.verify import verify_inclusion

FORMAT = "audit-export/1"


@dataclass
class ExportFile:
    checkpoints: list[StoredCheckpoint]
    head_seq: int | None
    rows: Iterator[Row]


def read_jsonl(lines: Iterator[str]) -> ExportFile:
    """Parse an export; checkpoints and head first, then entries lazily (checked as read)."""
    try:
        header = json.loads(next(lines))
    except (StopIteration, ValueError) as exc:
        raise ExportError("export: empty file or no header line") from exc
    if header.get("format") != FORMAT:
        raise ExportError(f"export format: got {header.get('format')!r}, want {FORMAT!r}")
    cps: list[StoredCheckpoint] = []
    head: int | None = None
    for raw in lines:
        record = _load(raw)
        if record.get("type") == "checkpoint":
            blob = base64.b64decode(record["compact_range"])
            cps.append(StoredCheckpoint(int(record["size"]), record["note"], blob))
        elif record.get("type") == "head":
            head = int(record["seq"])
            break
    return ExportFile(cps, head, _entries(lines, cps))


def _load(raw: str) -> dict[str, Any]:
    try:
        record = json.loads(raw)
    except ValueError as exc:
        raise ExportError(f"export: not JSON: {raw[:60]!r}") from exc
    if not isinstance(record, dict):
        raise ExportError("export: each line must be a JSON object")
    return record


def _entries(lines: Iterator[str], cps: list[StoredCheckpoint]) -> Iterator[Row]:
    roots = {cp.size: cp.note for cp in cps}
    for raw in lines:
        record = _load(raw)
        if record.get("type") != "entry":
            continue
        seq = int(record["seq"])
        try:
            entry = base64.b64decode(record["entry"], validate=True)
            row = (
                seq,
                entry,
                bytes.fromhex(record["entry_hash"]),
                bytes.fromhex(record["chain_hash"]),
            )
        except (KeyError, ValueError, binascii.Error) as exc:
            raise TamperingDetected(
                TamperKind.MODIFIED, seq, f"malformed entry line: {exc}"
            ) from exc
        _check_readable(seq, entry, record.get("event"))
        if "proof" in record:
            _check_proof(seq, entry, record["proof"], roots)
        yield row


def _check_readable(seq: int, entry: bytes, shown: Any) -> None:
    try:
        same = shown is None or decode_event(json.dumps(shown).encode()) == decode_event(
            event_bytes(entry)
        )
    except AuditError:
        same = False
    if not same:
        raise TamperingDetected(
            TamperKind.MODIFIED, seq, "the readable event differs from the entry bytes"
        )


def _check_proof(seq: int, entry: bytes, proof: dict[str, Any], notes: dict[int, str]) -> None:
    size = int(proof["tree_size"])
    if size not in notes:
        raise TamperingDetected(TamperKind.MODIFIED, seq, f"proof names unknown tree size {size}")
    root = parse_body(notes[size].partition("\n\n")[0] + "\n").root
    hashes = [base64.b64decode(h) for h in proof["hashes"]]
    try:
        verify_inclusion(seq, size, hash_leaf(entry), hashes, root)
    except AuditError as exc:
        raise TamperingDetected(TamperKind.MODIFIED, seq, f"inclusion proof: {exc}") from exc
