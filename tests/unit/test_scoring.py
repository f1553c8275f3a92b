"""Scores come from the log-probabilities, renormalised over the label codes (the vLLM
backend reads the answer, the labeller names the labels)."""

from __future__ import annotations

import math

import pytest

from appliance.backends.vllm_scoring import answer_from_chat
from appliance.classification.labeller import Scored, scored
from appliance.errors import UpstreamInvalidResponse

CODES = {"A": "CLINICAL_NOTES", "B": "BILLING", "C": "TEST_RESULTS"}


def score_chat_answer(body: dict, code_to_label: dict[str, str]) -> Scored:
    return scored(answer_from_chat(body, tuple(code_to_label)), code_to_label)


def body(content: str, top: list[tuple[str, float]]) -> dict:
    entries = [{"token": token, "logprob": logprob} for token, logprob in top]
    return {
        "choices": [
            {
                "message": {"content": content},
                "logprobs": {"content": [{"token": content, "top_logprobs": entries}]},
            }
        ]
    }


def test_probabilities_are_renormalised_over_codes() -> None:
    scored = score_chat_answer(
        body("B", [("B", math.log(0.6)), ("A", math.log(0.2)), ("<x>", -9999.0)]), CODES
    )
    assert scored.label == "BILLING"
    assert scored.scores == pytest.approx(
        {"BILLING": 0.75, "CLINICAL_NOTES": 0.25, "TEST_RESULTS": 0}
    )
    assert scored.confidence == pytest.approx(0.75)


def test_spellings_of_a_code_add_up() -> None:
    scored = score_chat_answer(
        body("A", [("A", math.log(0.3)), (" A", math.log(0.3)), ("C", math.log(0.4))]), CODES
    )
    assert scored.scores["CLINICAL_NOTES"] == pytest.approx(0.6)


def test_confidence_is_not_a_constant() -> None:
    low = score_chat_answer(body("A", [("A", math.log(0.4)), ("B", math.log(0.35))]), CODES)
    high = score_chat_answer(body("A", [("A", math.log(0.99)), ("B", math.log(0.01))]), CODES)
    assert low.confidence < 0.6 < high.confidence


@pytest.mark.parametrize(
    "answer",
    [
        body("Z", [("Z", 0.0)]),
        body("A", []),
        body("A", [("B", 0.0)]),
        body("A", [("A", float("nan"))]),
        {
            "choices": [
                {
                    "message": {"content": "A"},
                    "logprobs": {"content": [{"top_logprobs": [{"token": "A"}]}]},
                }
            ]
        },
        {"choices": [{"message": {"content": "A"}}]},
        {"choices": []},
        {},
    ],
    ids=[
        "outside",
        "no-logprobs",
        "no-mass-on-answer",
        "nan",
        "malformed-entry",
        "logprobs-missing",
        "no-choices",
        "empty",
    ],
)
def test_unusable_answers_are_rejected(answer: dict) -> None:
    with pytest.raises(UpstreamInvalidResponse):
        score_chat_answer(answer, CODES)
