"""What one file may cost to read: checked before the work they bound, each a clear 4xx."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import TooManyPages, TooManyPixels
from appliance.settings import Settings


@dataclass(frozen=True)
class Limits:
    max_pages: int
    max_page_pixels: int
    max_expanded_bytes: int
    text_layer_min_chars: int
    dpi: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_pages=settings.file_max_pages,
            max_page_pixels=settings.file_max_page_pixels,
            max_expanded_bytes=settings.file_max_expanded_bytes,
            text_layer_min_chars=settings.text_layer_min_chars,
            dpi=settings.ocr_dpi,
        )

    def check_pages(self, count: int) -> None:
        if count > self.max_pages:
            raise TooManyPages(f"the file has {count} pages, want at most {self.max_pages}")

    def check_pixels(self, width: float, height: float, page: int) -> None:
        if width * height > self.max_page_pixels:
            raise TooManyPixels(
                f"page {page} is {int(width)}x{int(height)} pixels, want at most"
                f" {self.max_page_pixels} in all"
            )
