"""Reference generator of the Merkle test vectors in this folder (run it to regenerate them).

An independent, literal transcription of RFC 9162 MTH / PATH / SUBPROOF over raw leaf data, using
only hashlib (nothing from ``audit``), so the vectors check the library rather than echo it.
Leaves: the RFC 6962 test leaves of transparency-dev/merkle ``testonly/constants.go``. Each case
has ``desc`` and ``want_error`` (null, "proof" for a malformed proof, "root_mismatch").

    python tests/audit/vectors/generate.py
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
LEAVES = [
    bytes.fromhex(h)
    for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
              "606162636465666768696a6b6c6d6e6f")
]  # fmt: skip


def mth(data: list[bytes]) -> bytes:
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + mth(data[:k]) + mth(data[k:])).digest()


def path(m: int, data: list[bytes]) -> list[bytes]:
    n = len(data)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*path(m, data[:k]), mth(data[k:])]
    return [*path(m - k, data[k:]), mth(data[:k])]


def subproof(m: int, data: list[bytes], complete: bool) -> list[bytes]:
    n = len(data)
    if m == n:
        return [] if complete else [mth(data)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*subproof(m, data[:k], complete), mth(data[k:])]
    return [*subproof(m - k, data[k:], False), mth(data[:k])]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 0x10]) + h[1:]


def case_adder(
    cases: list[dict[str, Any]], base: dict[str, Any], proof: list[bytes]
) -> Callable[..., None]:
    """``case(desc, want_error, proof, **overrides)`` appends one vector built on ``base``."""

    def case(desc: str, want: str | None, case_proof: list[bytes] = proof, **over: Any) -> None:
        vector = {**base, "proof": [b64(p) for p in case_proof], **over}
        cases.append({**vector, "desc": desc, "want_error": want})

    return case


def inclusion_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for size in range(1, len(LEAVES) + 1):
        root = mth(LEAVES[:size])
        for index in range(size):
            leaf = mth([LEAVES[index]])
            proof = path(index, LEAVES[:size])
            base = {"index": index, "size": size, "leaf_hash": b64(leaf), "root": b64(root)}

            case = case_adder(cases, base, proof)

            case("happy path", None)
            case("wrong root", "root_mismatch", root=b64(flip(root)))
            case("wrong leaf", "root_mismatch", leaf_hash=b64(flip(leaf)))
            case("index out of range", "proof", index=size)
            case("trailing garbage", "proof", [*proof, root])
            if proof:
                case("modified proof[0]", "root_mismatch", [flip(proof[0]), *proof[1:]])
                case("truncated proof", "proof", proof[:-1])
                case("short hash in proof", "proof", [proof[0][:31], *proof[1:]])
    return cases


def consistency_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for size2 in range(1, len(LEAVES) + 1):
        for size1 in range(0, size2 + 1):
            root1, root2 = mth(LEAVES[:size1]), mth(LEAVES[:size2])
            proof = [] if size1 in (0, size2) else subproof(size1, LEAVES[:size2], True)
            base = {"size1": size1, "size2": size2, "root1": b64(root1), "root2": b64(root2)}

            case = case_adder(cases, base, proof)

            case("happy path", None)
            case("extra hash", "proof", [*proof, root2])
            if size1 > 0:
                case("wrong root2", "root_mismatch", root2=b64(flip(root2)))
                case("swapped sizes", "proof", size1=size2, size2=size1 - 1)
            if 0 < size1 < size2:
                case("wrong root1", "root_mismatch", root1=b64(flip(root1)))
                case("modified proof[-1]", "root_mismatch", [*proof[:-1], flip(proof[-1])])
                case("empty proof", "proof", [])
                case("truncated proof", "proof", proof[:-1])
    return cases


def roots() -> dict[str, Any]:
    return {
        "desc": "MTH of the first n RFC 6962 test leaves (n = list index)",
        "leaves": [b.hex() for b in LEAVES],
        "roots": [mth(LEAVES[:n]).hex() for n in range(len(LEAVES) + 1)],
    }


def dump(data: Any) -> str:
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def render() -> dict[str, str]:
    return {
        "inclusion.json": dump(inclusion_cases()),
        "consistency.json": dump(consistency_cases()),
        "roots.json": dump(roots()),
    }


if __name__ == "__main__":
    for name, text in render().items():
        (HERE / name).write_text(text, encoding="utf-8")
        print("wrote", HERE / name)
