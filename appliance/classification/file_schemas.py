"""``classify-file``'s parameters and answer (the same models validate and feed OpenAPI)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from appliance.classification.files import FileClassification, Mode
from appliance.classification.schemas import ClassificationOut, StageOut, serialise
from appliance.text import Identifier, Storable


class FileParams(BaseModel):
    """The query parameters (the body is the file itself)."""

    model_config = ConfigDict(extra="forbid")

    document_id: Identifier = Field(min_length=1, max_length=256)
    mode: Mode = Field(
        default=Mode.DOCUMENT,
        description="document: one label from the first pages; pages: a label per page;"
        " split: the file as a packet of documents, in page ranges.",
    )
    user_id: Storable | None = Field(default=None, max_length=256)


class FileOut(BaseModel):
    sha256: str
    size: int
    media_type: str
    page_count: int


class PageOut(BaseModel):
    number: int
    source: Literal["text_layer", "ocr", "text"]
    text_sha256: str
    blank: bool
    stages: list[StageOut] | None = Field(
        default=None,
        description="With a cascade of models, in the page modes: each stage asked about this"
        " page, in order, with its confidence; the last one answered.",
    )


class SegmentOut(BaseModel):
    first_page: int
    last_page: int
    label: str
    confidence: float
    scores: dict[str, float]


class FileClassificationOut(ClassificationOut):
    mode: Mode
    file: FileOut
    pages: list[PageOut] = Field(description="The pages read, and how their text was obtained.")
    segments: list[SegmentOut] = Field(
        description="Consecutive page ranges covering the file, each with its label."
    )


def serialise_file(result: FileClassification) -> dict[str, Any]:
    return {
        **serialise(result.classification),
        "mode": result.mode,
        "file": {
            "sha256": result.file_sha256,
            "size": result.file_size,
            "media_type": result.media_type,
            "page_count": result.page_count,
        },
        "pages": result.pages,
        "segments": result.segments,
    }
