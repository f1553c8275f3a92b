"""Errors raised by the development PKI."""

from __future__ import annotations


class PkiError(Exception):
    """Base class: the PKI directory or a request to it is not usable."""


class PkiStateError(PkiError):
    """The PKI directory is missing, incomplete, or would be overwritten."""


class InvalidRequestError(PkiError):
    """A name, SAN or validity given by the caller is malformed."""
