"""Property tests of the tamper classifier on in-memory logs: every kind, every position."""

from __future__ import annotations

from hashlib import sha256

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import checkpoint as notes
from audit.chain import chain_hash, entry_hash, wrap
from audit.errors import TamperingDetected
from audit.integrity import Trust, verify_log
from audit.rfc6962 import CompactRange
from audit.store import Row, StoredCheckpoint
from audit.types import GENESIS_CHAIN, Checkpoint, TamperKind

KEY = Ed25519PrivateKey.from_private_bytes(bytes(32))
TRUST = Trust("o", KEY.public_key(), "o")


def build(size: int, every: int) -> tuple[list[Row], list[StoredCheckpoint]]:
    rows: list[Row] = []
    cps: list[StoredCheckpoint] = []
    chain, compact = GENESIS_CHAIN, CompactRange()
    for seq in range(size):
        entry = wrap(seq, b'{"n":%d}' % seq)
        digest = entry_hash(entry)
        chain = chain_hash(chain, digest)
        compact.append(digest)
        rows.append((seq, entry, digest, chain))
        if (seq + 1) % every == 0 or seq + 1 == size:
            body = Checkpoint("o", seq + 1, compact.root(), chain)
            note = notes.sign(body, "o", KEY).note
            cps.append(StoredCheckpoint(seq + 1, note, compact.to_bytes()))
    return rows, cps


def detect(rows: list[Row], cps: list[StoredCheckpoint]) -> tuple[TamperKind, int]:
    with pytest.raises(TamperingDetected) as caught:
        verify_log(rows, cps, TRUST)
    return caught.value.kind, caught.value.seq


def renumber(rows: list[Row]) -> list[Row]:
    return [(i, *row[1:]) for i, row in enumerate(rows)]


LOGS = st.integers(4, 60).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, 8)))


@settings(max_examples=60, deadline=None)
@given(LOGS)
def test_intact_logs_verify(log: tuple[int, int]) -> None:
    rows, cps = build(*log)
    assert verify_log(rows, cps, TRUST).size == log[0]


@settings(max_examples=60, deadline=None)
@given(LOGS, st.data())
def test_each_kind_is_named_at_its_first_bad_seq(log: tuple[int, int], data: st.DataObject) -> None:
    size, every = log
    rows, cps = build(size, every)
    i = data.draw(st.integers(0, size - 2), label="i")
    j = data.draw(st.integers(i + 1, size - 1), label="j")

    modified = list(rows)
    seq, entry, digest, chain = rows[i]
    modified[i] = (seq, entry.replace(b'"n":', b'"m":'), digest, chain)
    assert detect(modified, cps) == (TamperKind.MODIFIED, i)

    assert detect(rows[:i] + rows[i + 1 :], cps) == (TamperKind.DELETED, i)
    assert detect(renumber(rows[:i] + rows[i + 1 :]), cps) == (TamperKind.DELETED, i)

    swapped = list(rows)
    swapped[i], swapped[j] = (i, *rows[j][1:]), (j, *rows[i][1:])
    assert detect(swapped, cps) == (TamperKind.REORDERED, i)

    forged_entry = wrap(i, b'{"n":"forged"}')
    forged_digest = entry_hash(forged_entry)
    prev = rows[i - 1][3] if i else GENESIS_CHAIN
    forged: Row = (i, forged_entry, forged_digest, chain_hash(prev, forged_digest))
    assert detect(renumber([*rows[:i], forged, *rows[i:]]), cps) == (TamperKind.INSERTED, i)

    cut = max(i, 1)
    if any(cp.size > cut for cp in cps):
        assert detect(rows[:cut], cps) == (TamperKind.TRUNCATED, cut)

    bad_chain = list(rows)
    bad_chain[i] = (seq, entry, digest, sha256(chain).digest())
    assert detect(bad_chain, cps) == (TamperKind.MODIFIED, i)
