"""Classify a file: read its pages (text layer or OCR), label them, store one result with its
pages and segments atomically with its audit event.

Modes: ``document`` labels the file from its first pages (``file_first_pages``); ``pages``
labels every page; ``split`` labels every page and groups them into documents (see
``segments``). A result is reused for the same file read the same way (file hash, reading
settings, model call, taxonomy), and in ``document`` mode for the same text, from a file or not.
Neither the file nor its text is stored or logged: hashes, sizes, counts and labels are.
"""

from __future__ import annotations

import enum
import hashlib
import json
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from appliance import metrics
from appliance.audit_bridge.interfaces import Action, FileFacts
from appliance.audit_bridge.recorder import AuditRecorder, Subject
from appliance.backends.interfaces import ModelIdentity, TokenUsage, combined
from appliance.classification import store
from appliance.classification.content import content_sha256
from appliance.classification.interfaces import Classification, Document
from appliance.classification.labeller import DocumentLabeller, Labelled, Scored, StageAnswer
from appliance.classification.models import ClassificationResult
from appliance.classification.segments import PageLabel, Segment, overall, segments
from appliance.classification.services import (
    ClassificationService,
    as_classification,
    set_answered_by,
    set_usage,
    stored_stages,
)
from appliance.context import RequestContext
from appliance.db import autocommit
from appliance.errors import ApplianceError, EmptyDocument
from appliance.intake.extract import PageReader
from appliance.intake.formats import FileKind
from appliance.intake.pages import PageText
from appliance.usage.metering import REUSED, Metered
from appliance.usage.quotas import Hold


class Mode(enum.StrEnum):
    DOCUMENT = "document"
    PAGES = "pages"
    SPLIT = "split"


@dataclass(frozen=True)
class IncomingFile:
    document_id: str
    data: bytes
    kind: FileKind
    on_behalf_of: str | None = None


@dataclass(frozen=True)
class FileClassification:
    classification: Classification
    file_sha256: str
    file_size: int
    media_type: str
    mode: str
    page_count: int
    pages: list[dict[str, Any]]
    segments: list[dict[str, Any]]


