"""Files as hospitals receive them, generated from known text (no binary fixtures): text-layer
PDFs (fpdf2), scans (Pillow: 200 DPI, mild noise and rotation) as image-only PDFs, multi-page
fax TIFFs, PNG and JPEG, and DOCX (python-docx). Tests and benchmarks share them."""

from __future__ import annotations

import io
import random
import re
import zipfile
from collections.abc import Sequence

import docx
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont

# Three documents of a referral packet, as a clinic would send them.
LETTER = [
    "Dear Dr. Smith, thank you for referring Mrs. Jane Roe to our cardiology clinic.",
    "She was seen on March 3 for follow-up of hypertension and type 2 diabetes.",
    "Blood pressure was 128/82 and her medication was continued unchanged.",
    "We will see her again in three months. Kind regards, Dr. Adams",
]
LAB_REPORT = [
    "LABORATORY REPORT  Specimen: whole blood  Collected: 2026-03-03 08:15",
    "Hemoglobin A1c 7.2 percent  reference 4.0 to 5.6",
    "Glucose fasting 142 mg/dL  reference 70 to 99",
    "Creatinine 0.9 mg/dL  reference 0.6 to 1.1  Validated by the laboratory",
]
INVOICE = [
    "INVOICE 2026-0413  Statement of account",
    "Office visit, established patient, level 3   amount 120.00",
    "Electrocardiogram with interpretation   amount 45.00",
    "Balance due 165.00  Please pay within 30 days of the invoice date",
]

A4_INCHES = (8.27, 11.69)
Lines = Sequence[str]


def scan(lines: Lines, *, dpi: int = 200, seed: int = 0, noise: float = 0.01,
         rotation: float = 0.6) -> Image.Image:  # fmt: skip
    """A grayscale A4 page with ``lines`` in a 12-point font, as a scanner or fax gives it:
    ``noise`` of the pixels flipped to dark specks, turned by up to ``rotation`` degrees."""
    rng = random.Random(seed)  # noqa: S311 - noise in test images, not a secret
    width, height = (round(side * dpi) for side in A4_INCHES)
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=round(12 * dpi / 72))
    x, y, step = dpi, dpi, round(18 * dpi / 72)
    for line in lines:
        draw.text((x, y), line, fill=0, font=font)
        y += step
    for _ in range(int(width * height * noise)):
        page.putpixel((rng.randrange(width), rng.randrange(height)), rng.randrange(0, 128))
    angle = rng.uniform(-rotation, rotation)
    return page.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=255, expand=False)


def scanned_pdf(pages: Sequence[Lines], *, dpi: int = 200, seed: int = 0) -> bytes:
    """An image-only PDF (no text layer), one scan per page."""
    images = [scan(lines, dpi=dpi, seed=seed + n) for n, lines in enumerate(pages)]
    out = io.BytesIO()
    images[0].save(out, "PDF", resolution=dpi, save_all=True, append_images=images[1:])
    return out.getvalue()


def fax_tiff(pages: Sequence[Lines], *, dpi: int = 200, seed: int = 0) -> bytes:
    """A multi-page bilevel TIFF with CCITT Group 4 compression, as fax servers store them."""
    images = [
        scan(lines, dpi=dpi, seed=seed + n).convert("1", dither=Image.Dither.NONE)
        for n, lines in enumerate(pages)
    ]
    out = io.BytesIO()
    images[0].save(out, "TIFF", compression="group4", dpi=(dpi, dpi), save_all=True,
                   append_images=images[1:])  # fmt: skip
    return out.getvalue()


def image_file(lines: Lines, kind: str, *, dpi: int = 200, seed: int = 0) -> bytes:
    """One scan as ``kind`` ("PNG" or "JPEG")."""
    out = io.BytesIO()
    scan(lines, dpi=dpi, seed=seed).save(out, kind, dpi=(dpi, dpi))
    return out.getvalue()


def text_pdf(pages: Sequence[Lines]) -> bytes:
    """A PDF with a text layer (Helvetica), one page per item."""
    pdf = FPDF(format="A4")
    pdf.set_font("Helvetica", size=12)
    for lines in pages:
        pdf.add_page()
        for line in lines:
            pdf.cell(0, 7, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def docx_file(paragraphs: Lines, table: Sequence[Sequence[str]] = ()) -> bytes:
    document = docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for row, values in zip(grid.rows, table, strict=True):
            for cell, value in zip(row.cells, values, strict=True):
                cell.text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def word_recall(expected: str, found: str) -> float:
    """Share of the words of ``expected`` that ``found`` holds (as many times), case-folded.
    Words are runs of letters and digits: a speck read as punctuation does not hide a word."""
    wanted = [word.casefold() for word in re.findall(r"\w+", expected)]
    have: dict[str, int] = {}
    for word in re.findall(r"\w+", found):
        have[word.casefold()] = have.get(word.casefold(), 0) + 1
    hits = 0
    for word in wanted:
        if have.get(word, 0) > 0:
            have[word] -= 1
            hits += 1
    return hits / len(wanted) if wanted else 1.0


# Files that must be refused --------------------------------------------------------------


def pixel_bomb() -> bytes:
    """A PNG of 900 megapixels in a few kilobytes: a decompression bomb."""
    out = io.BytesIO()
    Image.new("1", (30_000, 30_000), 1).save(out, "PNG")
    return out.getvalue()


def zip_bomb_docx() -> bytes:
    """A valid DOCX carrying 80 MB of zeros that deflate to under 1 MB: a zip bomb."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(docx_file(["A letter."]))) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb,
    ):
        for entry in source.infolist():
            bomb.writestr(entry, source.read(entry))
        bomb.writestr("word/media/padding.bin", b"\x00" * 80_000_000)
    return out.getvalue()


def password_protected_pdf() -> bytes:
    """A PDF that opens only with its user password."""
    pdf = FPDF()
    pdf.set_encryption(owner_password="owner", user_password="secret")  # noqa: S106 - a test file
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(0, 10, "Confidential")
    return bytes(pdf.output())
