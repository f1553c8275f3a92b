"""Derived audit fields: what ``audit-tool verify`` compares, computed by PostgreSQL itself.

Revision ID: 0015_derived_audit_fields
Revises: 0014_cascade_stages
Create Date: 2026-12-04

The cross-checks compare the search columns of ``audit_entries`` and the results' decisions with
the signed bytes. Parsing a million entries' JSON at every verification cost seconds; so
PostgreSQL parses each entry once, when it is inserted, into generated columns:

- ``audit_entries.fields``: the event's search fields (``occurred_at``, ``actor_subject``,
  ``action``, ``resource``, ``outcome_status``, ``result_id``) as jsonb;
- ``audit_entries.decision``: SHA-256 of the event's decision fields (label, model, stage,
  truncated, confidence, model digest, prompt and taxonomy versions) in jsonb's text form;
- ``classification_results.decision``: SHA-256 of the same text, built from the result's own
  columns (equal to its event's when they agree; a float or text that jsonb writes otherwise
  only sends the pair to the exact comparison).

Generated columns cannot be written (UPDATE and COPY refuse them, with or without triggers); an
insider would have to drop the generation expression first, which ``audit-tool verify`` sees
in the catalog (it then compares the bytes row by row, as before). The expressions use only
immutable built-ins: the entry bytes are ASCII JSON (``chain.encode_event``), which
``encode(entry, 'escape')`` with backslashes undoubled turns into text exactly.

The key lists are every field an event has (``audit.chain.KNOWN_FIELDS``) but those kept;
``tests/audit/test_derived.py`` fails when an event field is added without a migration here.
Adding the columns rewrites both tables (about 35 s per million audit entries on 2 cores);
each sealed entry then costs about 27 us more to seal (docs/benchmarks.md).
"""

from __future__ import annotations

from alembic import op

revision = "0015_derived_audit_fields"
down_revision = "0014_cascade_stages"
branch_labels = None
depends_on = None

EVENT = r"(replace(encode(entry, 'escape'), '\\', '\')::jsonb -> 'event')"
"""The entry's event as jsonb (one parse per expression)."""
NOT_SEARCH = (
    "actor_fingerprint", "cached", "cached_from", "confidence", "content_sha256", "detail",
    "error_code", "event_id", "file_mode", "file_sha256", "job_id", "job_item", "label", "model",
    "model_digest", "ocr_pages", "on_behalf_of", "page_count", "prompt_version", "request_id",
    "review_id", "review_label", "scores_sha256", "source_address", "stage", "stages",
    "taxonomy_version", "truncated", "v",
)  # fmt: skip
NOT_DECISION = (
    "action", "actor_fingerprint", "actor_subject", "cached", "cached_from", "content_sha256",
    "detail", "error_code", "event_id", "file_mode", "file_sha256", "job_id", "job_item",
    "occurred_at", "ocr_pages", "on_behalf_of", "outcome_status", "page_count", "request_id",
    "resource", "result_id", "review_id", "review_label", "scores_sha256", "source_address",
    "stages", "v",
)  # fmt: skip


def _keys(names: tuple[str, ...]) -> str:
    return "ARRAY[" + ", ".join(f"'{name}'" for name in names) + "]"


def _sha256_of_text(text: str) -> str:
    """SQL: SHA-256 of a text's UTF-8 bytes, with immutable functions only (``decode`` of the
    text with its backslashes doubled is the text's bytes)."""
    return rf"sha256(decode(replace({text}, '\', '\\'), 'escape'))"


def _string(column: str) -> str:
    """SQL: the JSON string of a text column, as jsonb writes one without control characters."""
    return rf"""'"' || replace(replace({column}, '\', '\\'), '"', '\"') || '"'"""


def _optional(key: str, column: str) -> str:
    return f"""CASE WHEN {column} IS NULL THEN '' ELSE ', "{key}": ' || {_string(column)} END"""


FIELDS = f"{EVENT} - {_keys(NOT_SEARCH)}"
EVENT_DECISION = _sha256_of_text(f"({EVENT} - {_keys(NOT_DECISION)})::text")
CONFIDENCE = (
    "CASE WHEN confidence = 0 THEN '0.0' WHEN confidence = 1 THEN '1.0'"
    " ELSE confidence::text END"
)
"""As the event writes it (Python's ``repr``), where PostgreSQL's shortest text differs."""
RESULT_DECISION = _sha256_of_text(
    """'{"label": ' || """ + _string("label")
    + """ || ', "model": ' || """ + _string("model")
    + " || " + _optional("stage", "stage")
    + """ || ', "truncated": ' || truncated::text"""
    + """ || ', "confidence": "' || """ + CONFIDENCE + """ || '"'"""
    + " || " + _optional("model_digest", "model_digest")
    + " || " + _optional("prompt_version", "prompt_version")
    + """ || ', "taxonomy_version": ' || """ + _string("taxonomy_version") + " || '}'"
)  # fmt: skip
"""The keys in jsonb's order (shorter first, then bytewise), as ``EVENT_DECISION`` writes them."""
CLASSIFYING = "('classify_document', 'classify_file')"


def upgrade() -> None:
    # A table rewrite cannot be cut into chunks: it may take longer than env.py's 60 s bound.
    op.execute("SET LOCAL statement_timeout = 0")
    op.execute(
        f"ALTER TABLE audit_entries ADD COLUMN fields jsonb GENERATED ALWAYS AS ({FIELDS}) STORED,"
        f" ADD COLUMN decision bytea GENERATED ALWAYS AS ({EVENT_DECISION}) STORED"
    )
    op.execute(
        "ALTER TABLE classification_results ADD COLUMN decision bytea"
        f" GENERATED ALWAYS AS ({RESULT_DECISION}) STORED"
    )
    # The results cross-check reads these two instead of the tables (index-only scans).
    op.execute(
        "CREATE INDEX ix_audit_entries_decision ON audit_entries (result_id)"
        f" INCLUDE (decision, seq) WHERE result_id IS NOT NULL AND action IN {CLASSIFYING}"
    )
    op.execute(
        "CREATE INDEX ix_classification_results_decision ON classification_results (id)"
        " INCLUDE (decision)"
    )
    op.execute("GRANT SELECT (decision) ON classification_results TO appliance_auditor")


def downgrade() -> None:
    op.execute("REVOKE SELECT (decision) ON classification_results FROM appliance_auditor")
    op.execute("DROP INDEX ix_classification_results_decision")
    op.execute("DROP INDEX ix_audit_entries_decision")
    op.execute("ALTER TABLE classification_results DROP COLUMN decision")
    op.execute("ALTER TABLE audit_entries DROP COLUMN decision, DROP COLUMN fields")
