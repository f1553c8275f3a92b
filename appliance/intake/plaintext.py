"""UTF-8 text files; a form feed (``\\f``, as text exports of paged documents have) starts a new
page."""

from __future__ import annotations

from collections.abc import Iterator

from appliance.errors import UnprocessableDocument
from appliance.intake.limits import Limits
from appliance.intake.pages import Page, PageText, TextSource


def read_text(data: bytes, limits: Limits, first_pages: int | None) -> Iterator[Page]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnprocessableDocument(f"not UTF-8 text (bad byte at offset {exc.start})") from exc
    pages = text.split("\f")
    limits.check_pages(len(pages))
    for index, page in enumerate(pages[:first_pages]):
        yield PageText(index + 1, len(pages), page, TextSource.TEXT)
