"""Metric code against values computed by hand (worked in the comments)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.evaluation.metrics import (
    Prediction,
    confusion_matrix,
    evaluate,
    expected_calibration_error,
    reliability,
)

LABELS = ("A", "B", "C")
# gold, predicted, confidence, abstained (needs review)
CASES = [
    ("A", "A", 0.9, False),
    ("A", "A", 0.8, False),
    ("A", "B", 0.6, False),
    ("B", "B", 0.7, False),
    ("B", "A", 0.55, True),
    ("C", "C", 0.95, False),
    ("C", "B", 0.4, True),
    ("B", "B", 0.65, False),
    ("A", "C", 0.3, True),
    ("C", "C", 0.85, False),
]
PREDICTIONS = [Prediction(*case) for case in CASES]


def test_known_confusion_matrix_and_scores() -> None:
    metrics = evaluate(LABELS, PREDICTIONS)
    assert metrics.confusion == (
        (2, 1, 1),  # gold A: predicted A twice, B once, C once
        (1, 2, 0),  # gold B
        (0, 1, 2),  # gold C
    )
    assert metrics.count == 10
    assert metrics.accuracy == pytest.approx(0.6)  # trace 6 of 10
    a, b, c = (metrics.per_label[label] for label in LABELS)
    # A: precision 2/3 (column 2+1+0), recall 2/4; F1 = 2PR/(P+R) = 4/7
    assert (a.precision, a.recall, a.f1) == pytest.approx((2 / 3, 1 / 2, 4 / 7))
    assert (a.support, a.predicted) == (4, 3)
    # B: precision 2/4, recall 2/3, F1 4/7
    assert (b.precision, b.recall, b.f1) == pytest.approx((1 / 2, 2 / 3, 4 / 7))
    # C: precision 2/3, recall 2/3, F1 2/3
    assert (c.precision, c.recall, c.f1) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert metrics.macro_f1 == pytest.approx((4 / 7 + 4 / 7 + 2 / 3) / 3)  # 38/63
    assert metrics.abstention_rate == pytest.approx(0.3)
    assert metrics.accuracy_non_abstained == pytest.approx(6 / 7)


def test_known_expected_calibration_error() -> None:
    curve = reliability(PREDICTIONS, bins=10)
    occupied = {
        round(item.lower, 1): (item.count, item.accuracy, item.mean_confidence)
        for item in curve
        if item.count
    }
    assert occupied == {
        0.2: (1, 0.0, pytest.approx(0.3)),  # 0.3 sits in (0.2, 0.3]
        0.3: (1, 0.0, pytest.approx(0.4)),
        0.5: (2, 0.0, pytest.approx(0.575)),
        0.6: (2, 1.0, pytest.approx(0.675)),
        0.7: (1, 1.0, pytest.approx(0.8)),
        0.8: (2, 1.0, pytest.approx(0.875)),
        0.9: (1, 1.0, pytest.approx(0.95)),
    }
    # (0.3 + 0.4 + 2*0.575 + 2*0.325 + 0.2 + 2*0.125 + 0.05) / 10 = 3.0 / 10
    assert expected_calibration_error(curve) == pytest.approx(0.3)
    assert evaluate(LABELS, PREDICTIONS).ece == pytest.approx(0.3)


def test_perfect_calibration_and_bin_edges() -> None:
    calibrated = [Prediction("A", "A", 0.75)] * 3 + [Prediction("A", "B", 0.75)]
    assert expected_calibration_error(reliability(calibrated)) == pytest.approx(0.0)
    edges = reliability([Prediction("A", "A", 0.0), Prediction("A", "A", 1.0)], bins=4)
    assert [item.count for item in edges] == [1, 0, 0, 1]
    assert reliability([Prediction("A", "A", 0.5)], bins=2)[0].count == 1  # (0, 0.5]


def test_labels_never_seen_are_left_out_of_macro_f1() -> None:
    metrics = evaluate(("A", "B", "UNUSED"), [Prediction("A", "A", 0.9), Prediction("B", "A", 0.9)])
    # A: P 1/2, R 1, F1 2/3; B: P 0 (never predicted), R 0, F1 0; UNUSED not counted.
    assert metrics.macro_f1 == pytest.approx((2 / 3 + 0) / 2)
    assert metrics.per_label["UNUSED"].f1 == 0.0


def test_all_abstained_and_bad_input() -> None:
    metrics = evaluate(LABELS, [Prediction("A", "A", 0.2, abstained=True)])
    assert metrics.abstention_rate == 1.0 and metrics.accuracy_non_abstained is None
    with pytest.raises(ValueError, match="want at least one"):
        evaluate(LABELS, [])
    with pytest.raises(ValueError, match="got 'Z'"):
        confusion_matrix(LABELS, [Prediction("A", "Z", 0.5)])
    with pytest.raises(ValueError, match=r"want 0\.\.1"):
        reliability([Prediction("A", "A", 1.5)])


@given(
    st.lists(
        st.tuples(st.sampled_from(LABELS), st.sampled_from(LABELS), st.integers(0, 1000)),
        min_size=1,
        max_size=60,
    ),
    st.integers(1, 20),
)
def test_properties(cases: list[tuple[str, str, int]], bins: int) -> None:
    """Confidences are k/1000 so that bin membership can be decided exactly with fractions."""
    predictions = [Prediction(gold, predicted, k / 1000) for gold, predicted, k in cases]
    exact = {id(p): Fraction(k, 1000) for p, (_, _, k) in zip(predictions, cases, strict=True)}
    metrics = evaluate(LABELS, predictions, bins)
    assert sum(map(sum, metrics.confusion)) == len(predictions)
    trace = sum(metrics.confusion[i][i] for i in range(len(LABELS)))
    assert math.isclose(metrics.accuracy, trace / len(predictions))
    assert 0.0 <= metrics.ece <= 1.0
    assert sum(item.count for item in metrics.reliability) == len(predictions)
    # ECE from its definition, bin by bin, directly from the raw pairs.
    brute = 0.0
    for i, item in enumerate(metrics.reliability):
        lower, upper = Fraction(i, bins), Fraction(i + 1, bins)
        inside = [
            p
            for p in predictions
            if lower < exact[id(p)] <= upper or (i == 0 and exact[id(p)] == 0)
        ]
        assert len(inside) == item.count
        if inside:
            accuracy = sum(p.gold == p.predicted for p in inside) / len(inside)
            confidence = sum(p.confidence for p in inside) / len(inside)
            brute += len(inside) / len(predictions) * abs(accuracy - confidence)
    assert math.isclose(metrics.ece, brute, abs_tol=1e-9)
