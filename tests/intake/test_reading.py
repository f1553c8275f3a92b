"""Each accepted kind of file gives its pages' text, from the text layer where a PDF has one and
by OCR otherwise; OCR finds at least 90% of the words of generated 200 DPI scans with noise
and a slight rotation."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from appliance.intake.extract import PageReader
from appliance.intake.formats import FileKind, kind_of
from appliance.intake.pages import TextSource
from harness import documents
from harness.documents import INVOICE, LAB_REPORT, LETTER

PACKET = [LETTER, LAB_REPORT, INVOICE]
DOCX = FileKind.DOCX.value

SCANS: dict[str, tuple[Callable[[], bytes], str]] = {
    "pdf": (lambda: documents.scanned_pdf(PACKET), "application/pdf"),
    "tiff": (lambda: documents.fax_tiff(PACKET), "image/tiff"),
}


@pytest.mark.parametrize("name", sorted(SCANS))
def test_scanned_pages_are_read_by_ocr_with_90_percent_word_recall(
    reader: PageReader, name: str
) -> None:
    make, media_type = SCANS[name]
    data = make()
    pages = list(reader.read(data, kind_of(data, media_type)))
    assert [page.number for page in pages] == [1, 2, 3]
    assert {page.source for page in pages} == {TextSource.OCR}
    for page, lines in zip(pages, PACKET, strict=True):
        assert documents.word_recall(" ".join(lines), page.text) >= 0.9, page.text


@pytest.mark.parametrize("kind", ["PNG", "JPEG"])
def test_a_photo_or_scan_image_is_one_page_read_by_ocr(reader: PageReader, kind: str) -> None:
    data = documents.image_file(LAB_REPORT, kind, seed=3)
    [page] = reader.read(data, kind_of(data, f"image/{kind.lower()}"))
    assert page.source is TextSource.OCR
    assert documents.word_recall(" ".join(LAB_REPORT), page.text) >= 0.9, page.text


def test_a_text_layer_is_used_as_it_is(reader: PageReader) -> None:
    data = documents.text_pdf(PACKET)
    pages = list(reader.read(data, kind_of(data, "application/pdf")))
    assert [page.source for page in pages] == [TextSource.TEXT_LAYER] * 3
    assert [documents.word_recall(" ".join(lines), page.text) for page, lines in
            zip(pages, PACKET, strict=True)] == [1.0] * 3  # fmt: skip


def test_a_page_whose_text_layer_is_too_thin_is_read_by_ocr(reader: PageReader) -> None:
    """A scanner's PDF often carries a stray word or a page number as text: not a text layer."""
    data = documents.text_pdf([LETTER, ["7"]])
    pages = list(reader.read(data, kind_of(data, "application/pdf")))
    assert [page.source for page in pages] == [TextSource.TEXT_LAYER, TextSource.OCR]


def test_docx_paragraphs_and_tables_are_one_page(reader: PageReader) -> None:
    data = documents.docx_file(INVOICE, table=[["Code", "Amount"], ["99213", "120.00"]])
    [page] = reader.read(data, kind_of(data, DOCX))
    assert page.source is TextSource.TEXT
    assert "Balance due 165.00" in page.text and "99213\t120.00" in page.text


def test_a_text_file_s_form_feeds_start_pages(reader: PageReader) -> None:
    data = "\f".join("\n".join(lines) for lines in PACKET).encode()
    pages = list(reader.read(data, kind_of(data, "text/plain; charset=utf-8")))
    assert [page.text.splitlines()[0] for page in pages] == [LETTER[0], LAB_REPORT[0], INVOICE[0]]


def test_only_the_first_pages_are_read_when_asked(reader: PageReader) -> None:
    data = documents.fax_tiff(PACKET)
    pages = list(reader.read(data, kind_of(data, "image/tiff"), first_pages=2))
    assert [page.number for page in pages] == [1, 2]
