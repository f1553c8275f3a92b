"""Running documents through the classification path, concurrently, with a progress bar.

Two classifiers answer the same question: ``InProcessClassifier`` calls the
``ClassificationService`` of a ``Services`` (the very code behind the API, storing and auditing
each result), and ``ServiceClassifier`` posts to a running appliance over mutual TLS.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from tqdm import tqdm  # type: ignore[import-untyped]

from appliance.classification.files import IncomingFile, Mode
from appliance.classification.interfaces import Classification, Document
from appliance.client import ServiceConfig, service_client
from appliance.context import RequestContext
from appliance.errors import ApplianceError, PayloadTooLarge
from appliance.intake.formats import UNKNOWN, FileKind, kind_of
from appliance.services import Services

CLI_ACTOR = "appliance-cli"
"""Recorded as ``on_behalf_of`` of in-process classifications (there is no certificate)."""


class EvaluationError(ApplianceError):
    code = "evaluation_error"


class DatasetError(EvaluationError):
    code = "invalid_dataset"


class ClassifyFailed(ApplianceError):
    """One document could not be classified; ``code`` is the appliance's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Example:
    document_id: str
    text: str
    label: str


@dataclass(frozen=True)
class Outcome:
    label: str
    confidence: float
    needs_review: bool
    model: str
    taxonomy_version: str
    cached: bool
    truncated: bool
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None
    """What the answer's model calls consumed (``usage`` of the API's answer)."""
    scores: Mapping[str, float] = field(default_factory=dict)
    """A probability per label (what calibration is fitted on)."""
    stages: tuple[tuple[str, float], ...] = ()
    """A cascade's stages asked, in order, with their confidence (the last one answered)."""


@dataclass(frozen=True)
class FileOutcome:
    outcome: Outcome
    page_count: int
    segments: list[dict[str, Any]]


PageDone = Callable[[], None]
"""Called once per page read (for a progress bar)."""


class Classifier(Protocol):
    def classify(self, document_id: str, text: str) -> Outcome:
        """Classify one document or raise ``ApplianceError``."""

    def classify_file(
        self, document_id: str, data: bytes, mode: Mode, on_page: PageDone
    ) -> FileOutcome:
        """Classify one file (PDF, TIFF, PNG, JPEG, DOCX, text) or raise ``ApplianceError``."""

    def close(self) -> None: ...


def file_kind(data: bytes) -> FileKind:
    """What a local file is, from its content (a file name says nothing reliable)."""
    return kind_of(data, UNKNOWN)


def load_dataset(path: Path, labels: Sequence[str]) -> list[Example]:
    """JSON lines of ``{"text", "label"}`` (optional ``document_id``); blank lines are skipped.

    Raises ``DatasetError`` naming the first bad line. Document ids default to
    ``eval:<file name>:<line number>``.
    """
    examples = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read dataset {path}: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        if not isinstance(item, dict):
            raise DatasetError(f"{path}:{number}: got {type(item).__name__}, want an object")
        text, label = item.get("text"), item.get("label")
        document_id = item.get("document_id", f"eval:{path.name}:{number}")
        if not isinstance(text, str) or not text.strip():
            raise DatasetError(f"{path}:{number}: text: want a non-empty string")
        if not isinstance(label, str) or label not in labels:
            raise DatasetError(f"{path}:{number}: label: got {label!r}, want one of {list(labels)}")
        if not isinstance(document_id, str) or not 1 <= len(document_id) <= 256:
            raise DatasetError(f"{path}:{number}: document_id: want a string of 1..256 chars")
        examples.append(Example(document_id, text, label))
    if not examples:
        raise DatasetError(f"{path}: no examples")
    return examples


def run(
    items: Sequence[tuple[str, str]],
    classifier: Classifier,
    concurrency: int,
    progress: bool = True,
    description: str = "classifying",
) -> tuple[list[Outcome | ApplianceError], float]:
    """Classify ``(document_id, text)`` pairs; results in input order, and the wall time.

    A failed document gives its ``ApplianceError`` in its slot; the others go on.
    """
    results: list[Outcome | ApplianceError | None] = [None] * len(items)
    started = time.perf_counter()
    with (
        ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="eval") as pool,
        tqdm(total=len(items), desc=description, disable=not progress, file=sys.stderr) as bar,
    ):
        futures = {
            pool.submit(_classify_one, classifier, document_id, text): index
            for index, (document_id, text) in enumerate(items)
        }
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            bar.update(1)
    elapsed = time.perf_counter() - started
    return [result for result in results if result is not None], elapsed


