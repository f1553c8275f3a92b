"""Operator commands: ``appliance eval``, ``appliance classify`` and ``appliance taxonomy``.

Each command turns the appliance's errors into ``click.ClickException`` (exit code 1) in one
place, ``_errors``, so the commands behave the same standalone and under ``appliance.cli``.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from appliance.classification.taxonomy import load_taxonomy
from appliance.db import make_engine
from appliance.errors import ApplianceError
from appliance.evaluation import taxonomy_cli
from appliance.evaluation.documents import extract_text
from appliance.evaluation.metrics import Prediction, evaluate
from appliance.evaluation.report import RunInfo, write_report
from appliance.evaluation.runner import (
    Classifier,
    EvaluationError,
    InProcessClassifier,
    Outcome,
    ServiceClassifier,
    ServiceConfig,
    load_dataset,
    run,
)
from appliance.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")
taxonomy = taxonomy_cli.taxonomy


def _errors(command: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(command)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ApplianceError as exc:
            raise click.ClickException(exc.message) from exc

    return wrapped


def _service_options(command: Callable[P, R]) -> Callable[P, R]:
    """``--service URL`` with the client certificate for mutual TLS; without it: in-process."""
    options = [
        click.option(
            "--service",
            envvar="APPLIANCE_CLI_SERVICE_URL",
            help="Base URL of a running appliance (https://host:8443); default: in-process.",
        ),
        click.option(
            "--cert",
            type=click.Path(exists=True, path_type=Path),
            envvar="APPLIANCE_CLI_CERT",
            help="Client certificate (PEM) for --service.",
        ),
        click.option(
            "--key",
            type=click.Path(exists=True, path_type=Path),
            envvar="APPLIANCE_CLI_KEY",
            help="Client private key (PEM) for --service.",
        ),
        click.option(
            "--ca",
            type=click.Path(exists=True, path_type=Path),
            envvar="APPLIANCE_CLI_CA",
            help="CA bundle that signed the service's certificate.",
        ),
        click.option(
            "--concurrency",
            default=8,
            show_default=True,
            type=click.IntRange(1, 256),
            help="Documents in flight at once.",
        ),
        click.option("--progress/--no-progress", default=True, help="Progress bar on stderr."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@contextlib.contextmanager
def _classifier(
    service: str | None, cert: Path | None, key: Path | None, ca: Path | None, concurrency: int
) -> Iterator[Classifier]:
    if service:
        with ServiceClassifier(ServiceConfig(service, cert, key, ca), concurrency) as remote:
            yield remote
    else:
        with InProcessClassifier(Settings()) as local:
            yield local


@click.command("eval")
@click.argument("dataset", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for report.json, report.md and the PNG plots.",
)
@click.option(
    "--from-reviews",
    is_flag=True,
    help="Score the stored results that reviewers corrected instead of a dataset.",
)
@click.option(
    "--bins",
    default=10,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Confidence bins for calibration.",
)
@_service_options
@_errors
def eval_command(
    dataset: Path | None,
    out_dir: Path,
    from_reviews: bool,
    bins: int,
    service: str | None,
    cert: Path | None,
    key: Path | None,
    ca: Path | None,
    concurrency: int,
    progress: bool,
) -> None:
    """Measure quality on DATASET (JSON lines of {"text", "label"}) and write a report.

    The documents go through the same classification path as the API: in-process (stored and
    audited like any classification) or through a running appliance with --service.
    """
    if (dataset is None) == (not from_reviews):
        raise click.UsageError("give either DATASET or --from-reviews")
    labels = list(load_taxonomy(Settings().taxonomy_path).names)
    if from_reviews:
        predictions, info = _from_reviews()
    else:
        assert dataset is not None
        examples = load_dataset(dataset, labels)
        with _classifier(service, cert, key, ca, concurrency) as classifier:
            results, elapsed = run(
                [(e.document_id, e.text) for e in examples],
                classifier,
                concurrency,
                progress,
                "evaluating",
            )
        outcomes = [
            (e, r) for e, r in zip(examples, results, strict=True) if isinstance(r, Outcome)
        ]
        errors = Counter(r.code for r in results if isinstance(r, ApplianceError))
        if not outcomes:
            raise EvaluationError(f"every document failed: {dict(errors)}")
        predictions = [
            Prediction(e.label, o.label, o.confidence, o.needs_review) for e, o in outcomes
        ]
        info = RunInfo(
            source=str(dataset),
            mode="service" if service else "in-process",
            model=", ".join(sorted({o.model for _, o in outcomes})),
            taxonomy_version=", ".join(sorted({o.taxonomy_version for _, o in outcomes})),
            submitted=len(examples),
            elapsed_s=elapsed,
            concurrency=concurrency,
            cached=sum(o.cached for _, o in outcomes),
            truncated=sum(o.truncated for _, o in outcomes),
            errors=dict(errors),
        )
    seen = {p.gold for p in predictions} | {p.predicted for p in predictions}
    metrics = evaluate([*labels, *sorted(seen - set(labels))], predictions, bins)
    paths = write_report(metrics, info, out_dir)
    click.echo(
        f"accuracy {metrics.accuracy:.3f}  macro-F1 {metrics.macro_f1:.3f}  "
        f"ECE {metrics.ece:.3f}  abstained {metrics.abstention_rate:.1%}  "
        f"({metrics.count} scored, {sum(info.errors.values())} failed, "
        f"{info.throughput:.2f} docs/s)"
    )
    for path in (paths.json, paths.markdown, paths.confusion, paths.reliability):
        click.echo(f"wrote {path}")


def _from_reviews() -> tuple[list[Prediction], RunInfo]:
    from appliance.review.services import stored_corrections  # needs the review tables only here

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


def _document_id(path: Path) -> str:
    name = "".join(c if c.isprintable() else "?" for c in f"file:{path}")
    return name if len(name) <= 256 else name[:120] + "..." + name[-133:]


@click.command("classify")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file instead of TSV.")
@_service_options
@_errors
def classify_command(
    files: tuple[Path, ...],
    as_json: bool,
    service: str | None,
    cert: Path | None,
    key: Path | None,
    ca: Path | None,
    concurrency: int,
    progress: bool,
) -> None:
    """Classify local FILES (UTF-8 text, PDF with a text layer, DOCX), one line per file.

    Unreadable or empty files are reported and skipped; the exit code is 1 if any file failed.
    """
    rows: list[dict[str, Any]] = []
    readable: list[tuple[int, str, str]] = []
    for index, path in enumerate(files):
        rows.append({"file": str(path)})
        try:
            readable.append((index, _document_id(path), extract_text(path)))
        except ApplianceError as exc:
            rows[index]["error"] = {"code": exc.code, "message": exc.message}
    if readable:
        with _classifier(service, cert, key, ca, concurrency) as classifier:
            results, _ = run([(d, t) for _, d, t in readable], classifier, concurrency, progress)
        for (index, document_id, _), result in zip(readable, results, strict=True):
            rows[index]["document_id"] = document_id
            if isinstance(result, ApplianceError):
                rows[index]["error"] = {"code": result.code, "message": result.message}
            else:
                rows[index].update(
                    classification=result.label,
                    confidence=round(result.confidence, 6),
                    needs_review=result.needs_review,
                )
    for row in rows:
        click.echo(json.dumps(row) if as_json else _tsv(row))
    failed = sum("error" in row for row in rows)
    click.echo(f"{len(rows) - failed} classified, {failed} failed", err=True)
    if failed:
        raise click.ClickException(f"{failed} of {len(rows)} files could not be classified")


def _tsv(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"{row['file']}\tERROR\t{row['error']['code']}\t{row['error']['message']}"
    review = "needs_review" if row["needs_review"] else "ok"
    return f"{row['file']}\t{row['classification']}\t{row['confidence']:.3f}\t{review}"
