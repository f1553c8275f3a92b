"""``appliance taxonomy show|validate|diff``: look at taxonomy versions before they go live.

Every result keeps the taxonomy version it was made with, and stored results are only reused
for the same version, so a changed taxonomy means fresh classifications (and a new evaluation).
"""

from __future__ import annotations

from pathlib import Path

import click

from appliance.classification.taxonomy import Label, Taxonomy, TaxonomyError, load_taxonomy
from appliance.settings import Settings

DEFAULT = "default"


def _load(source: str | None) -> Taxonomy:
    """``None``: the configured taxonomy; ``default``: the built-in one; else a file path."""
    if source is None:
        return load_taxonomy(Settings().taxonomy_path)
    return load_taxonomy(None if source == DEFAULT else Path(source))


@click.group()
def taxonomy() -> None:
    """Show, validate and compare taxonomy files."""


@taxonomy.command()
@click.argument("source", required=False)
def show(source: str | None) -> None:
    """Show SOURCE (a file, or "default"; without it the configured taxonomy)."""
    loaded = _load(source)
    click.echo(f"version {loaded.version}")
    for code, label in zip(loaded.code_to_label, loaded.labels, strict=False):
        threshold = (
            "" if label.review_threshold is None else f"  [review < {label.review_threshold}]"
        )
        click.echo(f"{code}  {label.name}{threshold}")
        click.echo(f"   {label.description}")
        for example in label.examples:
            click.echo(f"   e.g. {example}")


@taxonomy.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(files: tuple[str, ...]) -> None:
    """Check each of FILES; print its version, or why it is invalid (exit code 1)."""
    bad = 0
    for name in files:
        try:
            click.echo(f"{name}: ok, {_load(name).version}")
        except TaxonomyError as exc:
            bad += 1
            click.echo(f"{name}: INVALID: {exc.message}", err=True)
    if bad:
        raise TaxonomyError(f"{bad} of {len(files)} taxonomy files are invalid")


def _label_changes(old: Label, new: Label) -> list[str]:
    changes = []
    if old.description != new.description:
        changes.append("description changed")
    if old.examples != new.examples:
        changes.append(f"examples changed ({len(old.examples)} -> {len(new.examples)})")
    if old.review_threshold != new.review_threshold:
        changes.append(f"review_threshold {old.review_threshold} -> {new.review_threshold}")
    return changes


def diff_lines(old: Taxonomy, new: Taxonomy) -> list[str]:
    """What changed from ``old`` to ``new``, one line per change; empty when identical."""
    if old.version == new.version:
        return []
    lines = [f"version {old.version} -> {new.version}"]
    before = {label.name: label for label in old.labels}
    after = {label.name: label for label in new.labels}
    old_codes = {name: code for code, name in old.code_to_label.items()}
    new_codes = {name: code for code, name in new.code_to_label.items()}
    lines += [f"- {name} (removed)" for name in old.names if name not in after]
    lines += [f"+ {name} (added)" for name in new.names if name not in before]
    for name in new.names:
        if name not in before:
            continue
        changes = _label_changes(before[name], after[name])
        if old_codes[name] != new_codes[name]:
            changes.append(f"answer code {old_codes[name]} -> {new_codes[name]}")
        if changes:
            lines.append(f"~ {name}: {'; '.join(changes)}")
    lines.append("results made with the old version will not be reused: re-run the evaluation")
    return lines


@taxonomy.command()
@click.argument("old")
@click.argument("new", required=False)
def diff(old: str, new: str | None) -> None:
    """Compare OLD with NEW (files, or "default"; NEW defaults to the configured taxonomy)."""
    lines = diff_lines(_load(old), _load(new))
    click.echo("\n".join(lines) if lines else "identical")