class FileClassificationService:
    def __init__(
        self,
        classification: ClassificationService,
        labeller: DocumentLabeller,
        reader: PageReader,
        audit: AuditRecorder,
        first_pages: int,
        max_concurrency: int,
    ) -> None:
        self._results = classification
        self._labeller = labeller
        self._reader = reader
        self._audit = audit
        self._first_pages = first_pages
        self._pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="classify-page")
        self._reading: str | None = None

    def classify(
        self,
        incoming: IncomingFile,
        mode: Mode,
        context: RequestContext,
        on_page: Callable[[], None] = lambda: None,
    ) -> FileClassification:
        """Audited either way: with the result, or as a failure with the error's status.
        ``on_page`` is called as each page is read (a progress bar's hook)."""
        digest = hashlib.sha256(incoming.data).hexdigest()
        try:
            with self._results.quotas.hold(context.identity, lambda: 0) as hold:
                return self._classify(incoming, digest, mode, context, on_page, hold)
        except ApplianceError as exc:
            subject = Subject(document_id=incoming.document_id, on_behalf_of=incoming.on_behalf_of,
                              file=FileFacts(digest, mode.value))  # fmt: skip
            self._audit.record_outcome(context, Action.CLASSIFY_FILE, exc.status, subject, exc.code)
            raise

    def intake_fingerprint(self, mode: Mode) -> str:
        """SHA-256 (hex) of how pages are read in ``mode``: a result is reused only for a file
        read the same way (another OCR language, DPI or Tesseract reads other text)."""
        if self._reading is None:
            limits = self._reader.limits
            self._reading = json.dumps(
                {"ocr": self._reader.ocr.version(), "language": self._reader.ocr.language,
                 "dpi": limits.dpi, "text_layer_min_chars": limits.text_layer_min_chars},
                sort_keys=True,
            )  # fmt: skip
        first = self._first_pages if mode is Mode.DOCUMENT else None
        shape = f"{self._reading}|{mode.value}|{first}"
        return hashlib.sha256(shape.encode()).hexdigest()

    def _classify(
        self,
        incoming: IncomingFile,
        digest: str,
        mode: Mode,
        context: RequestContext,
        on_page: Callable[[], None],
        hold: Hold,
    ) -> FileClassification:
        """``hold``: the caller's quota reservation, one document so far; the pages' tokens are
        reserved once they are read, before the model is asked."""
        reading = self.intake_fingerprint(mode)
        document = Document(incoming.document_id, "", incoming.on_behalf_of)
        with autocommit(self._results.engine) as connection:
            earlier = store.latest_for_file(
                connection, digest, reading, self._labeller.fingerprint, self._results.taxonomy
            )
            if earlier is not None:
                reused = self._results.answer_from(
                    connection, earlier, document, earlier.content_sha256, context
                )
                return _file_classification(reused, earlier)
        pages = self._read(incoming, mode, on_page)
        hold.extend(self._token_estimate(pages, mode))
        row = self._new_result(incoming, digest, mode, reading, pages, context)
        hold.charge(Metered(row.prompt_tokens, row.completion_tokens, row.cost).total_tokens)
        with autocommit(self._results.engine) as connection:
            receipt = self._results.record(
                connection, context, document, row, store.result_insert(row)
            )
        metrics.CLASSIFICATIONS.labels(row.label, "cache" if row.cached_from else "model").inc()
        return _file_classification(as_classification(row, receipt=receipt), row)

    def _read(
        self, incoming: IncomingFile, mode: Mode, on_page: Callable[[], None]
    ) -> list[PageText]:
        """The text of the pages ``mode`` reads; 422 when none of them has any."""
        first = self._first_pages if mode is Mode.DOCUMENT else None
        pages = []
        for page in self._reader.read(incoming.data, incoming.kind, first):
            pages.append(page)
            on_page()
        if not any(page.text.strip() for page in pages):
            raise EmptyDocument("no text was found on the pages read, by text layer or OCR")
        return pages

    def _token_estimate(self, pages: list[PageText], mode: Mode) -> int:
        """An upper bound of the tokens the model calls for ``pages`` consume: one call for the
        whole text in document mode, one per page with text otherwise."""
        if mode is Mode.DOCUMENT:
            return self._labeller.token_estimate("\n\n".join(page.text for page in pages))
        return sum(self._labeller.token_estimate(page.text) for page in pages if page.text.strip())

    def _new_result(
        self,
        incoming: IncomingFile,
        digest: str,
        mode: Mode,
        reading: str,
        pages: list[PageText],
        context: RequestContext,
    ) -> ClassificationResult:
        """The result row for a file read now: its facts, its pages and the model's labels."""
        text = "\n\n".join(page.text for page in pages)
        row = self._results.new_row(Document(incoming.document_id, text, incoming.on_behalf_of),
                                    content_sha256(text), context)  # fmt: skip
        row.file_sha256, row.file_size = digest, len(incoming.data)
        row.file_media_type, row.file_mode = incoming.kind.value, mode.value
        row.intake_fingerprint, row.page_count = reading, pages[0].of
        labels = self._label(pages, row.content_sha256, mode)
        asked = labels.page_stages or [()] * len(pages)
        row.pages = [_page_facts(page, stages) for page, stages in zip(pages, asked, strict=True)]
        overall = labels.overall
        row.label, row.confidence, row.scores = overall.label, overall.confidence, overall.scores
        row.truncated, row.cached_from = labels.truncated, labels.reused_from
        if labels.answered is not None:
            set_answered_by(row, labels.answered)
        set_usage(row, REUSED if labels.reused_from else
                  self._results.meter.measure(row.model, labels.usage))  # fmt: skip
        row.segments = [_segment_json(segment) for segment in labels.segments]
        row.needs_review = self._results.needs_review(overall.label, overall.confidence,
                                                      row.segments)  # fmt: skip
        return row

    def _label(self, pages: list[PageText], digest: str, mode: Mode) -> FileLabels:
        if mode is Mode.DOCUMENT:
            return self._document_labels(pages, digest)
        futures = [
            self._pool.submit(self._labeller.label, page.text) if page.text.strip() else None
            for page in pages
        ]
        labelled = [future.result() if future else None for future in futures]
        page_labels = [
            PageLabel(page.number, result.scored.scores if result else None, page.text)
            for page, result in zip(pages, labelled, strict=True)
        ]
        label, confidence, scores = overall(page_labels)
        asked = [result for result in labelled if result]
        return FileLabels(
            Scored(label, confidence, scores),
            segments(page_labels, split=mode is Mode.SPLIT),
            truncated=any(result.truncated for result in asked),
            usage=combined([result.usage for result in asked]),
            answered=max(asked, key=lambda result: len(result.stages)) if asked else None,
            page_stages=[result.stages if result else () for result in labelled],
        )

    def _document_labels(self, pages: list[PageText], digest: str) -> FileLabels:
        """The model's scores for the pages' text, or a stored result's for the same text."""
        with autocommit(self._results.engine) as connection:
            earlier = store.latest_for_content(
                connection, digest, self._labeller.fingerprint, self._results.taxonomy
            )
        if earlier is not None:
            metrics.CACHE_HITS.inc()
            scored = Scored(earlier.label, earlier.confidence, dict(earlier.scores))
            truncated, reused = earlier.truncated, earlier.cached_from or earlier.id
            model = ModelIdentity(earlier.model, earlier.model_digest)
            labelled = Labelled(scored, truncated, None, model, stored_stages(earlier))
        else:
            metrics.CACHE_MISSES.inc()
            labelled = self._labeller.label("\n\n".join(page.text for page in pages))
            scored, truncated, reused = labelled.scored, labelled.truncated, None
        whole = Segment(1, pages[0].of, scored.label, scored.confidence, scored.scores)
        usage = None if reused else labelled.usage
        return FileLabels(scored, [whole], truncated, reused, usage, labelled)


