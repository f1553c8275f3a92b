"""The prompt: a fixed prefix (instructions, taxonomy, examples) and the document last.

The prefix is byte-identical on every request so vLLM's automatic prefix caching skips it after
the first call. Nothing per-request (ids, timestamps) goes into the prompt.
"""

from __future__ import annotations

from appliance.classification.taxonomy import Taxonomy


def system_prompt(taxonomy: Taxonomy) -> str:
    lines = [
        "You route documents received by a hospital. Read the document and choose the one "
        "category it belongs to.",
        "",
        "Categories:",
    ]
    codes = list(taxonomy.code_to_label)
    for code, label in zip(codes, taxonomy.labels, strict=True):
        lines.append(f"{code}. {label.name}: {label.description}")
    examples = [
        (code, example)
        for code, label in zip(codes, taxonomy.labels, strict=True)
        for example in label.examples
    ]
    if examples:
        lines += ["", "Examples:"]
        for code, example in examples:
            lines += [f"Document: {example}", f"Answer: {code}"]
    lines += ["", f"Answer with the letter of the category only ({', '.join(codes)})."]
    return "\n".join(lines)


def question(document: str) -> str:
    """The part of the prompt after the cached prefix: the document, then the cue to answer."""
    return f"Document:\n{document}\n\nAnswer:"
