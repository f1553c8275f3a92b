"""Small real files for the classify tests, written where a command can read them."""

from __future__ import annotations

from pathlib import Path

from harness import documents


def write_pdf(path: Path, text: str) -> Path:
    """A one-page PDF with ``text`` in its text layer."""
    path.write_bytes(documents.text_pdf([[text]]))
    return path


def write_docx(path: Path, paragraphs: list[str]) -> Path:
    path.write_bytes(documents.docx_file(paragraphs))
    return path


def write_scan(path: Path, lines: list[str]) -> Path:
    """A one-page scan (image-only PDF): read by OCR."""
    path.write_bytes(documents.scanned_pdf([lines]))
    return path
