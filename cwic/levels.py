"""`python -m cwic levels`: see cwic.codec_cli."""

from .codec_cli import levels_main as main

__all__ = ["main"]
