"""DOCX text with python-docx: paragraphs, then tables, as one page (a DOCX has no pages until
a word processor lays it out). The archive's unpacked size is checked first (a zip bomb)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

import docx
from docx.opc.exceptions import PackageNotFoundError

from appliance.errors import ExpandsTooFar, UnprocessableDocument
from appliance.intake.limits import Limits
from appliance.intake.pages import Page, PageText, TextSource


def read_docx(data: bytes, limits: Limits, first_pages: int | None) -> Iterator[Page]:
    _check_expansion(data, limits.max_expanded_bytes)
    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise UnprocessableDocument(f"not a readable DOCX ({type(exc).__name__})") from exc
    parts = [paragraph.text for paragraph in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.append("\t".join(cell.text for cell in row.cells))
    yield PageText(1, 1, "\n".join(parts), TextSource.TEXT)


def _check_expansion(data: bytes, limit: int) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(entry.file_size for entry in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise UnprocessableDocument(f"not a readable DOCX ({exc})") from exc
    if unpacked > limit:
        raise ExpandsTooFar(f"the DOCX unpacks to {unpacked} bytes, want at most {limit}")
