"""Merkle code against data: our reference vectors (generate.py) and published ones."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from audit.errors import ProofError, RootMismatchError
from audit.proof import Tree
from audit.rfc6962 import EMPTY_ROOT, hash_leaf, root_of
from audit.verify import verify_consistency, verify_inclusion
from tests.audit.vectors import generate

VECTORS = Path(__file__).parent / "vectors"
ERRORS: dict[str | None, type[Exception] | None] = {
    None: None,
    "proof": ProofError,
    "root_mismatch": RootMismatchError,
}


def _load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def _b(text: str) -> bytes:
    return base64.b64decode(text)


PUBLISHED = _load("published.json")
INCLUSION = _load("inclusion.json") + PUBLISHED["inclusion"]
CONSISTENCY = _load("consistency.json") + PUBLISHED["consistency"]


def _ids(cases: list[dict[str, Any]], *keys: str) -> list[str]:
    return [" ".join(f"{k}={c[k]}" for k in keys) + f" {c['desc']}" for c in cases]


def test_vector_files_are_what_the_reference_script_writes() -> None:
    for name, text in generate.render().items():
        assert (VECTORS / name).read_text(encoding="utf-8") == text, f"regenerate {name}"


def test_published_roots_are_pinned() -> None:
    roots = _load("roots.json")["roots"]
    assert roots[0] == PUBLISHED["empty_root"] == EMPTY_ROOT.hex()
    assert roots[8] == PUBLISHED["root_size_8"]
    leaves = [hash_leaf(bytes.fromhex(h)) for h in _load("roots.json")["leaves"]]
    assert [root_of(leaves[:n]).hex() for n in range(9)] == roots
    tree = Tree(leaves)
    assert [tree.root(n).hex() for n in range(9)] == roots


@pytest.mark.parametrize("case", INCLUSION, ids=_ids(INCLUSION, "index", "size"))
def test_inclusion_vectors(case: dict[str, Any]) -> None:
    want = ERRORS[case["want_error"]]
    args = (case["index"], case["size"], _b(case["leaf_hash"]), [_b(p) for p in case["proof"]])
    if want is None:
        verify_inclusion(*args, _b(case["root"]))
    else:
        with pytest.raises(want):
            verify_inclusion(*args, _b(case["root"]))


@pytest.mark.parametrize("case", CONSISTENCY, ids=_ids(CONSISTENCY, "size1", "size2"))
def test_consistency_vectors(case: dict[str, Any]) -> None:
    want = ERRORS[case["want_error"]]
    args = (case["size1"], case["size2"], [_b(p) for p in case["proof"]])
    roots = (_b(case["root1"]), _b(case["root2"]))
    if want is None:
        verify_consistency(*args, *roots)
    else:
        with pytest.raises(want):
            verify_consistency(*args, *roots)


def test_built_proofs_equal_the_happy_path_vectors() -> None:
    leaves = [hash_leaf(bytes.fromhex(h)) for h in _load("roots.json")["leaves"]]
    tree = Tree(leaves)
    for case in INCLUSION:
        if case["desc"] == "happy path":
            got = tree.inclusion(case["index"], case["size"])
            assert [base64.b64encode(h).decode() for h in got] == case["proof"]
    for case in CONSISTENCY:
        if case["desc"] == "happy path":
            got = tree.consistency(case["size1"], case["size2"])
            assert [base64.b64encode(h).decode() for h in got] == case["proof"]


def test_root_mismatch_is_distinct_from_a_malformed_proof() -> None:
    assert not issubclass(RootMismatchError, ProofError)
    assert not issubclass(ProofError, RootMismatchError)
