"""Response body of ``GET /api/v1/usage`` (a pydantic model: the OpenAPI document is made from
it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from appliance.usage.quotas import WindowUsage


class Measure(BaseModel):
    used: int
    limit: int | None = Field(description="null: no limit on this measure in this window")


class WindowOut(BaseModel):
    rule: str = Field(description="The role-table rule whose quota this is, <field>=<pattern>")
    member: str | None = Field(description="The identity the budget is for; null: shared by "
                               "every identity the rule matches")  # fmt: skip
    period: str = Field(description="minute or day (UTC)")
    start: datetime
    resets_at: datetime
    documents: Measure
    tokens: Measure = Field(description="Model tokens, prompt and completion")


class QuotaUsageOut(BaseModel):
    windows: list[WindowOut]


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def serialise_usage(usages: list[WindowUsage]) -> dict[str, Any]:
    return {
        "windows": [
            {
                "rule": u.window.rule,
                "member": u.window.member or None,
                "period": u.window.period,
                "start": _time(u.window.start),
                "resets_at": _time(u.window.ends),
                "documents": {"used": u.documents, "limit": u.window.max_documents},
                "tokens": {"used": u.tokens, "limit": u.window.max_tokens},
            }
            for u in usages
        ]
    }
