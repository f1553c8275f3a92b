"""Operator commands: ``appliance eval``, ``appliance classify`` and ``appliance taxonomy``.

Only option parsing lives here, so importing this module is cheap; the work is in
``appliance.evaluation.jobs``, imported when a command runs. Errors become exit codes in
``appliance.cli``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from appliance.evaluation.target import Target
from appliance.evaluation.taxonomy_cli import taxonomy

__all__ = ["classify_command", "eval_command", "taxonomy"]

R = TypeVar("R")
FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _target_options(command: Callable[..., R]) -> Callable[..., R]:
    """``--service URL`` with the client certificate for mutual TLS (without it: in-process),
    ``--concurrency`` and ``--progress``, handed to the command as one ``target``."""

    @functools.wraps(command)
    def with_target(
        *args: Any,
        service: str | None,
        cert: Path | None,
        key: Path | None,
        ca: Path | None,
        concurrency: int,
        progress: bool,
        **kwargs: Any,
    ) -> R:
        target = Target(service, cert, key, ca, concurrency, progress)
        return command(*args, target=target, **kwargs)

    options = [
        click.option(
            "--service",
            envvar="APPLIANCE_CLI_SERVICE_URL",
            help="Base URL of a running appliance (https://host:8443); default: in-process.",
        ),
        click.option(
            "--cert",
            type=FILE,
            envvar="APPLIANCE_CLI_CERT",
            help="Client certificate (PEM) for --service.",
        ),
        click.option(
            "--key",
            type=FILE,
            envvar="APPLIANCE_CLI_KEY",
            help="Client private key (PEM) for --service.",
        ),
        click.option(
            "--ca",
            type=FILE,
            envvar="APPLIANCE_CLI_CA",
            help="CA certificate(s) that signed the service's certificate.",
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
    decorated: Callable[..., R] = with_target
    for option in reversed(options):
        decorated = option(decorated)
    return decorated


@click.command("eval")
@click.argument("dataset", required=False, type=FILE)
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
    help="Score the stored results that reviewers labelled instead of a dataset.",
)
@click.option(
    "--bins",
    default=10,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Confidence bins for calibration.",
)
@_target_options
def eval_command(
    dataset: Path | None,
    out_dir: Path,
    from_reviews: bool,
    bins: int,
    target: Target,
) -> None:
    """Measure quality on DATASET (JSON lines of {"text", "label"}) and write a report.

    The documents go through the same classification path as the API: in-process (stored and
    audited like any classification) or through a running appliance with --service.
    """
    if (dataset is None) != from_reviews:
        raise click.UsageError("give either DATASET or --from-reviews")
    from appliance.evaluation import jobs

    jobs.evaluate_and_report(dataset, out_dir, bins, target)


@click.command("classify")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file instead of TSV.")
@click.option(
    "--mode",
    type=click.Choice(["document", "pages", "split"]),
    default="document",
    show_default=True,
    help="document: one label from the first pages; pages: one per page; split: documents"
    " in page ranges (in --json output).",
)
@_target_options
def classify_command(files: tuple[Path, ...], as_json: bool, mode: str, target: Target) -> None:
    """Classify local FILES (PDF, TIFF, PNG, JPEG, DOCX, UTF-8 text; scans by OCR), one line
    per file, as the API's classify-file does.

    Unreadable or empty files are reported and skipped; the exit code is 1 if any file failed.
    """
    from appliance.classification.files import Mode
    from appliance.evaluation import jobs

    jobs.classify_files(files, as_json, Mode(mode), target)