def _classify_one(classifier: Classifier, document_id: str, text: str) -> Outcome | ApplianceError:
    try:
        return classifier.classify(document_id, text)
    except ApplianceError as exc:
        return exc


class InProcessClassifier:
    """The application's own ``ClassificationService``: stored, deduplicated and audited."""

    def __init__(self, services: Services) -> None:
        """Takes ownership of ``services``: ``close`` closes them."""
        self._services = services
        self._max_text_bytes = services.settings.max_text_bytes
        self._context = RequestContext(f"cli-{uuid.uuid4().hex}", None, None)

    def classify(self, document_id: str, text: str) -> Outcome:
        """Preconditions as at the API: the text is at most ``max_text_bytes`` of UTF-8."""
        if len(text.encode("utf-8")) > self._max_text_bytes:
            raise PayloadTooLarge(f"text is larger than {self._max_text_bytes} bytes")
        document = Document(document_id=document_id, text=text, on_behalf_of=CLI_ACTOR)
        return _outcome(self._services.classification.classify(document, self._context))

    def classify_file(
        self, document_id: str, data: bytes, mode: Mode, on_page: PageDone
    ) -> FileOutcome:
        incoming = IncomingFile(document_id, data, file_kind(data), CLI_ACTOR)
        result = self._services.files.classify(incoming, mode, self._context, on_page)
        return FileOutcome(_outcome(result.classification), result.page_count, result.segments)

    def close(self) -> None:
        self._services.close()


def _outcome(result: Classification) -> Outcome:
    return Outcome(
        label=result.label,
        confidence=result.confidence,
        needs_review=result.needs_review,
        model=result.model,
        taxonomy_version=result.taxonomy_version,
        cached=result.cached,
        truncated=result.truncated,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        cost=result.cost,
        scores=dict(result.scores),
        stages=tuple((answer.stage, answer.confidence) for answer in result.stages),
    )


class ServiceClassifier:
    """A running appliance, reached over mutual TLS (or plain HTTP for an ``http://`` URL)."""

    def __init__(self, config: ServiceConfig, max_connections: int = 16) -> None:
        self._client = service_client(config, max_connections)

    def classify(self, document_id: str, text: str) -> Outcome:
        body = self._answer(
            "/api/v1/classify-document", json={"document_id": document_id, "text": text}
        )
        return _outcome_of(body)

    def classify_file(
        self, document_id: str, data: bytes, mode: Mode, on_page: PageDone
    ) -> FileOutcome:
        body = self._answer(
            "/api/v1/classify-file",
            params={"document_id": document_id, "mode": mode.value},
            content=data,
            headers={"Content-Type": file_kind(data).value},
        )
        try:
            page_count, segments = int(body["file"]["page_count"]), list(body["segments"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ClassifyFailed("invalid_response", f"the answer lacks {exc}") from exc
        for _ in body.get("pages", ()):
            on_page()
        return FileOutcome(_outcome_of(body), page_count, segments)

    def _answer(self, path: str, **request: Any) -> dict[str, Any]:
        """The JSON body of a 200 answer; ``ClassifyFailed`` with the appliance's error code."""
        try:
            response = self._client.post(path, **request)
        except httpx.HTTPError as exc:
            raise ClassifyFailed("connection_error", f"{type(exc).__name__}: {exc}") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise ClassifyFailed("invalid_response", f"HTTP {response.status_code}") from exc
        if response.status_code != 200 or not isinstance(body, dict):
            error = body.get("error", {}) if isinstance(body, dict) else {}
            raise ClassifyFailed(
                str(error.get("code", "http_error")),
                f"HTTP {response.status_code}: {error.get('message', '')}",
            )
        return body

    def close(self) -> None:
        self._client.close()


def _outcome_of(body: dict[str, Any]) -> Outcome:
    try:
        usage = body["usage"]
        return Outcome(
            label=str(body["classification"]),
            confidence=float(body["confidence"]),
            needs_review=bool(body["needs_review"]),
            model=str(body["model"]),
            taxonomy_version=str(body["taxonomy_version"]),
            cached=bool(body["cached"]),
            truncated=bool(body["truncated"]),
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
            cost=usage["cost"],
            scores={str(label): float(p) for label, p in body["scores"].items()},
            stages=tuple(
                (str(answer["stage"]), float(answer["confidence"]))
                for answer in body.get("stages") or ()
            ),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ClassifyFailed("invalid_response", f"the answer lacks {exc}") from exc
