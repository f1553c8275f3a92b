"""From a chat completion and its token log-probabilities to a probability per answer code.

The request asks for one token, constrained to the codes, with the top log-probabilities of that
token. Under the constraint vLLM renormalises over the allowed tokens, so the codes'
probabilities are the model's distribution over the answers; we renormalise once more to absorb
rounding and any mass on spellings of a code such as " A".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from appliance.backends.interfaces import ModelAnswer, TokenUsage
from appliance.errors import UpstreamInvalidResponse


def answer_from_chat(body: dict[str, Any], choices: Sequence[str]) -> ModelAnswer:
    """Read a chat completion that answered one code; ``UpstreamInvalidResponse`` if unusable."""
    try:
        choice = body["choices"][0]
        answer = choice["message"]["content"]
        top = choice["logprobs"]["content"][0]["top_logprobs"]
    except (KeyError, IndexError, TypeError) as exc:
        raise UpstreamInvalidResponse("the model's answer lacks content or logprobs") from exc
    code = answer.strip() if isinstance(answer, str) else ""
    if code not in choices:
        raise UpstreamInvalidResponse("the model answered outside the taxonomy")
    mass = dict.fromkeys(choices, 0.0)
    for entry in top:
        token, logprob = _token_and_logprob(entry)
        if token.strip() in mass:
            mass[token.strip()] += math.exp(logprob)
    total = sum(mass.values())
    if total <= 0.0 or mass[code] <= 0.0:
        raise UpstreamInvalidResponse("the model's logprobs give no weight to its own answer")
    probabilities = {c: p / total for c, p in mass.items()}
    return ModelAnswer(choice=code, probabilities=probabilities, usage=usage_from(body))


def usage_from(body: dict[str, Any]) -> TokenUsage | None:
    """The completion's ``usage`` (OpenAI's shape), or None when it is missing or malformed: the
    answer stands without it (quotas then keep their estimate)."""
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    counts = (prompt, completion)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
        return None
    return TokenUsage(prompt, completion)  # type: ignore[arg-type]


def _token_and_logprob(entry: Any) -> tuple[str, float]:
    try:
        token, logprob = entry["token"], float(entry["logprob"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UpstreamInvalidResponse("the model's logprobs are malformed") from exc
    if not isinstance(token, str) or math.isnan(logprob):
        raise UpstreamInvalidResponse("the model's logprobs are malformed")
    return token, min(logprob, 0.0)
