"""User-facing errors. Every failure a user can cause (bad image, bad file, missing weights) is a CwicError."""

from __future__ import annotations


class CwicError(Exception):
    """Base class of every error cwic reports to users; the message is one clear line."""


class ImageError(CwicError, ValueError):
    """An input image cannot be read or has an unsupported size/format."""


class BitstreamError(CwicError, ValueError):
    """A .cwic file is truncated, corrupted, of an unsupported version, or otherwise invalid."""


class CheckpointError(CwicError, FileNotFoundError):
    """The checkpoint a file or command needs is missing or incomplete."""
