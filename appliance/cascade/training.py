"""Training the cheap stage's head, and the eval gate that decides whether it replaces the one
in service (``appliance train``).

Examples come from a labelled JSON Lines file (``{"text": ..., "label": ...}`` per line) and
from reviewers' corrections: the appliance never stores document text, so a correction
applies to an example whose text has the reviewed result's content digest (the training file
brings the text, the review the label). Examples are split by that digest, so one document is
always on the same side, run after run:

- 70 % fit the head (scikit-learn's multinomial logistic regression over the embeddings);
- 15 % fit its temperature (``calibration.fit_temperature``);
- 15 % are the gate's: the candidate and the head in service are both measured there, at the
  stage's threshold, on the share of documents they keep and the accuracy of those kept.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression
from sqlalchemy import text
from sqlalchemy.engine import Engine

from appliance.cascade.calibration import (
    HeldOut,
    Temperature,
    calibration_error,
    fit_temperature,
    prediction,
)
from appliance.cascade.encoder import Encoder
from appliance.cascade.head import Head, StoredHead, save_head
from appliance.classification.content import content_sha256
from appliance.classification.taxonomy import Taxonomy
from appliance.errors import ApplianceError
from appliance.evaluation.metrics import COVERAGE_THRESHOLDS, CoveragePoint, accuracy_coverage

ABSENT_LABEL_BIAS = -30.0
"""A label without training examples gets no weights and this bias: probability about 0."""
CORRECTIONS = text("""
    SELECT DISTINCT ON (r.content_sha256) r.content_sha256, v.label
    FROM classification_reviews v JOIN classification_results r ON r.id = v.result_id
    WHERE v.taxonomy_version = :taxonomy_version
    ORDER BY r.content_sha256, v.created_at DESC, v.id
""")
"""The newest reviewer's label per document content, under the taxonomy in force."""


class TrainingError(ApplianceError):
    code = "training_failed"


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    digest: str
    """The text's content digest (what a result stores; what corrections match)."""

    def side(self) -> str:
        """``fit``, ``calibrate`` or ``gate``, by the digest: stable for the same text."""
        bucket = int(self.digest[:8], 16) % 20
        return "fit" if bucket < 14 else "calibrate" if bucket < 17 else "gate"


@dataclass(frozen=True)
class Margins:
    """How much worse than the head in service a candidate may be and still be promoted."""

    accuracy: float = 0.01
    """On the documents each keeps at the stage's threshold."""
    share: float = 0.05
    """Of the documents each keeps."""
    min_kept_accuracy: float = 0.9
    """What any promoted head must reach on what it keeps, a first one included."""


@dataclass(frozen=True)
class StageFigures:
    """A head measured on the gate's documents at the stage's threshold."""

    kept_share: float
    kept_accuracy: float | None
    accuracy: float
    ece_uncalibrated: float
    ece_calibrated: float
    curve: tuple[CoveragePoint, ...]


@dataclass(frozen=True)
class Outcome:
    promoted: bool
    reasons: tuple[str, ...]
    candidate: StoredHead
    figures: StageFigures
    current: StageFigures | None
    examples: int
    corrected: int
    """Examples whose label a reviewer's correction changed."""

    def report(self) -> dict[str, object]:
        return {
            "promoted": self.promoted,
            "reasons": list(self.reasons),
            "candidate": f"sha256:{self.candidate.digest}",
            "temperature": self.candidate.head.temperature,
            "examples": self.examples,
            "corrected_by_reviews": self.corrected,
            "candidate_figures": asdict(self.figures),
            "current_figures": asdict(self.current) if self.current else None,
        }


