"""Files that must not be read: each refused with its own status and code before the work the
limit bounds (a decompression or zip bomb is never unpacked)."""

from __future__ import annotations

import pytest
from fpdf import FPDF

from appliance.errors import ApplianceError
from appliance.intake.extract import PageReader
from appliance.intake.formats import FileKind, kind_of
from appliance.intake.ocr import TesseractOcr
from harness import documents
from harness.documents import LETTER
from tests.intake.conftest import limits

DOCX = FileKind.DOCX.value


def refusal(reader: PageReader, data: bytes, media_type: str) -> ApplianceError:
    with pytest.raises(ApplianceError) as caught:
        list(reader.read(data, kind_of(data, media_type)))
    return caught.value


def test_more_pages_than_allowed_is_413(ocr: TesseractOcr) -> None:
    reader = PageReader(limits(max_pages=2), ocr, workers=1)
    error = refusal(reader, documents.text_pdf([LETTER] * 3), "application/pdf")
    assert (error.status, error.code) == (413, "too_many_pages")
    error = refusal(reader, documents.fax_tiff([LETTER] * 3), "image/tiff")
    assert (error.status, error.code) == (413, "too_many_pages")


def test_a_decompression_bomb_is_413_before_it_is_decoded(reader: PageReader) -> None:
    bomb = documents.pixel_bomb()
    assert len(bomb) < 1_000_000
    error = refusal(reader, bomb, "image/png")
    assert (error.status, error.code) == (413, "too_many_pixels")


def test_a_pdf_page_too_large_to_render_is_413(ocr: TesseractOcr) -> None:
    pdf = FPDF(format=(5000, 5000))  # 5 m square, in mm; no text layer to read
    pdf.add_page()
    reader = PageReader(limits(), ocr, workers=1)
    error = refusal(reader, bytes(pdf.output()), "application/pdf")
    assert (error.status, error.code) == (413, "too_many_pixels")


def test_a_zip_bomb_docx_is_413_before_it_is_unpacked(reader: PageReader) -> None:
    bomb = documents.zip_bomb_docx()
    assert len(bomb) < 1_000_000
    error = refusal(reader, bomb, DOCX)
    assert (error.status, error.code) == (413, "expands_too_far")


def test_a_password_protected_pdf_is_422(reader: PageReader) -> None:
    error = refusal(reader, documents.password_protected_pdf(), "application/pdf")
    assert (error.status, error.code) == (422, "encrypted_document")


@pytest.mark.parametrize(
    ("data", "media_type"),
    [
        (b"%PDF-1.7\n" + b"\x13" * 400, "application/pdf"),
        (documents.image_file(LETTER, "PNG")[:5000], "image/png"),
        (documents.fax_tiff([LETTER])[:3000], "image/tiff"),
        (documents.docx_file(LETTER)[:2000], DOCX),
        ("Befund f\u00fcr Frau M\u00fcller".encode("latin-1"), "text/plain"),
    ],
    ids=["pdf-garbage", "png-truncated", "tiff-truncated", "docx-truncated", "text-latin-1"],
)
def test_a_corrupt_or_truncated_file_is_422_naming_the_problem(
    reader: PageReader, data: bytes, media_type: str
) -> None:
    error = refusal(reader, data, media_type)
    assert (error.status, error.code) == (422, "unreadable_document"), error
    assert error.message


@pytest.mark.parametrize(
    ("data", "declared"),
    [
        (documents.text_pdf([LETTER]), "image/png"),
        (documents.image_file(LETTER, "PNG"), "application/pdf"),
        (documents.docx_file(LETTER), "application/pdf"),
        (b"plain words", "image/tiff"),
    ],
    ids=["pdf-as-png", "png-as-pdf", "docx-as-pdf", "text-as-tiff"],
)
def test_a_media_type_the_content_contradicts_is_415(data: bytes, declared: str) -> None:
    with pytest.raises(ApplianceError) as caught:
        kind_of(data, declared)
    assert (caught.value.status, caught.value.code) == (415, "media_type_mismatch")


@pytest.mark.parametrize("declared", ["application/zip", "image/gif", ""])
def test_an_unaccepted_media_type_is_415(declared: str) -> None:
    with pytest.raises(ApplianceError) as caught:
        kind_of(b"GIF89a", declared)
    assert (caught.value.status, caught.value.code) == (415, "unsupported_media_type")


def test_a_page_over_the_ocr_time_limit_is_422() -> None:
    reader = PageReader(limits(), TesseractOcr("eng", timeout_s=0.01), workers=1)
    error = refusal(reader, documents.image_file(LETTER, "PNG"), "image/png")
    assert (error.status, error.code) == (422, "ocr_timeout")
