"""`python -m cwic decode`: see cwic.codec_cli."""

from .codec_cli import decode_main as main

__all__ = ["main"]
