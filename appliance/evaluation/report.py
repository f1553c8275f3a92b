"""The evaluation report: JSON (everything), Markdown (for people) and two PNG plots.

Plots are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas: no pyplot, no global
backend state, safe to call from any thread or a headless server.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from appliance.cascade.calibration import CalibrationCheck, save_calibration
from appliance.evaluation.metrics import Metrics
from appliance.evaluation.stages import StageSummary

JSON_NAME = "report.json"
MARKDOWN_NAME = "report.md"
CONFUSION_PNG = "confusion_matrix.png"
RELIABILITY_PNG = "reliability.png"
PNG_METADATA = {"Software": None}
"""No matplotlib version in the PNG, so the same numbers draw the same bytes across upgrades."""


@dataclass(frozen=True)
class RunInfo:
    """How the predictions were obtained."""

    source: str
    """The dataset path, or ``reviews`` when scoring stored corrections."""
    mode: str
    """``in-process``, ``service`` or ``reviews``."""
    model: str
    taxonomy_version: str
    submitted: int
    elapsed_s: float
    concurrency: int
    cached: int = 0
    truncated: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    """Failed documents by error code; they are left out of the metrics."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    """Of the answered documents' model calls; None when no model has a configured price."""
    stages: tuple[StageSummary, ...] = ()
    """Per cascade stage, in order; empty when no cascade answered."""

    @property
    def answered(self) -> int:
        return self.submitted - sum(self.errors.values())

    @property
    def cost_per_1000(self) -> float | None:
        """Cost per 1,000 answered documents (answers reused from stored results included)."""
        if self.cost is None or not self.answered:
            return None
        return self.cost * 1000 / self.answered

    @property
    def throughput(self) -> float:
        """Documents answered per second of wall time."""
        return self.answered / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True)
class ReportPaths:
    json: Path
    markdown: Path
    confusion: Path
    reliability: Path


@dataclass(frozen=True)
class Calibration:
    """The model's confidences calibrated on this run's answers (``fit_and_check``), and the
    artifact a cascade's LLM stage can name; None when the run has no scores (reviews) or
    mixes models."""

    check: CalibrationCheck
    artifact: str | None = None
    """The artifact's file name, once written."""


