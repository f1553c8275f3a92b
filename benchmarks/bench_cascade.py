"""The cascade on a real public corpus: the embedding stage's documents/s on this machine, its
accuracy-coverage curve and calibration error on held-out documents, and the cascade's
documents/s at the acceptance rate measured there, next to the LLM stage alone (the CPU vLLM).

The corpus is the Medical Abstracts Text Classification Corpus (Schopf, Braun and Matthes,
NLPIR 2022; CC BY-SA 3.0), ``medical_tc_test.csv`` and ``medical_tc_labels.csv`` from GitHub
``sebischair/Medical-Abstracts-TC-Corpus`` at ``70a2d9106c724729be8b3c4ddb00d1b14ec300c8``:
2,888 abstracts in 5 disease classes. Not committed and not fetched here: pass the folder
holding the two files. Texts given two labels are left out. The taxonomy is the corpus's five
classes; the split is ``appliance train``'s (by content digest: fit 70 %, calibrate 15 %,
gate 15 %).

Run: ``.venv/bin/python -m benchmarks.bench_cascade --corpus DIR [--kept-accuracy 0.9]``; it
rewrites its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from appliance.backends.vllm import VllmBackend
from appliance.cascade.cascade import Cascade, CascadeStage
from appliance.cascade.embedding import EmbeddingLabeller
from appliance.cascade.encoder import Encoder
from appliance.cascade.training import Example, Margins, train
from appliance.classification.content import content_sha256
from appliance.classification.labeller import DocumentLabeller, Labeller
from appliance.classification.taxonomy import Label, Taxonomy
from appliance.evaluation.metrics import CoveragePoint
from appliance.settings import Settings
from benchmarks.report import machine_line, write_section
from harness import vllm_cpu
from harness.encoder import encoder_folder

SPEED_DOCUMENTS = 256
ROUNDS = 3


def corpus(folder: Path) -> tuple[Taxonomy, list[Example]]:
    with (folder / "medical_tc_labels.csv").open(newline="") as f:
        names = {row["condition_label"]: row["condition_name"] for row in csv.DictReader(f)}
    taxonomy = Taxonomy(labels=tuple(
        Label(name=name.upper().replace(" ", "_"), description=f"A medical abstract about {name}.")
        for name in names.values()
    ))  # fmt: skip
    label_of = dict(zip(names, taxonomy.names, strict=True))
    given: dict[str, set[str]] = defaultdict(set)
    with (folder / "medical_tc_test.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            given[row["medical_abstract"]].add(label_of[row["condition_label"]])
    examples = [Example(text, labels.pop(), content_sha256(text))
                for text, labels in given.items() if len(labels) == 1]  # fmt: skip
    return taxonomy, examples


def rate(work: Callable[[Sequence[str]], object], texts: Sequence[str]) -> float:
    started = time.perf_counter()
    work(texts)
    return len(texts) / (time.perf_counter() - started)


def in_flight(labeller: DocumentLabeller, count: int) -> Callable[[Sequence[str]], object]:
    def run(texts: Sequence[str]) -> object:
        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(labeller.label, texts))

    return run


def threshold_for(curve: Sequence[CoveragePoint], accuracy: float) -> CoveragePoint:
    """The lowest threshold whose kept documents are at least ``accuracy`` right."""
    return next((p for p in curve if p.accuracy is not None and p.accuracy >= accuracy), curve[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--kept-accuracy", type=float, nargs="+", default=[0.9, 0.8],
                        help="Cascade thresholds: the lowest keeping documents this accurate.")
    parser.add_argument("--documents", type=int, default=48, help="Per cascade/LLM round.")
    parser.add_argument("--in-flight", type=int, default=8)
    args = parser.parse_args()
    taxonomy, examples = corpus(args.corpus)
    encoder = Encoder(encoder_folder(), threads=os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as heads:
        started = time.perf_counter()
        outcome = train(examples, {}, encoder, None, taxonomy, 0.9, Margins(min_kept_accuracy=0),
                        Path(heads))  # fmt: skip
        training_s = time.perf_counter() - started
        stage = EmbeddingLabeller(encoder, outcome.candidate, taxonomy)
    figures = outcome.figures
    chosen = [threshold_for(figures.curve, accuracy) for accuracy in args.kept_accuracy]
    gate = [e for e in examples if e.side() == "gate"]
    texts = [e.text for e in examples[:SPEED_DOCUMENTS]]
    batched, single = [], []
    for _ in range(ROUNDS):
        batched.append(rate(encoder.encode, texts))
        single.append(rate(lambda items: [stage.label(t) for t in items], texts))

    with vllm_cpu.running_vllm() as endpoint:
        os.environ.update(endpoint.env)
        settings = Settings()
        backend = VllmBackend.from_settings(settings)
        llm = Labeller(backend, taxonomy, settings.max_document_tokens)
        cascades = [Cascade([CascadeStage("embedding", stage, point.threshold),
                             CascadeStage("llm", llm, 0.0)]) for point in chosen]  # fmt: skip
        for text in ("Warm-up abstract one.", "Warm-up abstract two."):
            llm.label(text)
        n = args.documents
        paths: list[DocumentLabeller] = [llm, *cascades]
        texts_of = iter([e.text for e in gate[i * n : (i + 1) * n]] for i in range(2 * len(paths)))
        rates: list[list[float]] = [[] for _ in paths]  # distinct texts each: no prefix reuse
        for _ in range(2):
            for path, measured in zip(paths, rates, strict=True):
                measured.append(rate(in_flight(path, args.in_flight), next(texts_of)))
        backend.close()

    curve_rows = [f"| {p.threshold:.2f} | {p.coverage:.1%} | "
                  f"{'-' if p.accuracy is None else f'{p.accuracy:.1%}'} |"
                  for p in figures.curve[::2]]  # fmt: skip
    sides = outcome.candidate.head.training["examples"]
    names = ["LLM alone", *(f"cascade, threshold {p.threshold:.2f} ({a:.0%} right)"
                            for p, a in zip(chosen, args.kept_accuracy, strict=True))]  # fmt: skip
    shares = ["-", *(f"{p.coverage:.1%}" for p in chosen)]
    alone = statistics.median(rates[0])
    speed_rows = [
        f"| {name} | {share} | {', '.join(f'{r:.2f}' for r in measured)} | "
        f"{statistics.median(measured):.2f} | **{statistics.median(measured) / alone:.2f}x** |"
        for name, share, measured in zip(names, shares, rates, strict=True)
    ]
    lines = [
        "## The cascade's embedding stage on a real corpus (`benchmarks/bench_cascade.py`)",
        "",
        machine_line(),
        "Medical Abstracts TC Corpus (Schopf et al., NLPIR 2022, CC BY-SA 3.0; GitHub "
        "`sebischair/Medical-Abstracts-TC-Corpus` @ `70a2d91`, `medical_tc_test.csv`): "
        f"{len(examples)} abstracts with one label in 5 disease classes, split by content digest "
        f"(fit {sides['fit']}, calibrate {sides['calibrate']}, gate {sides['gate']}). "
        "all-MiniLM-L6-v2 int8 in ONNX Runtime, 128 tokens, linear head (scikit-learn), "
        f"temperature {outcome.candidate.head.temperature:.3f} fitted on the calibration split; "
        f"training took {training_s:.0f} s (encoding included).",
        "",
        f"On the {sides['gate']} gate documents: accuracy {figures.accuracy:.1%} over all; "
        f"ECE {figures.ece_uncalibrated:.3f} uncalibrated, {figures.ece_calibrated:.3f} "
        "calibrated.",
        "",
        "| threshold | share kept | accuracy of those kept |",
        "|---|---|---|",
        *curve_rows,
        "",
        f"Speed of the stage alone ({SPEED_DOCUMENTS} abstracts, {os.cpu_count()} threads, "
        f"median of {ROUNDS}): **{statistics.median(single):.1f} documents/s** one at a time "
        f"as the API asks it, {statistics.median(batched):.1f} in batches of 8 (the encoder "
        "alone).",
        "",
        "The cascade at thresholds chosen on the gate split's curve (the lowest whose kept "
        "documents are that accurate) next to the LLM stage alone, SmolLM2-135M on the CPU "
        f"vLLM, {args.documents} distinct gate abstracts per round, {args.in_flight} in flight, "
        "2 rounds each, alternated:",
        "",
        "| path | share the embedding stage keeps | documents/s (rounds) | median | / LLM alone |",
        "|---|---|---|---|---|",
        *speed_rows,
        "",
    ]
    write_section("bench_cascade", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
