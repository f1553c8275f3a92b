"""RFC 9162 proofs from the stored tree nodes (``tree_nodes``): two SELECTs of O(log n) hashes.

Each proof hash is the MTH of a leaf range (``proof.inclusion_ranges``/``consistency_ranges``),
split into perfect subtrees, each folded from the stored level at or below it. Nothing read is
trusted: a wrong stored hash gives a proof that fails against the signed checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from audit.errors import StoreError
from audit.proof import LeafRange, consistency_ranges, fold, inclusion_ranges, subtrees
from audit.rfc6962 import hash_children
from audit.tree_nodes import stored_level
from audit.types import Hash

Span = tuple[int, int, int]
"""(stored level, first index, end index): the stored hashes a perfect subtree folds from."""

# Keys, not ranges: the planner estimates ``= ANY`` and equality joins well enough to use the
# primary keys, but may scan a whole table for a join on ranges.
_NODES = (
    "SELECT DISTINCT ON (n.level, n.index) n.level, n.index, n.hash"
    " FROM unnest(%s::smallint[], %s::bigint[]) AS w(level, index)"
    " JOIN audit_tree_nodes AS n ON n.level = w.level AND n.index = w.index"
    " ORDER BY n.level, n.index, n.id DESC"
)
_LEAVES = "SELECT 0, seq, entry_hash FROM audit_entries WHERE seq = ANY(%s::bigint[])"


def inclusion(conn: psycopg.Connection[Any], index: int, size: int) -> list[Hash]:
    """Audit path of leaf ``index`` in the tree of the first ``size`` sealed entries."""
    return range_hashes(conn, inclusion_ranges(index, size))


def consistency(conn: psycopg.Connection[Any], size1: int, size2: int) -> list[Hash]:
    """Consistency proof from the tree of ``size1`` sealed entries to the one of ``size2``."""
    return range_hashes(conn, consistency_ranges(size1, size2))


def _span(level: int, index: int) -> Span:
    low = stored_level(level)
    return low, index << (level - low), (index + 1) << (level - low)


def range_hashes(conn: psycopg.Connection[Any], ranges: Sequence[LeafRange]) -> list[Hash]:
    """The MTH of each leaf range."""
    plan = [[_span(level, index) for level, index in subtrees(*r)] for r in ranges]
    have = _fetch(conn, {span for spans in plan for span in spans})
    return [fold([_perfect(have, span) for span in spans]) for spans in plan]


def _fetch(conn: psycopg.Connection[Any], spans: Iterable[Span]) -> dict[tuple[int, int], bytes]:
    keys = [(level, index) for level, low, high in spans for index in range(low, high)]
    nodes = [key for key in keys if key[0]]
    leaves = [index for level, index in keys if not level]
    have: dict[tuple[int, int], bytes] = {}
    for query, params in (
        (_NODES, [[level for level, _ in nodes], [index for _, index in nodes]]),
        (_LEAVES, [leaves]),
    ):
        if params[0]:
            rows = conn.execute(query, params, binary=True)
            have.update(((int(level), int(index)), bytes(h)) for level, index, h in rows)
    return have


def _perfect(have: dict[tuple[int, int], bytes], span: Span) -> Hash:
    level, low, high = span
    try:
        row = [have[level, index] for index in range(low, high)]
    except KeyError as exc:
        where = "audit_tree_nodes" if level else "audit_entries"
        raise StoreError(f"tree node {exc.args[0]} is missing from {where}") from exc
    while len(row) > 1:
        row = [hash_children(row[i], row[i + 1]) for i in range(0, len(row), 2)]
    return Hash(row[0])
