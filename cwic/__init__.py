"""cwic: content-weighted learned image compression (Li et al., CVPR 2018) with real .cwic files.

`from cwic import Codec` is lazy: importing the package does not import torch.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Codec", "Compressed", "__version__"]


def __getattr__(name: str):
    if name in {"Codec", "Compressed"}:
        from . import codec

        return getattr(codec, name)
    raise AttributeError(f"module 'cwic' has no attribute {name!r}")
