"""What ``appliance eval`` and ``appliance classify`` do, apart from parsing their options.

Kept out of ``appliance.evaluation.cli`` so that registering the commands costs nothing: this
module pulls in matplotlib, the file readers and the application, which ``appliance serve``
and ``appliance db upgrade`` do not need.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm  # type: ignore[import-untyped]

from appliance.cascade.calibration import HeldOut, fit_and_check
from appliance.classification.files import Mode
from appliance.classification.taxonomy import load_taxonomy
from appliance.client import ServiceConfig
from appliance.db import make_engine
from appliance.errors import ApplianceError, PayloadTooLarge
from appliance.evaluation.metrics import Prediction, evaluate
from appliance.evaluation.report import RunInfo, write_report
from appliance.evaluation.runner import (
    Classifier,
    EvaluationError,
    InProcessClassifier,
    Outcome,
    PageDone,
    ServiceClassifier,
    load_dataset,
    run,
)
from appliance.evaluation.stages import per_stage
from appliance.evaluation.target import Target
from appliance.review.services import stored_corrections
from appliance.services import build_services
from appliance.settings import Settings


@contextlib.contextmanager
def classifier_for(target: Target) -> Iterator[Classifier]:
    if target.service:
        config = ServiceConfig(target.service, target.cert, target.key, target.ca)
        with contextlib.closing(ServiceClassifier(config, target.concurrency)) as remote:
            yield remote
    else:
        with contextlib.closing(InProcessClassifier(build_services(Settings()))) as local:
            yield local


def evaluate_and_report(dataset: Path | None, out_dir: Path, bins: int, target: Target) -> None:
    """Score ``dataset`` (or, if None, the stored reviews) and write the report to ``out_dir``."""
    labels = list(load_taxonomy(Settings().taxonomy_path).names)
    check = None
    if dataset is None:
        predictions, info = _from_reviews()
    else:
        predictions, info, answers = _from_dataset(dataset, labels, target)
        check = fit_and_check(answers) if len(answers) >= 2 else None
    seen = {p.gold for p in predictions} | {p.predicted for p in predictions}
    metrics = evaluate([*labels, *sorted(seen - set(labels))], predictions, bins)
    paths = write_report(metrics, info, out_dir, check)
    click.echo(
        f"accuracy {metrics.accuracy:.3f}  macro-F1 {metrics.macro_f1:.3f}  "
        f"ECE {metrics.ece:.3f}  abstained {metrics.abstention_rate:.1%}  "
        f"({metrics.count} scored, {sum(info.errors.values())} failed, "
        f"{info.throughput:.2f} docs/s)"
    )
    for path in (paths.json, paths.markdown, paths.confusion, paths.reliability):
        click.echo(f"wrote {path}")


def _from_dataset(
    dataset: Path, labels: list[str], target: Target
) -> tuple[list[Prediction], RunInfo, list[HeldOut]]:
    """The predictions, how they were made, and the answers' scores with the true labels."""
    examples = load_dataset(dataset, labels)
    with classifier_for(target) as classifier:
        results, elapsed = run(
            [(e.document_id, e.text) for e in examples],
            classifier,
            target.concurrency,
            target.progress,
            "evaluating",
        )
    outcomes = [(e, r) for e, r in zip(examples, results, strict=True) if isinstance(r, Outcome)]
    errors = Counter(r.code for r in results if isinstance(r, ApplianceError))
    if not outcomes:
        raise EvaluationError(f"every document failed: {dict(errors)}")
    predictions = [Prediction(e.label, o.label, o.confidence, o.needs_review) for e, o in outcomes]
    info = RunInfo(
        source=str(dataset),
        mode="service" if target.service else "in-process",
        model=", ".join(sorted({o.model for _, o in outcomes})),
        taxonomy_version=", ".join(sorted({o.taxonomy_version for _, o in outcomes})),
        submitted=len(examples),
        elapsed_s=elapsed,
        concurrency=target.concurrency,
        cached=sum(o.cached for _, o in outcomes),
        truncated=sum(o.truncated for _, o in outcomes),
        errors=dict(errors),
        prompt_tokens=sum(o.prompt_tokens or 0 for _, o in outcomes),
        completion_tokens=sum(o.completion_tokens or 0 for _, o in outcomes),
        cost=_total_cost([o.cost for _, o in outcomes]),
        stages=per_stage([(e.label, o) for e, o in outcomes]),
    )
    answers = [HeldOut(o.scores, e.label) for e, o in outcomes if e.label in o.scores]
    return predictions, info, answers


