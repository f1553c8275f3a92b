"""Quality metrics of a classifier against gold labels. Pure functions over plain data.

Conventions (the same as scikit-learn's defaults, so numbers can be cross-checked):
- the confusion matrix has gold labels as rows and predicted labels as columns;
- precision (recall) of a label that was never predicted (never gold) is 0.0;
- macro-F1 averages F1 over the labels that occur as gold or predicted label;
- calibration uses equal-width confidence bins; bin ``i`` of ``n`` holds confidences in
  ``(i/n, (i+1)/n]`` (bin 0 also holds 0.0); ECE = sum over bins of
  ``count/N * |accuracy - mean confidence|``;
- a result that needs review is "abstained": a person decides, not the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Prediction:
    gold: str
    predicted: str
    confidence: float
    abstained: bool = False


@dataclass(frozen=True)
class LabelStats:
    precision: float
    recall: float
    f1: float
    support: int
    """How many examples have this gold label."""
    predicted: int
    """How many examples got this label from the model."""


@dataclass(frozen=True)
class CalibrationBin:
    lower: float
    upper: float
    count: int
    mean_confidence: float | None
    accuracy: float | None


@dataclass(frozen=True)
class Metrics:
    labels: tuple[str, ...]
    count: int
    accuracy: float
    macro_f1: float
    per_label: dict[str, LabelStats]
    confusion: tuple[tuple[int, ...], ...]
    ece: float
    reliability: tuple[CalibrationBin, ...]
    abstention_rate: float
    accuracy_non_abstained: float | None
    """None when every result was abstained."""
    coverage: tuple[CoveragePoint, ...] = ()
    """The accuracy-coverage curve at ``COVERAGE_THRESHOLDS``."""


COVERAGE_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(20))
"""Where the accuracy-coverage curve is read: 0.00, 0.05, ... 0.95."""


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def confusion_matrix(
    labels: Sequence[str], predictions: Sequence[Prediction]
) -> tuple[tuple[int, ...], ...]:
    """Counts ``[gold][predicted]`` in the order of ``labels``.

    Precondition: every gold and predicted label is in ``labels``.
    """
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for prediction in predictions:
        for name in (prediction.gold, prediction.predicted):
            if name not in index:
                raise ValueError(f"label: got {name!r}, want one of {list(labels)}")
        matrix[index[prediction.gold]][index[prediction.predicted]] += 1
    return tuple(tuple(row) for row in matrix)


def label_stats(labels: Sequence[str], confusion: Sequence[Sequence[int]]) -> dict[str, LabelStats]:
    stats = {}
    for i, label in enumerate(labels):
        correct = confusion[i][i]
        support = sum(confusion[i])
        predicted = sum(row[i] for row in confusion)
        precision, recall = _ratio(correct, predicted), _ratio(correct, support)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        stats[label] = LabelStats(precision, recall, f1, support, predicted)
    return stats


def macro_f1(stats: dict[str, LabelStats]) -> float:
    present = [item.f1 for item in stats.values() if item.support or item.predicted]
    return sum(present) / len(present) if present else 0.0


def reliability(predictions: Sequence[Prediction], bins: int = 10) -> tuple[CalibrationBin, ...]:
    """Equal-width confidence bins with their accuracy and mean confidence.

    Precondition: ``bins >= 1`` and every confidence is in [0, 1].
    """
    if bins < 1:
        raise ValueError(f"bins: got {bins}, want >= 1")
    members: list[list[Prediction]] = [[] for _ in range(bins)]
    for prediction in predictions:
        if not 0.0 <= prediction.confidence <= 1.0:
            raise ValueError(f"confidence: got {prediction.confidence}, want 0..1")
        # Rounded first so that 0.3 * 10 = 3.0000000000000004 still lands in (0.2, 0.3].
        slot = max(0, math.ceil(round(prediction.confidence * bins, 9)) - 1)
        members[slot].append(prediction)
    result = []
    for i, items in enumerate(members):
        count = len(items)
        mean = sum(p.confidence for p in items) / count if count else None
        accuracy = sum(p.gold == p.predicted for p in items) / count if count else None
        result.append(CalibrationBin(i / bins, (i + 1) / bins, count, mean, accuracy))
    return tuple(result)


def expected_calibration_error(curve: Sequence[CalibrationBin]) -> float:
    total = sum(item.count for item in curve)
    return sum(
        item.count / total * abs(item.accuracy - item.mean_confidence)
        for item in curve
        if item.count and item.accuracy is not None and item.mean_confidence is not None
    )


def evaluate(labels: Sequence[str], predictions: Sequence[Prediction], bins: int = 10) -> Metrics:
    """All metrics at once. Precondition: at least one prediction."""
    if not predictions:
        raise ValueError("predictions: got none, want at least one")
    confusion = confusion_matrix(labels, predictions)
    stats = label_stats(labels, confusion)
    curve = reliability(predictions, bins)
    count = len(predictions)
    kept = [p for p in predictions if not p.abstained]
    return Metrics(
        labels=tuple(labels),
        count=count,
        accuracy=sum(p.gold == p.predicted for p in predictions) / count,
        macro_f1=macro_f1(stats),
        per_label=stats,
        confusion=confusion,
        ece=expected_calibration_error(curve),
        reliability=curve,
        abstention_rate=(count - len(kept)) / count,
        accuracy_non_abstained=(
            sum(p.gold == p.predicted for p in kept) / len(kept) if kept else None
        ),
        coverage=accuracy_coverage(predictions, COVERAGE_THRESHOLDS),
    )


@dataclass(frozen=True)
class CoveragePoint:
    """What a confidence threshold does: the share of documents whose answer it keeps, and the
    accuracy of those kept (None when it keeps none)."""

    threshold: float
    coverage: float
    accuracy: float | None


def accuracy_coverage(
    predictions: Sequence[Prediction], thresholds: Sequence[float]
) -> tuple[CoveragePoint, ...]:
    """The accuracy-coverage curve at ``thresholds``: a cascade stage's or the review gate's
    trade-off. Precondition: at least one prediction."""
    if not predictions:
        raise ValueError("predictions: got none, want at least one")
    points = []
    for threshold in thresholds:
        kept = [p for p in predictions if p.confidence >= threshold]
        right = sum(p.gold == p.predicted for p in kept)
        points.append(CoveragePoint(
            threshold, len(kept) / len(predictions), right / len(kept) if kept else None
        ))  # fmt: skip
    return tuple(points)
