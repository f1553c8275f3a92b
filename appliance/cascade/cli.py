"""``appliance train``: fit a new head for the cascade's embedding stage from a labelled JSON
Lines file and the reviewers' corrections, gate it against the head in service, and promote it
or refuse it; either way the outcome is on the audit record before anything changes.

Exit status (``appliance.cli``): 0 promoted, 1 refused by the gate or failed.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from pathlib import Path

import click

from appliance.audit_bridge.interfaces import Action
from appliance.audit_bridge.recorder import AuditRecorder, Subject
from appliance.audit_bridge.services import PostgresAuditSink, load_pseudonym_key
from appliance.cascade.config import (
    CascadeConfigError,
    EmbeddingStageConfig,
    load_cascade_config,
    stage_parts,
)
from appliance.cascade.head import promote
from appliance.cascade.training import (
    Margins,
    Outcome,
    TrainingError,
    load_corrections,
    read_examples,
    train,
)
from appliance.classification.taxonomy import load_taxonomy
from appliance.context import RequestContext
from appliance.db import make_engine
from appliance.settings import Settings

PROMOTED, REFUSED = 200, 409
"""The outcome statuses of ``promote_stage_model`` events."""


class TrainingRefused(TrainingError):
    code = "training_refused"


@click.command("train")
@click.option(
    "--examples",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help='JSON Lines of {"text": ..., "label": ...}.',
)
@click.option(
    "--stage",
    default="embedding",
    show_default=True,
    help="The cascade's embedding stage to train (APPLIANCE_CASCADE_PATH).",
)
@click.option(
    "--margin-accuracy",
    type=float,
    default=Margins.accuracy,
    show_default=True,
    help="How far below the current head's accuracy on kept documents a new one may be.",
)
@click.option(
    "--margin-share",
    type=float,
    default=Margins.share,
    show_default=True,
    help="How far below the current head's share of kept documents a new one may be.",
)
@click.option(
    "--min-kept-accuracy",
    type=float,
    default=Margins.min_kept_accuracy,
    show_default=True,
    help="The accuracy on kept documents any promoted head reaches.",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the gate's figures here (JSON).",
)
def train_command(
    examples: Path, stage: str, margin_accuracy: float, margin_share: float,
    min_kept_accuracy: float, report: Path | None,
) -> None:  # fmt: skip
    """Train, gate, and promote or refuse a new head for a cascade stage."""
    settings = Settings()
    if settings.cascade_path is None:
        raise CascadeConfigError("no cascade configured: set APPLIANCE_CASCADE_PATH")
    config = load_cascade_config(settings.cascade_path).stage(stage)
    if not isinstance(config, EmbeddingStageConfig):
        raise CascadeConfigError(f"stage {stage!r} is not an embedding stage")
    taxonomy = load_taxonomy(settings.taxonomy_path)
    encoder, current = stage_parts(config, os.cpu_count() or 1)
    engine = make_engine(settings)
    try:
        outcome = train(
            read_examples(examples, taxonomy),
            load_corrections(engine, taxonomy.version),
            encoder,
            current,
            taxonomy,
            config.threshold,
            Margins(margin_accuracy, margin_share, min_kept_accuracy),
            config.heads,
        )
        figures = json.dumps(outcome.report(), indent=2)
        if report is not None:
            report.write_text(figures + "\n")
        recorder = AuditRecorder(PostgresAuditSink(engine, load_pseudonym_key(settings)))
        context = RequestContext(f"train-{socket.gethostname()}-{os.getpid()}", None, None)
        status = PROMOTED if outcome.promoted else REFUSED
        recorder.record_outcome(context, Action.PROMOTE_STAGE_MODEL, status,
                                Subject(detail=_detail(stage, outcome)))  # fmt: skip
    finally:
        engine.dispose()
    click.echo(figures)
    if not outcome.promoted:
        raise TrainingRefused("the gate refused the new head: " + "; ".join(outcome.reasons))
    promote(outcome.candidate, config.heads)


def _detail(stage: str, outcome: Outcome) -> str:
    """The audit entry's summary: who ran it, which artifact, and the gate's figures."""
    figures, current = outcome.figures, outcome.current
    kept = "none" if figures.kept_accuracy is None else f"{figures.kept_accuracy:.3f}"
    text = (f"stage {stage} head sha256:{outcome.candidate.digest} by {getpass.getuser()}: "
            f"kept {figures.kept_share:.3f} at accuracy {kept}")  # fmt: skip
    if current is not None:
        now = "none" if current.kept_accuracy is None else f"{current.kept_accuracy:.3f}"
        text += f" (current kept {current.kept_share:.3f} at accuracy {now})"
    return text + ("" if outcome.promoted else " refused: " + "; ".join(outcome.reasons))
