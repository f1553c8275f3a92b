"""The exact bytes that are stored and hashed, and the hashes over them.

An event is encoded once, by the writer, as canonical JSON (sorted keys, no spaces, ASCII only,
no floats; times as fixed-precision strings). The sealer wraps those bytes, unchanged, with the
sequence number it assigns: ``{"seq":<n>,"event":<event bytes>}``. Entry bytes are stored as-is,
so every verifier hashes the very bytes the sealer hashed. The seq inside the hashed bytes is what
lets verification tell a deleted row from a reordered or inserted one.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any

from audit.errors import EventError
from audit.rfc6962 import hash_leaf
from audit.types import ChainHash, EntryHash, Event, Row

_PREFIX = b'{"seq":'
_INFIX = b',"event":'
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
MAX_FIELD = 1024


def format_time(moment: datetime) -> str:
    """UTC, microseconds, always six digits: ``2026-11-22T10:00:00.123456Z``."""
    if moment.tzinfo is None:
        raise EventError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_EVENT_FIELDS = tuple(field.name for field in dataclasses.fields(Event))
REQUIRED_FIELDS = frozenset(
    f.name for f in dataclasses.fields(Event) if f.default is dataclasses.MISSING
) | {"v"}
"""Keys every canonical event has (``decode_event`` needs them)."""
KNOWN_FIELDS = frozenset(_EVENT_FIELDS) | {"v"}
DECISION_FIELDS = (
    "label", "confidence", "scores_sha256", "model", "model_digest", "prompt_version",
    "taxonomy_version", "truncated", "cached", "cached_from", "stage", "stages", "review_id",
    "review_label",
)  # fmt: skip
"""What the appliance decided (event version 2): a classification's answer and what produced
it, or a review's label."""
OMITTED_WHEN_NONE = ("detail", "file_sha256", "page_count", "ocr_pages", "file_mode",
                     *DECISION_FIELDS, "job_id", "job_item")  # fmt: skip
"""Fields added after the first entries were written: left out of the canonical bytes when
None, so those entries keep their bytes (and every older entry still verifies)."""
EVENT_VERSION = 2
"""``v`` of the events written now. Version 1 events (before the decision fields) carry no
decision: the results cross-check can only tell that their result exists."""
_INTEGERS = ("outcome_status", "page_count", "ocr_pages", "job_item")
_BOOLEANS = ("truncated", "cached")


def encode_event(event: Event) -> bytes:
    """Canonical bytes of an event. Rejects malformed times and over-long fields."""
    if not _TIME.fullmatch(event.occurred_at):
        raise EventError(
            f"occurred_at: got {event.occurred_at!r}, want YYYY-MM-DDTHH:MM:SS.ffffffZ"
        )
    fields = {name: getattr(event, name) for name in _EVENT_FIELDS}  # all scalars: no deep copy
    for name, value in fields.items():
        if isinstance(value, str) and len(value) > MAX_FIELD:
            raise EventError(f"{name}: got {len(value)} characters, want <= {MAX_FIELD}")
    for names, kind in ((_INTEGERS, int), (_BOOLEANS, bool)):
        for name in names:
            value = fields[name]
            if value is not None and type(value) is not kind:
                raise EventError(f"{name} must be {kind.__name__}")
    for name in OMITTED_WHEN_NONE:
        if fields[name] is None:
            del fields[name]
    fields["v"] = EVENT_VERSION
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def format_confidence(confidence: float) -> str:
    """A confidence as event text: the shortest decimal that reads back as the same double."""
    return repr(float(confidence))


def scores_digest(scores: Mapping[str, float]) -> str:
    """SHA-256 (hex) of per-label scores as canonical JSON (sorted keys, no spaces, ``repr``
    floats): what an event records of the scores, and what a verifier recomputes from a
    stored result."""
    canonical = json.dumps(dict(scores), sort_keys=True, separators=(",", ":"))
    return sha256(canonical.encode("ascii")).hexdigest()


def decode_event(data: bytes) -> Event:
    try:
        fields: dict[str, Any] = json.loads(data)
        fields.pop("v")
        return Event(**fields)
    except (ValueError, TypeError, KeyError) as exc:
        raise EventError(f"not a canonical event: {exc}") from exc


def wrap(seq: int, event_bytes: bytes) -> bytes:
    """Entry bytes: the event bytes, untouched, with their sequence number."""
    return b"%s%d%s%s}" % (_PREFIX, seq, _INFIX, event_bytes)


def claimed_seq(entry: bytes) -> int:
    """The sequence number written inside entry bytes (fast: no JSON parsing)."""
    end = entry.find(b",", len(_PREFIX))
    if not entry.startswith(_PREFIX) or end < 0 or not entry[len(_PREFIX) : end].isdigit():
        raise EventError('entry bytes: want the {"seq":<n>,"event":...} envelope')
    return int(entry[len(_PREFIX) : end])


def event_bytes(entry: bytes) -> bytes:
    start = entry.find(_INFIX)
    if start < 0 or not entry.endswith(b"}"):
        raise EventError('entry bytes: want the {"seq":<n>,"event":...} envelope')
    return entry[start + len(_INFIX) : -1]


def entry_hash(entry: bytes) -> EntryHash:
    """SHA-256(0x00 || entry bytes): the entry's RFC 6962 leaf hash, so the bytes are hashed once
    for both the chain and the Merkle tree."""
    return EntryHash(hash_leaf(entry))


def chain_hash(previous: bytes, entry: bytes) -> ChainHash:
    """SHA-256(previous chain hash || entry hash)."""
    return ChainHash(sha256(previous + entry).digest())


def links(row: Row, expected: int, previous: bytes) -> bool:
    """Whether ``row`` is entry ``expected`` of the chain whose previous chain hash is
    ``previous``: its seq, its hash over its bytes, its chain hash, and the seq inside its bytes.
    (Which of these failed is for ``integrity`` to work out; this is the fast check.)"""
    seq, entry, digest, chain = row
    return (
        seq == expected
        and hash_leaf(entry) == digest
        and sha256(previous + digest).digest() == chain
        and entry.startswith(b'{"seq":%d,' % expected)
    )