def _total_cost(costs: list[float | None]) -> float | None:
    """The sum of the costs recorded; None when none was (no price configured)."""
    known = [cost for cost in costs if cost is not None]
    return sum(known) if known else None


def _from_reviews() -> tuple[list[Prediction], RunInfo]:
    engine = make_engine(Settings())
    try:
        corrections = stored_corrections(engine)
    finally:
        engine.dispose()
    if not corrections:
        raise EvaluationError("no reviewed results are stored yet")
    predictions = [
        Prediction(c.gold, c.predicted, c.confidence, c.needs_review) for c in corrections
    ]
    info = RunInfo(
        source="reviews",
        mode="reviews",
        model=", ".join(sorted({c.model for c in corrections})),
        taxonomy_version=", ".join(sorted({c.taxonomy_version for c in corrections})),
        submitted=len(corrections),
        elapsed_s=0.0,
        concurrency=0,
    )
    return predictions, info


def document_id(path: Path) -> str:
    """``file:<path as given>``, printable and at most 256 characters."""
    name = "".join(c if c.isprintable() else "?" for c in f"file:{path}")
    return name if len(name) <= 256 else name[:120] + "..." + name[-133:]


def classify_files(files: tuple[Path, ...], as_json: bool, mode: Mode, target: Target) -> None:
    """Classify each file (read, by OCR where it has no text layer, as the API does); print
    one line per file, in order; fail at the end if any failed. The progress bar counts files
    and pages."""
    max_bytes = Settings().file_max_bytes
    with (
        classifier_for(target) as classifier,
        tqdm(total=len(files), unit="file", desc="classifying", disable=not target.progress,
             file=sys.stderr) as bar,
        ThreadPoolExecutor(target.concurrency, thread_name_prefix="classify") as pool,
    ):  # fmt: skip
        pages = Counter[str]()

        def page_done() -> None:
            pages["read"] += 1
            bar.set_postfix(pages=pages["read"], refresh=False)

        def classify(path: Path) -> dict[str, Any]:
            row = _file_row(classifier, path, mode, max_bytes, page_done)
            bar.update(1)
            return row

        rows = list(pool.map(classify, files))
    for row in rows:
        click.echo(json.dumps(row) if as_json else _tsv(row))
    failed = sum("error" in row for row in rows)
    click.echo(f"{len(rows) - failed} classified, {failed} failed", err=True)
    if failed:
        raise EvaluationError(f"{failed} of {len(rows)} files could not be classified")


def _file_row(
    classifier: Classifier, path: Path, mode: Mode, max_bytes: int, page_done: PageDone
) -> dict[str, Any]:
    row: dict[str, Any] = {"file": str(path), "document_id": document_id(path)}
    try:
        if path.stat().st_size > max_bytes:
            raise PayloadTooLarge(f"the file is larger than {max_bytes} bytes")
        result = classifier.classify_file(row["document_id"], path.read_bytes(), mode, page_done)
    except OSError as exc:
        row["error"] = {"code": "unreadable_file", "message": exc.strerror or str(exc)}
    except ApplianceError as exc:
        row["error"] = {"code": exc.code, "message": exc.message}
    else:
        row.update(
            classification=result.outcome.label,
            confidence=round(result.outcome.confidence, 6),
            needs_review=result.outcome.needs_review,
            pages=result.page_count,
            segments=result.segments,
        )
    return row


def _tsv(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"{row['file']}\tERROR\t{row['error']['code']}\t{row['error']['message']}"
    review = "needs_review" if row["needs_review"] else "ok"
    return f"{row['file']}\t{row['classification']}\t{row['confidence']:.3f}\t{review}"
