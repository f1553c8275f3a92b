"""RFC 6962 / RFC 9162 Merkle tree hashing with SHA-256.

``hash_leaf(d) = SHA-256(0x00 || d)``, ``hash_children(l, r) = SHA-256(0x01 || l || r)``, and the
root of the empty tree is ``SHA-256("")``. ``CompactRange`` keeps the O(log n) perfect-subtree
roots of a growing tree, so a root is extended leaf by leaf without holding all leaves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from hashlib import sha256
from typing import cast

from audit.errors import ProofError
from audit.types import HASH_SIZE, Hash

EMPTY_ROOT = Hash(sha256(b"").digest())
_LEAF = b"\x00"
_NODE = b"\x01"


def hash_leaf(data: bytes) -> Hash:
    """The one leaf hasher (an audit entry's hash is its leaf hash, see ``chain.entry_hash``)."""
    return cast(Hash, sha256(_LEAF + data).digest())  # cast: cheaper than calling Hash


def hash_children(left: bytes, right: bytes) -> Hash:
    """The one interior-node hasher."""
    return cast(Hash, sha256(_NODE + left + right).digest())


class CompactRange:
    """Roots of the perfect subtrees covering leaves ``[0, size)``, largest (leftmost) first."""

    __slots__ = ("_nodes", "size")

    def __init__(self, size: int = 0, nodes: Sequence[Hash] = ()) -> None:
        """Precondition: ``len(nodes)`` is the number of set bits of ``size``."""
        if size < 0 or len(nodes) != size.bit_count():
            raise ProofError(f"compact range: got {len(nodes)} nodes, want {size.bit_count()}")
        self.size = size
        self._nodes: list[bytes] = list(nodes)

    @property
    def nodes(self) -> tuple[Hash, ...]:
        return tuple(Hash(n) for n in self._nodes)

    def append(self, leaf: bytes) -> None:
        self.extend((leaf,))

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Add leaf hashes; each merges the equal-height subtrees it completes (one per trailing
        set bit of the size). The one merge of the package, and the hot loop of verification:
        plain ``bytes`` and locals, no wrappers."""
        nodes, size, children = self._nodes, self.size, hash_children
        for leaf in leaves:
            node, bits = leaf, size
            while bits & 1:
                node = children(nodes.pop(), node)
                bits >>= 1
            nodes.append(node)
            size += 1
        self.size = size

    def append_subtree(self, root: bytes, height: int) -> None:
        """Add the root of a perfect subtree of ``2**height`` leaves (a block a verification
        worker hashed). Precondition: the size is a multiple of ``2**height``."""
        if self.size % (1 << height):
            raise ProofError(f"compact range: size {self.size} is not aligned to 2**{height}")
        nodes, bits, node = self._nodes, self.size >> height, root
        while bits & 1:
            node = hash_children(nodes.pop(), node)
            bits >>= 1
        nodes.append(node)
        self.size += 1 << height

    def root(self) -> Hash:
        if not self._nodes:
            return EMPTY_ROOT
        node = Hash(self._nodes[-1])
        for left in reversed(self._nodes[:-1]):
            node = hash_children(left, node)
        return node

    def to_bytes(self) -> bytes:
        return b"".join(self._nodes)

    @classmethod
    def from_bytes(cls, size: int, blob: bytes) -> CompactRange:
        if len(blob) != HASH_SIZE * size.bit_count():
            raise ProofError(f"compact range blob: got {len(blob)} bytes for size {size}")
        return cls(size, [Hash(blob[i : i + HASH_SIZE]) for i in range(0, len(blob), HASH_SIZE)])


def root_of(leaves: Iterable[Hash]) -> Hash:
    """Merkle tree hash (MTH) of a list of leaf hashes."""
    compact = CompactRange()
    compact.extend(leaves)
    return compact.root()
