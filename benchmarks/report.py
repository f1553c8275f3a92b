"""Writing benchmark results into docs/benchmarks.md, one marked section per benchmark script."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPORT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def machine_line() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return (
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
        f"({cpu}), Python {platform.python_version()}."
    )


def write_section(name: str, lines: list[str]) -> None:
    """Replace (or append) the section between this benchmark's markers."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = REPORT.read_text() if REPORT.exists() else "# Benchmarks\n"
    section = "\n".join([start, *lines, end])
    if start in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(text)


def machine() -> str:
    """This machine in a line, for a benchmark's figures."""
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs,"
        f" Python {platform.python_version()}"
    )


def run_script(
    doc: str, arguments: Callable[[argparse.ArgumentParser], None], run: Callable[..., Any]
) -> None:
    """A benchmark script's ``main``: its options (``arguments``) and ``--json``, then
    ``run(args)``'s figures printed, and written to the ``--json`` file when given."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    arguments(parser)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures = run(args)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
