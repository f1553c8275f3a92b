"""Canonical bytes: stable, exact, and the seq envelope."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from audit import chain
from audit.errors import EventError
from audit.pseudonym import pseudonymise
from audit.types import Event

EVENT = Event(
    event_id="00000000-0000-4000-8000-000000000001",
    occurred_at="2026-11-22T10:00:00.000001Z",
    action="classify_document",
    outcome_status=200,
    request_id="req-1",
    actor_subject="spiffe://hospital/svc/intake",
    resource="hmac-sha256:ab",
)


def test_canonical_bytes_are_pinned() -> None:
    assert chain.encode_event(EVENT) == (
        b'{"action":"classify_document","actor_fingerprint":null,'
        b'"actor_subject":"spiffe://hospital/svc/intake","content_sha256":null,'
        b'"error_code":null,"event_id":"00000000-0000-4000-8000-000000000001",'
        b'"occurred_at":"2026-11-22T10:00:00.000001Z","on_behalf_of":null,"outcome_status":200,'
        b'"request_id":"req-1","resource":"hmac-sha256:ab","result_id":null,'
        b'"source_address":null,"v":2}'
    )
    assert chain.decode_event(chain.encode_event(EVENT)) == EVENT


def test_version_1_entries_still_decode() -> None:
    """Entries written before the decision fields keep their bytes and read as events."""
    written = chain.encode_event(EVENT).replace(b'"v":2}', b'"v":1}')
    assert chain.decode_event(written) == EVENT


def test_a_decision_is_in_the_bytes_with_no_floats() -> None:
    decided = replace(
        EVENT, label="BILLING", confidence=chain.format_confidence(0.1 + 0.2),
        scores_sha256=chain.scores_digest({"BILLING": 0.3, "CLINICAL_NOTES": 0.7}),
        model="llama-2-7b-chat", model_digest="sha256:" + "c" * 64, prompt_version="d" * 64,
        taxonomy_version="default-1", truncated=False, cached=True, cached_from="r-1",
    )  # fmt: skip
    encoded = chain.encode_event(decided)
    assert b'"label":"BILLING"' in encoded and b'"truncated":false' in encoded
    assert b'"confidence":"0.30000000000000004"' in encoded  # reads back as the same double
    assert float(chain.decode_event(encoded).confidence or "") == 0.1 + 0.2
    assert chain.decode_event(encoded) == decided
    assert chain.scores_digest({"CLINICAL_NOTES": 0.7, "BILLING": 0.3}) == decided.scores_sha256
    with pytest.raises(EventError, match="truncated"):
        chain.encode_event(replace(decided, truncated=0))  # type: ignore[arg-type]


def test_envelope_round_trip() -> None:
    entry = chain.wrap(1234, chain.encode_event(EVENT))
    assert entry.startswith(b'{"seq":1234,"event":{')
    assert chain.claimed_seq(entry) == 1234
    assert chain.event_bytes(entry) == chain.encode_event(EVENT)
    with pytest.raises(EventError):
        chain.claimed_seq(b'{"seq":x,"event":{}}')


def test_times_have_fixed_precision_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    moment = datetime(2026, 11, 22, 12, 0, 0, tzinfo=plus_two)
    assert chain.format_time(moment) == "2026-11-22T10:00:00.000000Z"
    with pytest.raises(EventError):
        chain.format_time(datetime(2026, 1, 1))
    with pytest.raises(EventError, match="occurred_at"):
        chain.encode_event(Event(**{**vars(EVENT), "occurred_at": "2026-11-22T10:00:00Z"}))
    assert chain.format_time(datetime(2026, 1, 1, tzinfo=UTC)).endswith(".000000Z")


def test_non_ascii_is_escaped_and_long_fields_rejected() -> None:
    event = Event(**{**vars(EVENT), "actor_subject": "CN=Zoë"})
    assert b"Zo\\u00eb" in chain.encode_event(event)
    with pytest.raises(EventError, match="request_id"):
        chain.encode_event(Event(**{**vars(EVENT), "request_id": "x" * 2000}))


def test_pseudonyms_are_keyed_and_stable() -> None:
    one = pseudonymise(b"k" * 32, "MRN-1")
    assert one == pseudonymise(b"k" * 32, "MRN-1")
    assert one != pseudonymise(b"j" * 32, "MRN-1")
    assert one.startswith("hmac-sha256:") and "MRN" not in one


def test_a_file_s_facts_are_in_the_bytes_only_when_there_is_a_file() -> None:
    """Entries written before files existed keep their bytes (pinned above)."""
    filed = replace(EVENT, action="classify_file", file_sha256="ab" * 32, page_count=3,
                    ocr_pages=2, file_mode="split")  # fmt: skip
    encoded = chain.encode_event(filed)
    assert b'"file_mode":"split"' in encoded and b'"page_count":3' in encoded
    assert chain.decode_event(encoded) == filed
    with pytest.raises(EventError, match="page_count"):
        chain.encode_event(replace(filed, page_count="3"))  # type: ignore[arg-type]
