"""Checking RFC 9162 inclusion and consistency proofs. Functions raise; they never return a bool.

``ProofError``: the inputs are malformed (sizes, indices, proof length, hash length).
``RootMismatchError``: a well-formed proof leads to another root than the expected one.
The algorithm follows RFC 9162 section 2.1.3.2 / 2.1.4.2 in the decomposed form of
transparency-dev/merkle: a proof is ``inner`` siblings below the split point plus ``border``
left siblings on the right edge.
"""

from __future__ import annotations

from collections.abc import Sequence

from audit.errors import ProofError, RootMismatchError
from audit.rfc6962 import hash_children
from audit.types import HASH_SIZE, Hash


def _decompose(index: int, size: int) -> tuple[int, int]:
    inner = (index ^ (size - 1)).bit_length()
    return inner, (index >> inner).bit_count()


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, sibling in enumerate(proof):
        seed = hash_children(sibling, seed) if (index >> i) & 1 else hash_children(seed, sibling)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, sibling in enumerate(proof):
        if (index >> i) & 1:
            seed = hash_children(sibling, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for sibling in proof:
        seed = hash_children(sibling, seed)
    return seed


def _check_hashes(what: str, hashes: Sequence[bytes]) -> None:
    for i, value in enumerate(hashes):
        if len(value) != HASH_SIZE:
            raise ProofError(f"{what}[{i}]: got {len(value)} bytes, want {HASH_SIZE}")


def _match(got: bytes, want: bytes) -> None:
    if got != want:
        raise RootMismatchError(got, want)


def root_from_inclusion_proof(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> Hash:
    """The root implied by ``proof`` for leaf ``index`` of a tree of ``size`` leaves.

    Preconditions: ``0 <= index < size``; 32-byte hashes; ``len(proof)`` as RFC 9162 implies.
    """
    if not 0 <= index < size:
        raise ProofError(f"index out of range: got index {index}, want < size {size}")
    _check_hashes("leaf hash", [leaf_hash])
    _check_hashes("proof", proof)
    inner, border = _decompose(index, size)
    if len(proof) != inner + border:
        raise ProofError(f"wrong proof size: got {len(proof)}, want {inner + border}")
    node = _chain_inner(leaf_hash, proof[:inner], index)
    return Hash(_chain_border_right(node, proof[inner:]))


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise unless ``proof`` shows leaf ``index`` is in the tree of ``size`` with ``root``."""
    _check_hashes("root", [root])
    _match(root_from_inclusion_proof(index, size, leaf_hash, proof), root)


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Raise unless ``proof`` shows the tree (size1, root1) is a prefix of (size2, root2).

    Preconditions: ``0 <= size1 <= size2``; 32-byte hashes; an empty proof when ``size1`` is 0
    or equals ``size2``, else exactly the length RFC 9162 implies.
    """
    _check_hashes("root", [root1, root2])
    _check_hashes("proof", proof)
    if not 0 <= size1 <= size2:
        raise ProofError(f"sizes out of order: got size1 {size1}, size2 {size2}")
    if size1 == size2:
        if proof:
            raise ProofError(f"size1 == size2: got {len(proof)} proof hashes, want 0")
        _match(root2, root1)
        return
    if size1 == 0:
        if proof:
            raise ProofError(f"size1 == 0: got {len(proof)} proof hashes, want 0")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    inner, border = _decompose(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1
    inner -= shift
    seed, start = (root1, 0) if size1 == 1 << shift else (proof[0], 1)
    if len(proof) != start + inner + border:
        raise ProofError(f"wrong proof size: got {len(proof)}, want {start + inner + border}")
    rest = proof[start:]
    mask = (size1 - 1) >> shift
    hash1 = _chain_border_right(_chain_inner_right(seed, rest[:inner], mask), rest[inner:])
    _match(hash1, root1)
    hash2 = _chain_border_right(_chain_inner(seed, rest[:inner], mask), rest[inner:])
    _match(hash2, root2)
