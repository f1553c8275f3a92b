"""PDF pages with PDFium (pypdfium2): the text layer where it is usable, else the page rendered
for OCR. PDFium is Chromium's PDF engine: one library reads text layers quickly, renders pages
one at a time (a 100-page scan never holds more than the pages being read) and tells a
password-protected file from a corrupt one, without starting a process per page."""

from __future__ import annotations

from collections.abc import Iterator

import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pypdfium2.raw as pdfium_c  # type: ignore[import-untyped]

from appliance.errors import EncryptedDocument, UnprocessableDocument
from appliance.intake.limits import Limits
from appliance.intake.pages import Page, PageImage, PageText, TextSource

POINTS_PER_INCH = 72


def open_pdf(data: bytes) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == pdfium_c.FPDF_ERR_PASSWORD:
            raise EncryptedDocument("the PDF is password-protected") from exc
        raise UnprocessableDocument(f"not a readable PDF ({exc})") from exc


def read_pdf(data: bytes, limits: Limits, first_pages: int | None) -> Iterator[Page]:
    """Pages 1.. (at most ``first_pages`` of them, when given) of the PDF in ``data``."""
    document = open_pdf(data)
    try:
        limits.check_pages(len(document))
        count = len(document) if first_pages is None else min(first_pages, len(document))
        for index in range(count):
            yield _page(document, index, limits)
    finally:
        document.close()


def _page(document: pdfium.PdfDocument, index: int, limits: Limits) -> Page:
    number = index + 1
    try:
        page = document[index]
    except pdfium.PdfiumError as exc:
        raise UnprocessableDocument(f"page {number} of the PDF is unreadable ({exc})") from exc
    try:
        textpage = page.get_textpage()
        text = textpage.get_text_bounded()
        textpage.close()
        if sum(not c.isspace() for c in text) >= limits.text_layer_min_chars:
            return PageText(number, len(document), text, TextSource.TEXT_LAYER)
        scale = limits.dpi / POINTS_PER_INCH
        width, height = page.get_size()
        limits.check_pixels(width * scale, height * scale, number)
        bitmap = page.render(scale=scale, grayscale=True)
        return PageImage(number, len(document), bitmap.to_pil())
    finally:
        page.close()
