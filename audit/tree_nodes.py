"""The Merkle tree's stored nodes (``audit_tree_nodes``, migration 0008), so that a proof reads
O(log n) hashes instead of every leaf (``stored_proofs``).

Stored: the hash of every perfect subtree whose level is a multiple of ``STRIDE`` (leaves, level
0, are ``audit_entries.entry_hash``); a node at another level folds from at most
``2 ** (STRIDE - 1)`` stored ones. With 4: one row per 15 entries (11 bytes per entry on disk),
and a proof in a tree of 1,000,000 reads about 85 hashes (storing every level: 15 times the
rows for proofs as fast, see docs/benchmarks.md). The sealer writes the nodes each batch
completes in the batch's transaction; the migration writes those of the log it finds. Changing
``STRIDE`` needs a migration that rewrites the table.

Rows are never changed; the newest row of a (level, index) wins. A log rolled back and then
accepted (``seal --accept-restore``) re-seals positions whose old nodes stay in the table.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg

from audit import store
from audit.errors import StoreError
from audit.rfc6962 import CompactRange, hash_children

STRIDE = 4
MAX_LEVEL = 63
FILL_CHUNK = 20_000
"""Leaves read (and nodes copied) per round trip when filling the table."""

Node = tuple[int, int, bytes]
"""(level, index, hash): the perfect subtree over leaves ``index << level`` up to (without)
``(index + 1) << level``."""

log = logging.getLogger(__name__)

_COPY = "COPY audit_tree_nodes (level, index, hash) FROM STDIN"
_LAST = (
    "SELECT w.level, (SELECT max(n.index) FROM audit_tree_nodes AS n"
    "                 WHERE n.level = w.level AND n.index < w.bound)"
    " FROM unnest(%s::smallint[], %s::bigint[]) AS w(level, bound)"
)


def stored_level(level: int) -> int:
    """The highest stored level at or below ``level`` (0: the leaves)."""
    return level - level % STRIDE


def completed(before: CompactRange, leaves: Iterable[bytes]) -> list[Node]:
    """The stored nodes that appending ``leaves`` to the tree ``before`` describes completes."""
    nodes: list[bytes] = list(before.nodes)
    size, children, stride = before.size, hash_children, STRIDE
    done: list[Node] = []
    for leaf in leaves:
        node, bits, level = leaf, size, 0
        while bits & 1:
            node = children(nodes.pop(), node)
            bits >>= 1
            level += 1
            if level % stride == 0:
                done.append((level, size >> level, node))
        nodes.append(node)
        size += 1
    return done


def insert(conn: psycopg.Connection[Any], nodes: Sequence[Node]) -> None:
    if not nodes:
        return
    with conn.cursor().copy(_COPY) as copy:
        for node in nodes:
            copy.write_row(node)


def fill(conn: psycopg.Connection[Any], stop: int, present: Mapping[int, int] | None = None) -> int:
    """Write the nodes of leaves ``[0, stop)`` but, at each level, those up to the index
    ``present`` gives (stored already); stream the leaves (O(log n) memory). Return how many."""
    present = present or {}
    compact, written = CompactRange(), 0
    for low in range(0, stop, FILL_CHUNK):
        leaves = store.entry_hashes(conn, low, min(low + FILL_CHUNK, stop))
        if len(leaves) != min(FILL_CHUNK, stop - low):
            raise StoreError(f"tree nodes: entries from seq {low} are missing (audit-tool verify)")
        nodes = [n for n in completed(compact, leaves) if n[1] > present.get(n[0], -1)]
        compact.extend(leaves)
        insert(conn, nodes)
        written += len(nodes)
    return written


def write(conn: psycopg.Connection[Any], before: CompactRange, leaves: Sequence[bytes]) -> None:
    """The sealer's part, in its batch's transaction: the nodes ``leaves`` complete after the
    sealed log ``before``. First, if the table lacks nodes of ``before`` (entries sealed by the
    previous release after the migration ran), write those (a one-off pass over the log)."""
    if not leaves:
        return
    size = before.size
    levels = [level for level in range(STRIDE, MAX_LEVEL, STRIDE) if size >> level]
    rows = conn.execute(_LAST, [levels, [size >> level for level in levels]]).fetchall()
    last = {int(level): -1 if index is None else int(index) for level, index in rows}
    if any(last[level] < (size >> level) - 1 for level in levels):
        log.warning("audit tree nodes: writing the missing nodes of %d sealed entries", size)
        fill(conn, size, last)
    insert(conn, completed(before, leaves))
