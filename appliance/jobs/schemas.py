"""Response bodies of the jobs API (pydantic models: the OpenAPI document is made from them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from appliance.classification.schemas import ClassificationOut, ErrorBody, serialise
from appliance.jobs.services import ItemOutcome, JobStatus


class JobCounts(BaseModel):
    total: int
    done: int
    failed: int
    cancelled: int
    pending: int


class JobOut(BaseModel):
    job_id: str
    state: str = Field(description="queued, running, done, failed or cancelled")
    counts: JobCounts
    items_per_s: float | None = Field(description="Items classified per second so far")
    eta_s: float | None = Field(description="Seconds left at that rate")
    created_at: datetime
    finished_at: datetime | None


class JobItemOut(BaseModel):
    position: int = Field(description="The item's line in the submitted body, from 1")
    document_id: str | None
    state: str = Field(description="pending, done, failed or cancelled")
    result: ClassificationOut | None
    error: ErrorBody | None


class JobResultsOut(BaseModel):
    items: list[JobItemOut]
    next_after: int | None = Field(description="Pass as after= for the next page; null: none")


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def serialise_job(status: JobStatus) -> dict[str, Any]:
    pending = status.total - status.done - status.failed - status.cancelled
    return {
        "job_id": str(status.job_id),
        "state": status.state,
        "counts": {
            "total": status.total,
            "done": status.done,
            "failed": status.failed,
            "cancelled": status.cancelled,
            "pending": pending,
        },
        "items_per_s": status.items_per_s,
        "eta_s": status.eta_s,
        "created_at": _time(status.created_at),
        "finished_at": _time(status.finished_at),
    }


def serialise_item(item: ItemOutcome, request_id: str) -> dict[str, Any]:
    error = None
    if item.error is not None:
        error = {"code": item.error[0], "message": item.error[1], "request_id": request_id}
    return {
        "position": item.position,
        "document_id": item.document_id,
        "state": item.state,
        "result": serialise(item.result) if item.result is not None else None,
        "error": error,
    }