def report_dict(
    metrics: Metrics, run: RunInfo, calibration: Calibration | None = None
) -> dict[str, Any]:
    return {
        "run": {
            **asdict(run),
            "throughput_docs_per_s": run.throughput,
            "cost_per_1000_documents": run.cost_per_1000,
            "stages": [{**asdict(stage), "accuracy": stage.accuracy} for stage in run.stages],
        },
        "count": metrics.count,
        "accuracy": metrics.accuracy,
        "macro_f1": metrics.macro_f1,
        "expected_calibration_error": metrics.ece,
        "abstention_rate": metrics.abstention_rate,
        "accuracy_non_abstained": metrics.accuracy_non_abstained,
        "per_label": {label: asdict(stats) for label, stats in metrics.per_label.items()},
        "confusion_matrix": {
            "labels": list(metrics.labels),
            "rows": "gold",
            "columns": "predicted",
            "matrix": [list(row) for row in metrics.confusion],
        },
        "reliability": [asdict(item) for item in metrics.reliability],
        "accuracy_coverage": [asdict(point) for point in metrics.coverage],
        "calibration": None if calibration is None else {
            "temperature": calibration.check.temperature.value,
            "fitted_on": calibration.check.fitted_on,
            "checked_on": calibration.check.checked_on,
            "ece_before": calibration.check.ece_before,
            "ece_after": calibration.check.ece_after,
            "artifact": calibration.artifact,
        },
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def markdown(metrics: Metrics, run: RunInfo, calibration: Calibration | None = None) -> str:
    lines = [
        "# Classification evaluation report",
        "",
        f"- Source: `{run.source}` ({run.mode})",
        f"- Model: `{run.model}`; taxonomy `{run.taxonomy_version}`",
        f"- Documents: {run.submitted} submitted, {metrics.count} scored, "
        f"{sum(run.errors.values())} failed"
        + (
            f" ({', '.join(f'{k}: {v}' for k, v in sorted(run.errors.items()))})"
            if run.errors
            else ""
        ),
        f"- Wall time {run.elapsed_s:.1f} s at concurrency {run.concurrency}: "
        f"{run.throughput:.2f} documents/s; {run.cached} cached, {run.truncated} truncated",
        f"- Tokens: {run.prompt_tokens} prompt, {run.completion_tokens} completion; cost "
        + (
            "not configured (APPLIANCE_MODEL_COSTS)"
            if run.cost is None or run.cost_per_1000 is None
            else f"{run.cost:.6g} in all, {run.cost / run.answered:.6g} per document, "
            f"{run.cost_per_1000:.6g} per 1,000 documents"
        ),
        "",
        "| Metric | Value |",
        "|---|---|",
        f"| Accuracy | {_pct(metrics.accuracy)} |",
        f"| Macro-F1 | {metrics.macro_f1:.3f} |",
        f"| Expected calibration error ({len(metrics.reliability)} bins) | {metrics.ece:.3f} |",
        f"| Abstention rate (needs review) | {_pct(metrics.abstention_rate)} |",
        f"| Accuracy of the non-abstained | {_pct(metrics.accuracy_non_abstained)} |",
        "",
        *_stage_lines(run.stages),
        "## Per label",
        "",
        "| Label | Precision | Recall | F1 | Support | Predicted |",
        "|---|---|---|---|---|---|",
    ]
    for label, stats in metrics.per_label.items():
        lines.append(
            f"| {label} | {stats.precision:.3f} | {stats.recall:.3f} | {stats.f1:.3f} "
            f"| {stats.support} | {stats.predicted} |"
        )
    lines += [
        "",
        "## Confusion matrix (rows: gold, columns: predicted)",
        "",
        "| gold \\ predicted | " + " | ".join(metrics.labels) + " |",
        "|---|" + "---|" * len(metrics.labels),
    ]
    for label, row in zip(metrics.labels, metrics.confusion, strict=True):
        lines.append(f"| {label} | " + " | ".join(str(n) for n in row) + " |")
    lines += [
        "",
        f"![Confusion matrix]({CONFUSION_PNG})",
        "",
        "## Calibration",
        "",
        "| Confidence | Documents | Mean confidence | Accuracy |",
        "|---|---|---|---|",
    ]
    for item in metrics.reliability:
        lines.append(
            f"| ({item.lower:.1f}, {item.upper:.1f}] | {item.count} "
            f"| {_pct(item.mean_confidence)} | {_pct(item.accuracy)} |"
        )
    lines += ["", f"![Reliability diagram]({RELIABILITY_PNG})", ""]
    if calibration is not None:
        check = calibration.check
        lines += [
            f"Temperature scaling fitted on {check.fitted_on} answers (every other one) and "
            f"checked on the other {check.checked_on}: T = {check.temperature.value:.3f}, ECE "
            f"{check.ece_before:.3f} before and {check.ece_after:.3f} after"
            + (f"; artifact `{calibration.artifact}` (a cascade's LLM stage names it)."
               if calibration.artifact else "."),
            "",
        ]  # fmt: skip
    lines += [
        "## Accuracy and coverage",
        "",
        "What a confidence threshold (a cascade stage's, or the review gate's) keeps, and how "
        "many of those it keeps are right.",
        "",
        "| Threshold | Share kept | Accuracy of those kept |",
        "|---|---|---|",
        *(f"| {p.threshold:.2f} | {_pct(p.coverage)} | {_pct(p.accuracy)} |"
          for p in metrics.coverage),
        "",
    ]  # fmt: skip
    return "\n".join(lines)


def _stage_lines(stages: tuple[StageSummary, ...]) -> list[str]:
    """The per-stage table (nothing without a cascade)."""
    if not stages:
        return []
    rows = [
        f"| {s.stage} | {s.asked} | {s.kept} | {_pct(s.share)} | {_pct(s.accuracy)} "
        f"| {s.prompt_tokens} | {s.completion_tokens} "
        f"| {'n/a' if s.cost is None else f'{s.cost:.6g}'} |"
        for s in stages
    ]
    return [
        "## Per cascade stage",
        "",
        "Each stage's answers: documents that reached it, those it kept (so the next stage was"
        " not asked), and how many of those were right. Tokens and cost are those of the results"
        " it answered, the stages asked before it included.",
        "",
        "| Stage | Asked | Kept | Share of all | Accuracy of those kept | Prompt tokens"
        " | Completion tokens | Cost |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def plot_confusion(metrics: Metrics, path: Path) -> None:
    size = len(metrics.labels)
    figure = Figure(figsize=(1.2 * size + 3, 1.0 * size + 2.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(metrics.confusion, cmap="Blues", vmin=0)
    figure.colorbar(image, ax=axes, label="documents")
    peak = max((max(row) for row in metrics.confusion), default=0)
    for i, row in enumerate(metrics.confusion):
        for j, count in enumerate(row):
            colour = "white" if peak and count > peak / 2 else "black"
            axes.text(j, i, str(count), ha="center", va="center", color=colour)
    axes.set_xticks(range(size), metrics.labels, rotation=35, ha="right")
    axes.set_yticks(range(size), metrics.labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("gold")
    axes.set_title(f"Confusion matrix (accuracy {_pct(metrics.accuracy)}, n={metrics.count})")
    figure.savefig(path, dpi=100, metadata=PNG_METADATA)


def plot_reliability(metrics: Metrics, path: Path) -> None:
    figure = Figure(figsize=(6, 6.5), layout="constrained")
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    width = 1.0 / len(metrics.reliability)
    centres = [(item.lower + item.upper) / 2 for item in metrics.reliability]
    accuracy = [item.accuracy or 0.0 for item in metrics.reliability]
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    top.bar(centres, accuracy, width=width * 0.9, color="tab:blue", label="accuracy")
    occupied = [item for item in metrics.reliability if item.count]
    top.plot(
        [item.mean_confidence for item in occupied],
        [item.accuracy for item in occupied],
        marker="o",
        color="tab:orange",
        label="mean confidence vs accuracy",
    )
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(f"Reliability diagram (ECE {metrics.ece:.3f})")
    top.legend(loc="upper left")
    bottom.bar(centres, [item.count for item in metrics.reliability], width=width * 0.9)
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("documents")
    figure.savefig(path, dpi=100, metadata=PNG_METADATA)


def write_report(
    metrics: Metrics, run: RunInfo, out_dir: Path, check: CalibrationCheck | None = None
) -> ReportPaths:
    """Write the four files into ``out_dir`` (created if missing) and return their paths; with
    ``check`` of a run that one model answered, its calibration artifact too."""
    out_dir.mkdir(parents=True, exist_ok=True)
    calibration = None
    if check is not None:
        artifact = None
        if "," not in run.model and "," not in run.taxonomy_version:
            artifact = save_calibration(check, run.model, run.taxonomy_version, out_dir).name
        calibration = Calibration(check, artifact)
    paths = ReportPaths(
        json=out_dir / JSON_NAME,
        markdown=out_dir / MARKDOWN_NAME,
        confusion=out_dir / CONFUSION_PNG,
        reliability=out_dir / RELIABILITY_PNG,
    )
    document = report_dict(metrics, run, calibration)
    paths.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    paths.markdown.write_text(markdown(metrics, run, calibration), encoding="utf-8")
    plot_confusion(metrics, paths.confusion)
    plot_reliability(metrics, paths.reliability)
    return paths
