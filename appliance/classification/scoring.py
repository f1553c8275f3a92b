"""From the model's answer and its token log-probabilities to a label, scores and confidence.

The request asks for one token, constrained to the label codes, with the top log-probabilities
of that token. Under the constraint vLLM renormalises over the allowed tokens, so the codes'
probabilities are the model's distribution over labels; we renormalise once more to absorb
rounding and any mass on spellings of a code such as " A".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from appliance.errors import UpstreamInvalidResponse


@dataclass(frozen=True)
class Scored:
    label: str
    confidence: float
    scores: dict[str, float]


def score_chat_answer(body: dict[str, Any], code_to_label: dict[str, str]) -> Scored:
    """Read a chat completion that answered one code; ``UpstreamInvalidResponse`` if unusable."""
    try:
        choice = body["choices"][0]
        answer = choice["message"]["content"]
        top = choice["logprobs"]["content"][0]["top_logprobs"]
    except (KeyError, IndexError, TypeError) as exc:
        raise UpstreamInvalidResponse("the model's answer lacks content or logprobs") from exc
    code = answer.strip() if isinstance(answer, str) else None
    if code not in code_to_label:
        raise UpstreamInvalidResponse("the model answered outside the taxonomy")
    mass = dict.fromkeys(code_to_label, 0.0)
    for entry in top:
        token, logprob = _token_and_logprob(entry)
        if token.strip() in mass:
            mass[token.strip()] += math.exp(logprob)
    total = sum(mass.values())
    if total <= 0.0 or mass[code] <= 0.0:
        raise UpstreamInvalidResponse("the model's logprobs give no weight to its own answer")
    scores = {code_to_label[c]: p / total for c, p in mass.items()}
    label = code_to_label[code]
    return Scored(label=label, confidence=scores[label], scores=scores)


def _token_and_logprob(entry: Any) -> tuple[str, float]:
    try:
        token, logprob = entry["token"], float(entry["logprob"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UpstreamInvalidResponse("the model's logprobs are malformed") from exc
    if not isinstance(token, str) or math.isnan(logprob):
        raise UpstreamInvalidResponse("the model's logprobs are malformed")
    return token, min(logprob, 0.0)
