"""Tesseract (Debian's ``tesseract-ocr``) through pytesseract, which runs the ``tesseract``
program: the same engine operators can run by hand, and nothing compiled into the appliance.

Each call runs one single-threaded Tesseract (``OMP_THREAD_LIMIT=1``: with its own OpenMP
threads it was five times slower per page here, see docs/benchmarks.md); run one per core.
pytesseract hands the page image over in a temporary file that it removes after the call; the
appliance's units give it a private ``/tmp`` (systemd ``PrivateTmp``, a memory-backed volume in
Kubernetes), so page images never reach shared or persistent storage.
"""

from __future__ import annotations

import os

import pytesseract  # type: ignore[import-untyped]
from PIL import Image

from appliance.errors import OcrTimeout, ServiceUnavailable


class TesseractOcr:
    def __init__(self, language: str, timeout_s: float) -> None:
        self.language = language
        self.timeout_s = timeout_s
        os.environ["OMP_THREAD_LIMIT"] = "1"  # pytesseract's children inherit os.environ

    def read(self, image: Image.Image, page: int) -> str:
        """The text Tesseract reads on ``image`` (page ``page``, for error messages)."""
        image.format = "PPM"  # handed over uncompressed: no PNG encoding on the way
        try:
            text: str = pytesseract.image_to_string(
                image, lang=self.language, timeout=self.timeout_s
            )
        except (pytesseract.TesseractError, pytesseract.TesseractNotFoundError, OSError) as exc:
            raise ServiceUnavailable(f"OCR is unavailable ({type(exc).__name__})") from exc
        except RuntimeError as exc:  # pytesseract's timeout (TesseractError is one too)
            raise OcrTimeout(f"OCR of page {page} took over {self.timeout_s:g} s") from exc
        return text

    def version(self) -> str:
        """Tesseract's version, part of what a stored result depends on."""
        try:
            return str(pytesseract.get_tesseract_version())
        except (pytesseract.TesseractNotFoundError, OSError) as exc:
            raise ServiceUnavailable("OCR is unavailable (tesseract is not installed)") from exc
