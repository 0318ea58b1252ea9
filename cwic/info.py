"""`python -m cwic info`: see cwic.codec_cli."""

from .codec_cli import info_main as main

__all__ = ["main"]