def read_examples(path: Path, taxonomy: Taxonomy) -> list[Example]:
    known = set(taxonomy.names)
    examples = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingError(f"cannot read examples {path}: {exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            body, label = item["text"], item["label"]
        except (ValueError, KeyError, TypeError) as exc:
            raise TrainingError(f"{path}:{number}: want an object with text and label") from exc
        if not isinstance(body, str) or not body.strip() or label not in known:
            raise TrainingError(f"{path}:{number}: empty text or a label not in the taxonomy")
        examples.append(Example(body, label, content_sha256(body)))
    return examples


def load_corrections(engine: Engine, taxonomy_version: str) -> dict[str, str]:
    with engine.connect() as connection:
        rows = connection.execute(CORRECTIONS, {"taxonomy_version": taxonomy_version})
        return {digest: label for digest, label in rows}


def corrected(examples: Sequence[Example], corrections: Mapping[str, str]) -> list[Example]:
    """``examples`` with each reviewed document's label the reviewer's."""
    return [Example(e.text, corrections.get(e.digest, e.label), e.digest) for e in examples]


def fit_head(
    vectors: NDArray[np.float32], labels: Sequence[str], taxonomy: Taxonomy, encoder_digest: str
) -> Head:
    """A head over every taxonomy label (uncalibrated: temperature 1)."""
    if len(set(labels)) < 2:
        raise TrainingError("training needs examples of at least two labels")
    model = LogisticRegression(max_iter=2000, C=10.0)
    model.fit(vectors, list(labels))
    rows = {str(label): i for i, label in enumerate(model.classes_)}
    coef, intercept = model.coef_, model.intercept_
    if len(rows) == 2:  # one logit for the second class: the first's is 0 (same softmax)
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.append(0.0, intercept)
    dimension = vectors.shape[1]
    weights = np.zeros((len(taxonomy.names), dimension))
    bias = np.full(len(taxonomy.names), ABSENT_LABEL_BIAS)
    for i, label in enumerate(taxonomy.names):
        if label in rows:
            weights[i] = coef[rows[label]]
            bias[i] = intercept[rows[label]]
    return Head(taxonomy.names, weights, bias, 1.0, encoder_digest, taxonomy.version)


def held_out(head: Head, vectors: NDArray[np.float32], gold: Sequence[str]) -> list[HeldOut]:
    """The head's uncalibrated scores on held-out documents, with their true labels."""
    rows = head.probabilities(vectors, calibrated=False)
    return [HeldOut(dict(zip(head.labels, map(float, row), strict=True)), label)
            for row, label in zip(rows, gold, strict=True)]  # fmt: skip


def measure(head: Head, answers: Sequence[HeldOut], threshold: float) -> StageFigures:
    temperature = Temperature(head.temperature)
    predictions = [prediction(item.scores, item.gold, temperature) for item in answers]
    (at_threshold,) = accuracy_coverage(predictions, [threshold])
    return StageFigures(
        kept_share=at_threshold.coverage,
        kept_accuracy=at_threshold.accuracy,
        accuracy=sum(p.gold == p.predicted for p in predictions) / len(predictions),
        ece_uncalibrated=calibration_error(answers, Temperature(1.0)),
        ece_calibrated=calibration_error(answers, temperature),
        curve=accuracy_coverage(predictions, COVERAGE_THRESHOLDS),
    )


def decide(
    candidate: StageFigures, current: StageFigures | None, margins: Margins
) -> tuple[str, ...]:
    """Why ``candidate`` may not replace ``current``; empty when it may."""
    reasons = []
    kept = candidate.kept_accuracy
    if kept is None or kept < margins.min_kept_accuracy:
        reasons.append(f"accuracy on the documents kept {_figure(kept)} is below the floor "
                       f"{margins.min_kept_accuracy:.3f}")  # fmt: skip
    if current is not None:
        if (
            current.kept_accuracy is not None
            and (kept or 0.0) < current.kept_accuracy - margins.accuracy
        ):
            reasons.append(f"accuracy on the documents kept {_figure(kept)} is more than "
                           f"{margins.accuracy:.3f} below the current head's "
                           f"{current.kept_accuracy:.3f}")  # fmt: skip
        if candidate.kept_share < current.kept_share - margins.share:
            reasons.append(f"share kept {candidate.kept_share:.3f} is more than {margins.share:.3f}"
                           f" below the current head's {current.kept_share:.3f}")  # fmt: skip
    return tuple(reasons)


def train(
    examples: Sequence[Example],
    corrections: Mapping[str, str],
    encoder: Encoder,
    current: StoredHead | None,
    taxonomy: Taxonomy,
    threshold: float,
    margins: Margins,
    heads: Path,
) -> Outcome:
    """Fit, calibrate and store a candidate head, and measure it and ``current`` at the gate.
    Promotion (the pointer) is the caller's, after the outcome is on the audit record."""
    labelled = corrected(examples, corrections)
    relabelled = sum(a.label != b.label for a, b in zip(examples, labelled, strict=True))
    sides = {
        side: [e for e in labelled if e.side() == side] for side in ("fit", "calibrate", "gate")
    }
    if any(not items for items in sides.values()):
        raise TrainingError(f"{len(labelled)} examples leave a split empty: the gate needs more")
    vectors = {
        side: encoder.encode([e.text for e in items]).vectors for side, items in sides.items()
    }
    gold = {side: [e.label for e in items] for side, items in sides.items()}
    raw = fit_head(vectors["fit"], gold["fit"], taxonomy, encoder.digest)
    temperature = fit_temperature(held_out(raw, vectors["calibrate"], gold["calibrate"]))
    counts = {side: len(items) for side, items in sides.items()}
    head = replace(raw, temperature=temperature.value, training={
        "examples": counts, "corrected_by_reviews": relabelled,
        "threshold": threshold,
    })  # fmt: skip
    figures = measure(head, held_out(head, vectors["gate"], gold["gate"]), threshold)
    now = None  # a head over another encoder or taxonomy cannot be measured on these
    if current is not None and (current.head.encoder_digest, current.head.labels) == (
        encoder.digest, head.labels
    ):
        now = measure(
            current.head, held_out(current.head, vectors["gate"], gold["gate"]), threshold
        )
    stored = save_head(head, heads)
    return Outcome(
        promoted=not (reasons := decide(figures, now, margins)),
        reasons=reasons,
        candidate=stored,
        figures=figures,
        current=now,
        examples=len(labelled),
        corrected=relabelled,
    )


def _figure(value: float | None) -> str:
    return "none (it keeps no document)" if value is None else f"{value:.3f}"
