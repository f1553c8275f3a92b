"""Property tests: proofs of random trees verify, and any change to them is caught."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.errors import ProofError, RootMismatchError
from audit.proof import Tree, consistency_from_compact
from audit.rfc6962 import CompactRange, hash_leaf, root_of
from audit.types import Hash
from audit.verify import verify_consistency, verify_inclusion
from tests.audit.vectors import generate

MAX = 300


def _leaves(n: int) -> list[Hash]:
    return [hash_leaf(i.to_bytes(4, "big")) for i in range(n)]


LEAVES = _leaves(MAX)
TREE = Tree(LEAVES)


@st.composite
def index_and_size(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX))
    return draw(st.integers(0, size - 1)), size


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    size2 = draw(st.integers(1, MAX))
    return draw(st.integers(0, size2)), size2


@settings(max_examples=300, deadline=None)
@given(index_and_size(), st.integers(0, 255), st.integers(0, 31))
def test_inclusion_proofs_verify_and_detect_changes(
    case: tuple[int, int], which: int, byte: int
) -> None:
    index, size = case
    proof = TREE.inclusion(index, size)
    root = root_of(LEAVES[:size])
    verify_inclusion(index, size, LEAVES[index], proof, root)
    if proof:
        bad = list(proof)
        i = which % len(bad)
        bad[i] = Hash(bad[i][:byte] + bytes([bad[i][byte] ^ 1]) + bad[i][byte + 1 :])
        with pytest.raises(RootMismatchError):
            verify_inclusion(index, size, LEAVES[index], bad, root)
        with pytest.raises(ProofError):
            verify_inclusion(index, size, LEAVES[index], proof[:-1], root)
    other = (index + 1) % size
    if LEAVES[other] != LEAVES[index]:
        with pytest.raises((RootMismatchError, ProofError)):
            verify_inclusion(index, size, LEAVES[other], proof, root)


@settings(max_examples=300, deadline=None)
@given(two_sizes(), st.integers(0, 255))
def test_consistency_proofs_verify_and_detect_changes(case: tuple[int, int], which: int) -> None:
    size1, size2 = case
    proof = TREE.consistency(size1, size2)
    root1, root2 = root_of(LEAVES[:size1]), root_of(LEAVES[:size2])
    verify_consistency(size1, size2, proof, root1, root2)
    if proof:
        bad = list(proof)
        i = which % len(bad)
        bad[i] = Hash(hashlib.sha256(bad[i]).digest())
        with pytest.raises(RootMismatchError):
            verify_consistency(size1, size2, bad, root1, root2)
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, [*proof, root1], root1, root2)
    if 0 < size1 < size2:
        with pytest.raises(RootMismatchError):
            verify_consistency(size1, size2, proof, root_of(LEAVES[1 : size1 + 1]), root2)


@settings(max_examples=100, deadline=None)
@given(index_and_size())
def test_tree_proofs_match_the_literal_rfc_reference(case: tuple[int, int]) -> None:
    index, size = case
    data = [i.to_bytes(4, "big") for i in range(size)]
    assert TREE.inclusion(index, size) == generate.path(index, data)
    assert TREE.root(size) == generate.mth(data)
    if index:
        assert TREE.consistency(index, size) == generate.subproof(index, data, True)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, MAX))
def test_compact_range_round_trips_and_extends(size: int) -> None:
    compact = CompactRange()
    compact.extend(LEAVES[:size])
    again = CompactRange.from_bytes(size, compact.to_bytes())
    assert again.root() == compact.root() == TREE.root(size)
    again.extend(LEAVES[size:])
    assert again.root() == TREE.root(MAX)


@settings(max_examples=300, deadline=None)
@given(two_sizes())
def test_proofs_from_a_compact_range_match_the_full_tree(case: tuple[int, int]) -> None:
    """What the sealer sends witnesses (no old leaves, only the old compact range) is the same
    proof as one built from the whole tree."""
    size1, size2 = case
    old = CompactRange()
    old.extend(LEAVES[:size1])
    assert consistency_from_compact(old, LEAVES[size1:size2]) == TREE.consistency(size1, size2)
