"""Building RFC 9162 inclusion and consistency proofs.

Every proof hash is the Merkle tree hash (MTH) of a range of leaves: ``inclusion_ranges`` and
``consistency_ranges`` say which, ``subtrees`` splits a range into the perfect subtrees whose
hashes fold into its MTH. ``Tree`` answers from all subtree hashes in memory (for exports, which
prove every entry); ``stored_proofs`` answers from the tree nodes stored in the database. Proofs
come out in the decomposed form ``verify`` checks: ``inner`` siblings up to the split point, then
``border`` left siblings.
"""

from __future__ import annotations

from collections.abc import Sequence

from audit.errors import ProofError
from audit.rfc6962 import EMPTY_ROOT, CompactRange, hash_children, root_of
from audit.types import Hash

LeafRange = tuple[int, int]
"""Leaves ``[start, end)``."""


def _decompose(index: int, size: int) -> tuple[int, int]:
    inner = (index ^ (size - 1)).bit_length()
    return inner, (index >> inner).bit_count()


def _node(level: int, index: int) -> LeafRange:
    return index << level, (index + 1) << level


def _path(index: int, level: int, size: int, inner: int) -> list[LeafRange]:
    """Siblings of node ``index`` at ``level`` in a tree of ``size`` leaves."""
    ranges: list[LeafRange] = []
    for j in range(inner):
        start = ((index >> j) ^ 1) << (level + j)
        ranges.append((start, min(start + (1 << (level + j)), size)))
    for j in range(inner, index.bit_length()):
        if (index >> j) & 1:
            ranges.append(_node(level + j, (index >> j) - 1))
    return ranges


def inclusion_ranges(index: int, size: int) -> list[LeafRange]:
    """The leaf ranges whose MTHs are the audit path of leaf ``index`` in a tree of ``size``."""
    if not 0 <= index < size:
        raise ProofError(f"inclusion proof: got index {index}, size {size}")
    inner, _ = _decompose(index, size)
    return _path(index, 0, size, inner)


def consistency_ranges(size1: int, size2: int) -> list[LeafRange]:
    """The leaf ranges whose MTHs prove the tree of ``size1`` a prefix of the one of ``size2``;
    none if ``size1`` is 0 or ``size2``."""
    if not 0 <= size1 <= size2:
        raise ProofError(f"consistency proof: got sizes {size1}, {size2}")
    if size1 in (0, size2):
        return []
    inner, _ = _decompose(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1
    index = (size1 - 1) >> shift
    seed = [] if size1 == 1 << shift else [_node(shift, index)]
    return seed + _path(index, shift, size2, inner - shift)


def subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """(level, index) of the perfect subtrees covering leaves ``[start, end)``, left to right,
    as MTH splits the range (``start`` aligned to the largest power of 2 <= the width, as every
    proof range is); ``fold`` of their hashes is the range's MTH."""
    nodes: list[tuple[int, int]] = []
    while start < end:
        level = (end - start).bit_length() - 1
        while start & ((1 << level) - 1):
            level -= 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def fold(hashes: Sequence[Hash]) -> Hash:
    """The MTH of adjacent perfect subtrees (largest first) from their hashes."""
    node = hashes[-1]
    for left in reversed(hashes[:-1]):
        node = hash_children(left, node)
    return node


class Tree:
    """All complete subtree hashes of a list of leaf hashes; proofs for any size up to it."""

    def __init__(self, leaves: Sequence[Hash]) -> None:
        self.levels: list[list[Hash]] = [list(leaves)]
        while len(self.levels[-1]) > 1:
            below = self.levels[-1]
            self.levels.append(
                [hash_children(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
            )

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def _range_root(self, start: int, end: int) -> Hash:
        return fold([self.levels[level][index] for level, index in subtrees(start, end)])

    def root(self, size: int) -> Hash:
        if not 0 <= size <= self.size:
            raise ProofError(f"root: got size {size}, want 0..{self.size}")
        return self._range_root(0, size) if size else EMPTY_ROOT

    def inclusion(self, index: int, size: int) -> list[Hash]:
        """Audit path of leaf ``index`` in the tree of the first ``size`` leaves.

        Preconditions: ``0 <= index < size <= self.size``.
        """
        if size > self.size:
            raise ProofError(f"inclusion proof: got size {size}, have {self.size}")
        return [self._range_root(*r) for r in inclusion_ranges(index, size)]

    def consistency(self, size1: int, size2: int) -> list[Hash]:
        """Proof that the tree of ``size1`` leaves is a prefix of the one of ``size2`` leaves.

        Preconditions: ``0 <= size1 <= size2 <= self.size``; empty if size1 is 0 or size2.
        """
        if size2 > self.size:
            raise ProofError(f"consistency proof: got size {size2}, have {self.size}")
        return [self._range_root(*r) for r in consistency_ranges(size1, size2)]


def consistency_from_compact(old: CompactRange, new_leaves: Sequence[bytes]) -> list[Hash]:
    """RFC 9162 consistency proof from the tree ``old`` describes to that tree extended by
    ``new_leaves``, without the old leaves: every proof node left of the old size is one of the
    old tree's compact-range nodes (or a run of them), every node right of it is built from the
    new leaves. For the sealer, which keeps compact ranges, not trees."""
    size1, size2 = old.size, old.size + len(new_leaves)
    if size1 in (0, size2):
        return []
    spans, start = [], 0
    for bit, node in zip(
        (b for b in reversed(range(size1.bit_length())) if size1 >> b & 1), old.nodes, strict=True
    ):
        spans.append((start, start + (1 << bit), node))
        start += 1 << bit

    def mth(low: int, high: int) -> Hash:
        if low >= size1:
            return root_of(Hash(leaf) for leaf in new_leaves[low - size1 : high - size1])
        inside = [(begin, end, node) for begin, end, node in spans if low <= begin and end <= high]
        if high > size1 or sum(end - begin for begin, end, _ in inside) != high - low:
            raise ProofError(f"consistency proof: [{low}, {high}) is not made of old nodes")
        covering = [node for _, _, node in inside]
        node = covering[-1]
        for left in reversed(covering[:-1]):
            node = hash_children(left, node)
        return node

    def subproof(low: int, high: int, whole: bool) -> list[Hash]:
        """SUBPROOF(size1 - low, D[low:high], whole) of RFC 9162 section 2.1.4.1."""
        if size1 == high:
            return [] if whole else [mth(low, high)]
        split = 1 << ((high - low - 1).bit_length() - 1)
        if size1 <= low + split:
            return [*subproof(low, low + split, whole), mth(low + split, high)]
        return [*subproof(low + split, high, False), mth(low, low + split)]

    return subproof(0, size2, True)
