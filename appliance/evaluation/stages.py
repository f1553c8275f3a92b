"""A cascade's stages in an evaluation: what reached each, what each kept, how much of that was
right, and what its answers cost.

A stage earns its place by what it keeps (documents it answers, so the next stage is not
asked) and by how many of those it gets right; the report shows both per stage, side by side.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from appliance.evaluation.runner import Outcome


@dataclass(frozen=True)
class StageSummary:
    """One stage over a run. Tokens and cost are those of the results this stage answered: an
    escalated result's figures include what the stages before it were asked (the embedding
    stage spends no model-server tokens)."""

    stage: str
    asked: int
    """Documents that reached this stage."""
    kept: int
    """Of those, the documents whose answer this stage gave."""
    correct: int
    """Of those kept, the documents it labelled as the dataset does."""
    share: float
    """``kept`` over every answered document of the run."""
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    """None when no answer of this stage has a configured price."""

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.kept if self.kept else None


def per_stage(answers: Sequence[tuple[str, Outcome]]) -> tuple[StageSummary, ...]:
    """Summaries of ``(gold label, outcome)`` pairs by cascade stage, in the cascade's order;
    empty when no outcome came from a cascade."""
    order = _stage_order(name for _, outcome in answers for name, _ in outcome.stages)
    summaries = []
    for stage in order:
        asked = [(gold, o) for gold, o in answers if any(n == stage for n, _ in o.stages)]
        kept = [(gold, o) for gold, o in asked if o.stages[-1][0] == stage]
        costs = [o.cost for _, o in kept if o.cost is not None]
        summaries.append(StageSummary(
            stage=stage,
            asked=len(asked),
            kept=len(kept),
            correct=sum(gold == o.label for gold, o in kept),
            share=len(kept) / len(answers),
            prompt_tokens=sum(o.prompt_tokens or 0 for _, o in kept),
            completion_tokens=sum(o.completion_tokens or 0 for _, o in kept),
            cost=sum(costs) if costs else None,
        ))  # fmt: skip
    return tuple(summaries)


def _stage_order(names: Iterable[str]) -> list[str]:
    """Stage names in first-seen order: every outcome's stages are a prefix of the cascade's,
    so this is the cascade's order."""
    return list(dict.fromkeys(names))