@dataclass(frozen=True)
class FileLabels:
    """What the model (or a stored result for the same text) said of a file."""

    overall: Scored
    segments: list[Segment]
    truncated: bool
    """Whether any text the model saw was cut to the token budget."""
    reused_from: uuid.UUID | None = None
    usage: TokenUsage | None = None
    """The model calls' tokens (None when reused, or when a call's were not counted)."""
    answered: Labelled | None = None
    """For the model and cascade stage the result records: the one labelling of the whole
    text (document mode), or per page the page that went furthest down a cascade (the
    deepest stage any page needed); None when reused."""
    page_stages: list[tuple[StageAnswer, ...]] = field(default_factory=list)
    """Per page (page modes): the cascade stages asked of it, none for a blank page; empty in
    document mode."""


def _page_facts(page: PageText, stages: tuple[StageAnswer, ...]) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "number": page.number,
        "source": page.source.value,
        "text_sha256": content_sha256(page.text),
        "blank": not page.text.strip(),
    }
    if stages:
        facts["stages"] = [{"stage": a.stage, "confidence": a.confidence} for a in stages]
    return facts


def _segment_json(segment: Segment) -> dict[str, Any]:
    return {
        "first_page": segment.first_page,
        "last_page": segment.last_page,
        "label": segment.label,
        "confidence": segment.confidence,
        "scores": segment.scores,
    }


def _file_classification(answer: Classification, row: Any) -> FileClassification:
    return FileClassification(
        classification=answer,
        file_sha256=row.file_sha256,
        file_size=row.file_size,
        media_type=row.file_media_type,
        mode=row.file_mode,
        page_count=row.page_count,
        pages=list(row.pages),
        segments=list(row.segments),
    )
