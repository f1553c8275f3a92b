"""The cheap stage on the real encoder (int8 ONNX all-MiniLM-L6-v2): vectors that put documents
of a type together, a head that labels unseen documents and uses no model-server tokens, and
artifacts that fail closed when their bytes are not the ones named."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from appliance.backends.interfaces import TokenUsage
from appliance.cascade.embedding import EmbeddingLabeller
from appliance.cascade.encoder import Encoder, EncoderInvalid
from appliance.cascade.head import HeadInvalid, load_current, load_head, promote, save_head
from appliance.cascade.training import fit_head
from appliance.classification.taxonomy import load_taxonomy
from harness.corpus import labelled_texts

TAXONOMY = load_taxonomy(None)


@pytest.fixture(scope="module")
def encoder(encoder_folder: Path) -> Encoder:
    return Encoder(encoder_folder, threads=2)


def test_documents_of_a_type_are_nearer_each_other_than_other_types(encoder: Encoder) -> None:
    bill, other_bill, lab = encoder.encode([
        "Invoice 4411: balance due $240.00 by the end of the month; insurance paid $100.00.",
        "Statement of account: office visit charges $180.00, payment received with thanks.",
        "Laboratory report: hemoglobin 13.1 g/dL, glucose fasting 92 mg/dL, creatinine normal.",
    ]).vectors  # fmt: skip
    assert np.allclose(np.linalg.norm([bill, lab], axis=1), 1.0, atol=1e-3)
    assert float(bill @ other_bill) > float(bill @ lab) + 0.1


def test_a_document_past_the_token_limit_is_read_from_its_head(encoder: Encoder) -> None:
    long, huge = "Appointment reminder. " * 200, "Appointment reminder. " * 50_000  # 1.1 MB
    encoded = encoder.encode(["Appointment reminder.", long, huge])
    assert encoded.truncated == (False, True, True)
    assert np.allclose(encoded.vectors[1], encoded.vectors[2], atol=1e-5)  # the same head read


def trained_head(encoder: Encoder, tmp_path: Path) -> EmbeddingLabeller:
    texts = labelled_texts(200, seed=1)
    vectors = encoder.encode([t.text for t in texts]).vectors
    head = fit_head(vectors, [t.label for t in texts], TAXONOMY, encoder.digest)
    return EmbeddingLabeller(encoder, save_head(head, tmp_path), TAXONOMY)


def test_the_head_labels_documents_it_was_not_trained_on(encoder: Encoder, tmp_path: Path) -> None:
    stage = trained_head(encoder, tmp_path)
    unseen = labelled_texts(50, seed=2)
    answers = [stage.label(t.text) for t in unseen]
    right = sum(a.scored.label == t.label for a, t in zip(answers, unseen, strict=True))
    assert right >= 45, right
    assert {a.usage for a in answers} == {TokenUsage(0, 0)}  # known to use no server tokens
    (artifact,) = tmp_path.glob("head-*.json")
    assert stage.model.weights_digest == "sha256:" + artifact.name[5:-5]


def test_a_head_trained_on_another_encoder_is_refused(encoder: Encoder, tmp_path: Path) -> None:
    head = fit_head(np.eye(2, 384, dtype=np.float32), ["BILLING", "TEST_RESULTS"], TAXONOMY,
                    "0" * 64)  # fmt: skip
    with pytest.raises(HeadInvalid, match="another encoder"):
        EmbeddingLabeller(encoder, save_head(head, tmp_path), TAXONOMY)


def test_artifacts_whose_bytes_changed_fail_closed(
    encoder_folder: Path, encoder: Encoder, tmp_path: Path
) -> None:
    head = fit_head(np.eye(2, 384, dtype=np.float32), ["BILLING", "TEST_RESULTS"], TAXONOMY,
                    encoder.digest)  # fmt: skip
    stored = save_head(head, tmp_path / "heads")
    promote(stored, tmp_path / "heads")
    current = load_current(tmp_path / "heads")  # the pointer finds it, its bytes checked
    assert current is not None and current.digest == stored.digest
    stored.path.write_bytes(
        stored.path.read_bytes().replace(b'"temperature": 1.0', b'"temperature": 9.0')
    )
    with pytest.raises(HeadInvalid, match="bytes its name says"):
        load_head(stored.path)

    copy = tmp_path / "encoder"
    shutil.copytree(encoder_folder, copy)
    model = bytearray((copy / "model.onnx").read_bytes())
    model[-1] ^= 1
    (copy / "model.onnx").write_bytes(bytes(model))
    with pytest.raises(EncoderInvalid, match="not the file its manifest names"):
        Encoder(copy, threads=1)
