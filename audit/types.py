"""Value types of the audit log: hashes as ``NewType``s, wire records as frozen dataclasses."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NewType

Hash = NewType("Hash", bytes)
"""A 32-byte SHA-256 Merkle tree hash (a leaf or an interior node, RFC 6962)."""
EntryHash = NewType("EntryHash", bytes)
"""SHA-256(0x00 || stored entry bytes), which is also the entry's RFC 6962 Merkle leaf hash."""
ChainHash = NewType("ChainHash", bytes)
"""SHA-256(previous chain hash || entry hash); the genesis predecessor is 32 zero bytes."""

HASH_SIZE = 32
GENESIS_CHAIN = ChainHash(bytes(HASH_SIZE))


class TamperKind(enum.StrEnum):
    """What verification concluded was done to the log."""

    MODIFIED = "modified"
    DELETED = "deleted"
    INSERTED = "inserted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    BAD_SIGNATURE = "bad_checkpoint_signature"
    UNWITNESSED = "unwitnessed"
    """The newest checkpoint lacks the required witness cosignatures."""
    FORKED = "forked"
    """A witness cosigned a tree this log does not contain (a rollback or a fork)."""
    COLUMNS_MODIFIED = "columns_modified"
    """A search column of a sealed row (actor, action, ...) no longer says what its hashed
    bytes say: an edit that would hide the event from ``search``."""
    RESULT_MODIFIED = "result_modified"
    """A stored result's label, confidence, model or versions differ from its event."""
    RESULT_INSERTED = "result_inserted"
    """A stored result no event records."""
    RESULT_DELETED = "result_deleted"
    """An event records a result the results table no longer holds."""
    REVIEW_MODIFIED = "review_modified"
    REVIEW_INSERTED = "review_inserted"
    REVIEW_DELETED = "review_deleted"


@dataclass(frozen=True)
class Finding:
    """One disagreement between the log and the tables that repeat it: what kind, the event's
    seq (None: no sealed event, or none at all), and the result or review it is about."""

    kind: TamperKind
    seq: int | None
    record_id: str | None
    detail: str


@dataclass(frozen=True)
class Event:
    """One audited access, as the audit library stores it. Never document text.

    ``occurred_at`` is an RFC 3339 UTC string with exactly six fractional digits, so the writer
    and every verifier agree on its bytes.
    """

    event_id: str
    occurred_at: str
    action: str
    outcome_status: int
    request_id: str
    actor_subject: str | None = None
    actor_fingerprint: str | None = None
    source_address: str | None = None
    error_code: str | None = None
    resource: str | None = None
    """The document id or, when configured, its HMAC pseudonym (``hmac-sha256:<hex>``)."""
    result_id: str | None = None
    content_sha256: str | None = None
    on_behalf_of: str | None = None
    detail: str | None = None
    """Free text the sealer writes into its own entries (what a quarantine or an accepted
    restore was about)."""
    file_sha256: str | None = None
    """A classified file's SHA-256 (its text is never in the log)."""
    page_count: int | None = None
    ocr_pages: int | None = None
    """How many of the pages read had their text from OCR."""
    file_mode: str | None = None
    """``document``, ``pages`` or ``split``."""
    label: str | None = None
    """What the appliance decided (classification events): the label answered."""
    confidence: str | None = None
    """The answer's confidence, as the shortest decimal text that reads back as the stored
    double (``repr``): canonical bytes hold no floats."""
    scores_sha256: str | None = None
    """SHA-256 (hex) of the per-label scores as canonical JSON (``audit.chain.scores_digest``)."""
    model: str | None = None
    """The served model name that answered."""
    model_digest: str | None = None
    """The weights' digest (``sha256:<hex>``) the server exposed or the operator configured."""
    prompt_version: str | None = None
    """SHA-256 (hex) of the prompt template, the decoding parameters and the token budget."""
    taxonomy_version: str | None = None
    truncated: bool | None = None
    """Whether the document was cut to the token budget before the model read it."""
    cached: bool | None = None
    """Whether the answer was served from an earlier result (the dedupe cache)."""
    cached_from: str | None = None
    """The result id the answer was reused from, when it was."""
    stage: str | None = None
    """With a cascade of models: the stage that answered (``model`` is its model)."""
    stages: str | None = None
    """With a cascade: each stage asked, in order, as ``name:confidence`` joined by commas (the
    confidences as ``confidence`` is written)."""
    review_id: str | None = None
    """Review events: the stored review's id (``result_id`` is the reviewed result)."""
    review_label: str | None = None
    """Review events: the reviewer's label."""
    job_id: str | None = None
    """Bulk job events: the job, and for an item's classification its line (``job_item``)."""
    job_item: int | None = None


Row = tuple[int, bytes, bytes, bytes]
"""A sealed row as stored: (seq, entry bytes, entry hash, chain hash)."""


@dataclass(frozen=True)
class StoredCheckpoint:
    """A signed checkpoint as stored: its tree size, the signed note, and the compact range of
    the tree at that size (so verification can resume there)."""

    size: int
    note: str
    compact_range: bytes


@dataclass(frozen=True)
class SealedEntry:
    """A row of the sealed log: the stored canonical bytes and the hashes over them."""

    seq: int
    canonical: bytes
    entry_hash: EntryHash
    chain_hash: ChainHash


@dataclass(frozen=True)
class Checkpoint:
    """The body of a C2SP tlog-checkpoint: origin, tree size, root hash (+ our chain extension)."""

    origin: str
    size: int
    root: Hash
    chain: ChainHash | None = None
    """Chain hash of entry ``size - 1`` (extension line ``chain <base64>``), if present."""
    next_key: str | None = None
    """Key rotation (extension line ``key <vkey>``): the verifier key of every later
    checkpoint, announced by a checkpoint signed with the current key."""


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint with the signed note text it was parsed from or signed into."""

    checkpoint: Checkpoint
    note: str
