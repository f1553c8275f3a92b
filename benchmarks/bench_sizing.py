"""Documents/s and prompt tokens/s for 1,000-token documents on this machine's CPU vLLM (the
figures docs/sizing.md builds on): the appliance's own backend and prompt, straight to vLLM,
each document distinct (only the instructions can come from vLLM's prefix cache), with a fixed
number in flight. Tokens are vLLM's own counts (``usage``); the prefix cache's hits come from
vLLM's metrics, so the tokens vLLM really computed are known too.

Run: ``.venv/bin/python -m benchmarks.bench_sizing [--documents N] [--in-flight N]``; it
rewrites its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from appliance.backends.interfaces import TokenUsage, combined
from appliance.backends.vllm import VllmBackend
from appliance.classification.labeller import Labeller
from appliance.classification.taxonomy import load_taxonomy
from appliance.settings import Settings
from benchmarks.report import machine_line, write_section
from harness import vllm_cpu
from harness.upstream import VllmEndpoint

NOTE = (
    "patient presented with acute lower back pain radiating to the left leg; examination "
    "showed reduced straight leg raise, normal reflexes and intact sensation. Plan: analgesia, "
    "physiotherapy referral, review in two weeks or sooner if symptoms worsen."
)
WORDS = NOTE.split()


def document(backend: VllmBackend, number: int, tokens: int) -> str:
    """A distinct clinical-sounding text of exactly ``tokens`` tokens (this model's)."""
    words = [f"Record {number}."] + [WORDS[(number + i) % len(WORDS)] for i in range(tokens)]
    return backend.detokenize(backend.tokenize(" ".join(words))[:tokens])


def prefix_cache_hits(endpoint: VllmEndpoint, api_key: str | None) -> float:
    """vLLM's counter of prompt tokens served from its prefix cache."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    page = httpx.get(
        endpoint.url + "/metrics", verify=endpoint.ssl_context(), headers=headers, timeout=10
    ).text
    match = re.search(r"^vllm:prefix_cache_hits_total\{[^}]*\} ([0-9.e+]+)$", page, re.M)
    return float(match.group(1)) if match else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=48)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=1000)
    args = parser.parse_args()
    with vllm_cpu.running_vllm() as endpoint:
        os.environ.update(endpoint.env)
        settings = Settings()
        backend = VllmBackend.from_settings(settings)
        labeller = Labeller(backend, load_taxonomy(None), settings.max_document_tokens)
        texts = [document(backend, n, args.tokens) for n in range(args.documents + 4)]
        for text in texts[-4:]:  # warm up: the grammar compiled, the instructions cached
            labeller.label(text)
        hits_before = prefix_cache_hits(endpoint, settings.vllm_api_key)
        started = time.perf_counter()
        with ThreadPoolExecutor(args.in_flight) as pool:
            answers = list(pool.map(labeller.label, texts[: args.documents]))
        seconds = time.perf_counter() - started
        hits = prefix_cache_hits(endpoint, settings.vllm_api_key) - hits_before
        backend.close()
    usage = combined([answer.usage for answer in answers]) or TokenUsage(0, 0)
    sent = usage.prompt_tokens / seconds
    computed = (usage.prompt_tokens - hits) / seconds
    lines = [
        "## CPU vLLM with 1,000-token documents (`benchmarks/bench_sizing.py`)",
        "",
        machine_line(),
        f"SmolLM2-135M (the tiny test model, not the production model) in the CPU vLLM, "
        f"{args.documents} distinct documents of {args.tokens} tokens, {args.in_flight} in "
        "flight, the appliance's prompt and backend straight to vLLM; tokens as vLLM counted "
        "them.",
        "",
        "| documents/s | prompt tokens per document | prompt tokens/s as sent | of them from the "
        "prefix cache | computed prompt tokens/s |",
        "|---|---|---|---|---|",
        f"| {args.documents / seconds:.2f} | {usage.prompt_tokens / args.documents:.0f} | "
        f"{sent:.0f} | {hits / max(usage.prompt_tokens, 1):.0%} | {computed:.0f} |",
        "",
    ]
    write_section("bench_sizing", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
