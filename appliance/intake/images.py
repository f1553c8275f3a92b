"""Scans as images with Pillow: PNG, JPEG, and TIFF with one frame per page (faxes)."""

from __future__ import annotations

import io
from collections.abc import Iterator

from PIL import Image, ImageSequence, UnidentifiedImageError

from appliance.errors import TooManyPixels, UnprocessableDocument
from appliance.intake.limits import Limits
from appliance.intake.pages import Page, PageImage


def read_image(data: bytes, limits: Limits, first_pages: int | None) -> Iterator[Page]:
    """Each frame as a grayscale page image; the size of each is checked before it is decoded
    (a small file can declare a huge image: a decompression bomb)."""
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(f"the image is too large ({exc})") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UnprocessableDocument(f"not a readable image ({type(exc).__name__})") from exc
    with image:
        frames = getattr(image, "n_frames", 1)
        limits.check_pages(frames)
        count = frames if first_pages is None else min(first_pages, frames)
        for index, frame in enumerate(ImageSequence.Iterator(image)):
            if index >= count:
                break
            yield _decoded(frame, index + 1, frames, limits)


def _decoded(frame: Image.Image, number: int, of: int, limits: Limits) -> PageImage:
    limits.check_pixels(*frame.size, number)
    try:
        return PageImage(number, of, frame.convert("L"))
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt image data
        raise UnprocessableDocument(f"page {number} of the image is unreadable ({exc})") from exc
