"""What a file is, from its first bytes, and whether that is what the caller declared.

A declared media type that the content contradicts is refused (415): a caller that labels a
DOCX as a PDF has a bug, and guessing would hide it. Signatures are the formats' own magic
numbers; a DOCX is a zip holding ``word/document.xml``.
"""

from __future__ import annotations

import enum
import io
import zipfile

from appliance.errors import MediaTypeMismatch, UnsupportedMediaType


class FileKind(enum.StrEnum):
    PDF = "application/pdf"
    TIFF = "image/tiff"
    PNG = "image/png"
    JPEG = "image/jpeg"
    DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    TEXT = "text/plain"


MEDIA_TYPES = tuple(kind.value for kind in FileKind)
UNKNOWN = "application/octet-stream"
"""What uploads without a known type are sent as (curl -F, most HTTP libraries)."""
_SIGNATURES = (
    (b"%PDF-", FileKind.PDF),
    (b"II*\x00", FileKind.TIFF),
    (b"MM\x00*", FileKind.TIFF),
    (b"\x89PNG\r\n\x1a\n", FileKind.PNG),
    (b"\xff\xd8\xff", FileKind.JPEG),
)
_ZIP = b"PK\x03\x04"


def sniff(data: bytes) -> FileKind | None:
    """The kind the content is, or None when it is none of the accepted ones."""
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            return kind
    if data.startswith(_ZIP):
        return FileKind.DOCX if _is_docx(data) else None
    if b"\x00" not in data[:8192]:
        return FileKind.TEXT  # whether it is UTF-8 is for the text reader to say
    return None


def _is_docx(data: bytes) -> bool:
    """A zip with ``word/document.xml``, or a damaged zip (the DOCX reader says what is wrong)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return "word/document.xml" in archive.namelist()
    except zipfile.BadZipFile:
        return True


def kind_of(data: bytes, declared: str) -> FileKind:
    """The file's kind; 415 unless ``declared`` (a Content-Type) is accepted and is what the
    content is. ``application/octet-stream`` claims nothing: the content decides."""
    media_type = declared.split(";", 1)[0].strip().lower()
    if media_type == UNKNOWN:  # no claim made: the content says what it is
        sniffed = sniff(data)
        if sniffed is None:
            raise UnsupportedMediaType(
                "the content is none of the accepted kinds: " + ", ".join(MEDIA_TYPES)
            )
        return sniffed
    try:
        expected = FileKind(media_type)
    except ValueError:
        raise UnsupportedMediaType(
            f"media type {media_type or '(none)'!r} is not accepted; send one of "
            + ", ".join(MEDIA_TYPES)
        ) from None
    actual = sniff(data)
    if actual is not expected:
        found = actual.value if actual else "none of the accepted kinds"
        raise MediaTypeMismatch(f"declared {expected.value}, but the content is {found}")
    return expected
