"""`python -m cwic encode`: see cwic.codec_cli."""

from .codec_cli import encode_main as main

__all__ = ["main"]
