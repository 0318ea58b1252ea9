"""Reading images as H x W x 3 uint8 RGB: EXIF orientation, odd modes and bit depths, size limits."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

MIN_SIDE = 16  # the autoencoder needs 2x2 code locations
MAX_SIDE = 4096
MAX_PIXELS = 4096 * 3072  # ~12.6 Mpx: decoder activations stay around 2 GB


def check_size(width: int, height: int) -> None:
    """Raise ImageError unless MIN_SIDE <= sides <= MAX_SIDE and pixels <= MAX_PIXELS."""
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"image is {width}x{height}; cwic needs at least {MIN_SIDE}x{MIN_SIDE} pixels")
    if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImageError(
            f"image is {width}x{height}; cwic accepts at most {MAX_SIDE} px per side and {MAX_PIXELS} pixels"
        )


def check_rgb(rgb: object) -> np.ndarray:
    """Validate an array given to the codec: H x W x 3 uint8 within the size limits."""
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        desc = f"{rgb.dtype} array of shape {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ImageError(f"expected an H x W x 3 uint8 RGB array, got {desc}")
    check_size(rgb.shape[1], rgb.shape[0])
    return np.ascontiguousarray(rgb)


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB; transparency is composited on white, 16-bit scaled down."""
    if im.mode in {"I;16", "I;16B", "I;16L", "I;16N", "I"}:
        a = np.asarray(im, dtype=np.int64)
        peak = 65535 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else 255
        im = Image.fromarray(np.clip((a * 255 + peak // 2) // peak, 0, 255).astype(np.uint8), "L")
    elif im.mode == "F":
        im = Image.fromarray(
            np.clip(np.asarray(im) * (255 if np.asarray(im).max(initial=0) <= 1 else 1), 0, 255)
            .round()
            .astype(np.uint8),
            "L",
        )
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in {"RGBA", "LA", "PA", "RGBa", "La"} or "transparency" in im.info:
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    return im.convert("RGB")


def load_rgb(source: str | Path | bytes) -> np.ndarray:
    """Path or encoded bytes -> H x W x 3 uint8, upright per EXIF; ImageError with a clear message."""
    name = "image data" if isinstance(source, bytes | bytearray) else str(source)
    try:
        fp = io.BytesIO(source) if isinstance(source, bytes | bytearray) else open(source, "rb")  # noqa: SIM115
    except OSError as e:
        raise ImageError(f"cannot open {name}: {e.strerror or e}") from None
    try:
        with fp, Image.open(fp) as im:
            check_size(*im.size)
            im = ImageOps.exif_transpose(im)
            im.load()
            rgb = np.asarray(to_rgb(im), dtype=np.uint8)
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise ImageError(f"{name} is not a readable image ({type(e).__name__})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageError(f"{name} is truncated or corrupt: {e}") from None
    return check_rgb(rgb)
