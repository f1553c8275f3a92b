"""A page's text and how it was obtained, and a page still to be read by OCR."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from PIL import Image


class TextSource(enum.StrEnum):
    TEXT_LAYER = "text_layer"
    """The PDF's own text."""
    OCR = "ocr"
    """Tesseract, on the page's image."""
    TEXT = "text"
    """A text file, or a DOCX's paragraphs and tables."""


@dataclass(frozen=True)
class PageText:
    number: int
    """1-based."""
    of: int
    """How many pages the file has (more than are read, when only the first are asked for)."""
    text: str
    source: TextSource


@dataclass(frozen=True)
class PageImage:
    """A page with no usable text of its own: its grayscale image, for OCR."""

    number: int
    of: int
    image: Image.Image


Page = PageText | PageImage
"""What a format's reader yields, one page at a time, in order."""
