"""Verification on several cores: worker processes check row ranges, the parent checks the tree.

Each worker reads its seq range in the parent's exported snapshot (``pg_export_snapshot``), so
all see one consistent log, and checks every row (seq, entry hash, chain link, seq inside the
bytes) against the stored chain hash before its range; it also hashes every aligned block of
``2**BLOCK_HEIGHT`` leaves inside its range into that perfect subtree's root. The parent checks
that the ranges join up, rebuilds the Merkle tree from the block roots (and the leaves where no
block root fits: range edges, inside the block a checkpoint ends in) and checks every
checkpoint. Any anomaly hands over to the sequential ``integrity.verify_log``, which classifies
it; so this module only ever speeds up the answer for an intact log.
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from psycopg import sql

from audit import store
from audit.chain import links
from audit.errors import TamperingDetected
from audit.integrity import Trust, VerifyResult, check_checkpoint, open_checkpoint, start_state
from audit.rfc6962 import CompactRange, root_of
from audit.service import verify_database
from audit.types import HASH_SIZE, Checkpoint, TamperKind

BLOCK_HEIGHT = 8
"""Blocks of 256 leaves: the parent's tree work shrinks 256-fold, and at most 255 leaves per
checkpoint are hashed one by one."""


@dataclass(frozen=True)
class _Range:
    ok: bool
    leaves: bytes
    """Concatenated 32-byte leaf hashes of the range, in seq order."""
    anchor: bytes
    """The stored chain hash the range started from."""
    last_chain: bytes
    chains: dict[int, bytes]
    """Stored chain hash at each requested seq (checkpoint size - 1) inside the range."""
    blocks: dict[int, bytes]
    """Root of each aligned block of ``2**BLOCK_HEIGHT`` leaves inside the range, by its first
    leaf."""


def _check_range(
    url: str, snapshot: str, low: int, high: int, anchor: bytes | None, want: Sequence[int]
) -> _Range:
    wanted = set(want)
    chains: dict[int, bytes] = {}
    leaves: list[bytes] = []
    with store.connect(url) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        if anchor is None:
            row = conn.execute(
                "SELECT chain_hash FROM audit_entries WHERE seq = %s", [low - 1]
            ).fetchone()
            if row is None:
                return _Range(False, b"", b"", b"", {}, {})
            anchor = bytes(row[0])
        prev, expected = anchor, low
        for row in store.stream_entries(conn, low, high, prefetch=False):
            if not links(row, expected, prev):
                return _Range(False, b"", anchor, b"", {}, {})
            seq, _, digest, chain = row
            leaves.append(digest)
            if seq in wanted:
                chains[seq] = chain
            prev = chain
            expected += 1
        conn.rollback()
    return _Range(expected == high, b"".join(leaves), anchor, prev, chains, _blocks(leaves, low))


def _blocks(leaves: list[bytes], low: int) -> dict[int, bytes]:
    """The roots of the aligned blocks that lie wholly among ``leaves`` (leaf ``low`` first)."""
    size = 1 << BLOCK_HEIGHT
    first = -(-low // size) * size
    return {
        start: root_of(leaves[start - low : start - low + size])  # type: ignore[arg-type]
        for start in range(first, low + len(leaves) - size + 1, size)
    }


def verify_parallel(
    url: str,
    trust: Trust,
    trusted: Checkpoint | None = None,
    workers: int = 2,
    min_rows_per_worker: int = 100_000,
    allow_pruned: bool = False,
) -> VerifyResult:
    """Verify the log at ``url`` using ``workers`` processes; raise ``TamperingDetected``.

    Small logs (under ``min_rows_per_worker`` rows per worker) are verified sequentially.
    """
    with store.connect(url) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = str(conn.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
        head, _ = store.chain_head(conn)
        cps = store.checkpoints(conn)
        trust = trust.following(cps)
        low_high = conn.execute("SELECT min(seq), max(seq) FROM audit_entries").fetchone()
        first = (
            None if low_high is None or low_high[0] is None else (int(low_high[0]), b"", b"", b"")
        )
        top = -1 if first is None or low_high is None else int(low_high[1])
        try:
            compact, anchor = start_state(first, cps, trust, trusted, allow_pruned)
        except TamperingDetected:
            return _sequential(url, trust, trusted, allow_pruned)
        start = compact.size
        end = top + 1
        if workers < 2 or end - start < min_rows_per_worker * workers:
            return _sequential(url, trust, trusted, allow_pruned)
        bounds = [start + (end - start) * i // workers for i in range(workers + 1)]
        want = [cp.size - 1 for cp in cps if start < cp.size <= end]
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = [
                pool.submit(_check_range, url, snapshot, a, b, anchor if a == start else None, want)
                for a, b in itertools.pairwise(bounds)
            ]
            ranges = [f.result() for f in futures]
    joined = all(r.ok for r in ranges) and all(
        ranges[i].last_chain == ranges[i + 1].anchor for i in range(len(ranges) - 1)
    )
    if not joined:
        return _sequential(url, trust, trusted, allow_pruned)
    chains = {seq: chain for r in ranges for seq, chain in r.chains.items()}
    blocks = {start: root for r in ranges for start, root in r.blocks.items()}
    leaves = b"".join(r.leaves for r in ranges)
    pending = [cp for cp in cps if cp.size > start]
    good, verified, latest = start, 0, None
    try:
        for cp in pending:
            if cp.size > end:
                open_checkpoint(cp, trust)
                raise TamperingDetected(TamperKind.TRUNCATED, end, f"checkpoint of size {cp.size}")
            _extend(compact, leaves, blocks, start, cp.size)
            latest = check_checkpoint(cp, trust, compact, chains[cp.size - 1], good)
            good, verified = cp.size, verified + 1
        _extend(compact, leaves, blocks, start, end)
        if head >= end:
            raise TamperingDetected(TamperKind.TRUNCATED, end, f"chain head is at seq {head}")
    except TamperingDetected:
        return _sequential(url, trust, trusted, allow_pruned)
    return VerifyResult(start, end, compact.root(), verified, latest)


def _extend(
    compact: CompactRange, leaves: bytes, blocks: dict[int, bytes], start: int, size: int
) -> None:
    """Append leaves ``[compact.size, size)`` (leaf ``i`` at ``leaves[(i - start) * 32:]``), a
    block's root where a whole block fits."""
    block = 1 << BLOCK_HEIGHT
    while compact.size < size:
        root = blocks.get(compact.size)
        if root is not None and compact.size + block <= size:
            compact.append_subtree(root, BLOCK_HEIGHT)
            continue
        stop = min(size, (compact.size // block + 1) * block)  # the next block boundary
        offsets = range((compact.size - start) * HASH_SIZE, (stop - start) * HASH_SIZE, HASH_SIZE)
        compact.extend(leaves[offset : offset + HASH_SIZE] for offset in offsets)


def _sequential(
    url: str, trust: Trust, trusted: Checkpoint | None, allow_pruned: bool
) -> VerifyResult:
    with store.connect(url) as conn:
        return verify_database(conn, trust, trusted, allow_pruned)
