"""A file's pages as text, in order: each format's reader yields pages, and pages without text
of their own are read by OCR, several at a time, while the next ones are rendered.

At most ``2 * workers`` page images are waiting for or inside OCR at any moment (enough that
a freed OCR slot finds the next page already rendered), so memory stays flat however many pages
a file has.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from appliance.intake.formats import FileKind
from appliance.intake.images import read_image
from appliance.intake.limits import Limits
from appliance.intake.ocr import TesseractOcr
from appliance.intake.pages import Page, PageText, TextSource
from appliance.intake.pdf import read_pdf
from appliance.intake.plaintext import read_text
from appliance.intake.wordprocessing import read_docx

Reader = Callable[[bytes, Limits, int | None], Iterator[Page]]
READERS: dict[FileKind, Reader] = {
    FileKind.PDF: read_pdf,
    FileKind.TIFF: read_image,
    FileKind.PNG: read_image,
    FileKind.JPEG: read_image,
    FileKind.DOCX: read_docx,
    FileKind.TEXT: read_text,
}


class PageReader:
    """Thread-safe; one per process. ``workers`` OCR pages at once (one per core is best)."""

    def __init__(self, limits: Limits, ocr: TesseractOcr, workers: int) -> None:
        self.limits = limits
        self.ocr = ocr
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="ocr")
        self._ahead = 2 * workers

    def read(
        self, data: bytes, kind: FileKind, first_pages: int | None = None
    ) -> Iterator[PageText]:
        """The text of each page (the first ``first_pages`` when given), in page order."""
        pending: deque[Future[PageText]] = deque()
        try:
            for page in READERS[kind](data, self.limits, first_pages):
                pending.append(self._pool.submit(self._text, page))
                while len(pending) > self._ahead or (pending and pending[0].done()):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()

    def _text(self, page: Page) -> PageText:
        if isinstance(page, PageText):
            return page
        try:
            text = self.ocr.read(page.image, page.number)
            return PageText(page.number, page.of, text, TextSource.OCR)
        finally:
            page.image.close()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
