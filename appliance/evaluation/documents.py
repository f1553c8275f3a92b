"""Text out of local files for ``appliance classify``: plain text, PDF text layer, DOCX.

Every failure is a ``DocumentReadError`` whose message says what is wrong with the file and
never quotes its content. A PDF without a text layer (a scan) reads as empty: OCR is not done.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import docx
from docx.opc.exceptions import PackageNotFoundError
from pypdf import PdfReader
from pypdf.errors import PyPdfError

from appliance.errors import ApplianceError

MAX_FILE_BYTES = 64 * 1024 * 1024
"""Larger files are refused before parsing (the API takes at most 1 MiB of text anyway)."""


class DocumentReadError(ApplianceError):
    code = "unreadable_document"


class EmptyDocument(DocumentReadError):
    code = "empty_document"


def _pdf_text(path: Path) -> str:
    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            raise DocumentReadError("the PDF is encrypted")
        return "\n".join(page.extract_text() or "" for page in reader.pages)
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise DocumentReadError(f"not a readable PDF ({type(exc).__name__})") from exc


def _docx_text(path: Path) -> str:
    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise DocumentReadError(f"not a readable DOCX ({type(exc).__name__})") from exc
    parts = [paragraph.text for paragraph in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.append("\t".join(cell.text for cell in row.cells))
    return "\n".join(parts)


def _plain_text(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data:
        raise DocumentReadError("binary file (NUL bytes); want UTF-8 text, PDF or DOCX")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentReadError(f"not UTF-8 text (bad byte at offset {exc.start})") from exc


def extract_text(path: Path, max_file_bytes: int = MAX_FILE_BYTES) -> str:
    """The text of ``path`` by its suffix (``.pdf``, ``.docx``, anything else as UTF-8 text).

    Raises ``DocumentReadError`` if it cannot be read or is larger than ``max_file_bytes``,
    ``EmptyDocument`` if it has no text.
    """
    suffix = path.suffix.lower()
    try:
        size = path.stat().st_size
        if size > max_file_bytes:
            raise DocumentReadError(f"file is {size} bytes, want at most {max_file_bytes}")
        if suffix == ".pdf":
            text = _pdf_text(path)
        elif suffix == ".docx":
            text = _docx_text(path)
        else:
            text = _plain_text(path)
    except OSError as exc:
        raise DocumentReadError(f"cannot open: {exc.strerror or type(exc).__name__}") from exc
    if not text.strip():
        hint = " (a scan without a text layer?)" if suffix == ".pdf" else ""
        raise EmptyDocument(f"no text in the file{hint}")
    return text
