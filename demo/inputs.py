"""What the user hands the demo: an upload as RGB (downscaled when large) and the painted region of interest."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cwic.errors import ImageError
from cwic.images import MAX_SIDE as CODEC_MAX_SIDE
from cwic.images import MIN_SIDE, to_rgb

MAX_SIDE = 1024  # the demo downscales larger uploads (long side) to stay responsive on 2 CPU cores
MAX_UPLOAD_PIXELS = 50 * 10**6  # larger uploads are refused before decoding (decompression bombs)


def prepare_image(source: str | Path | bytes | None, max_side: int = MAX_SIDE) -> tuple[np.ndarray, str]:
    """An upload as HxWx3 uint8 RGB, downscaled to `max_side` on the long side but never below the
    codec's MIN_SIDE on the short side; returns (rgb, note).

    Unlike `cwic.images.load_rgb`, which rejects images over the codec's limit, the demo shrinks
    large photos so that phone pictures work. Raises ImageError with a message meant for the user
    on missing, broken, too large or too small images.
    """
    if source is None:
        raise ImageError("Upload an image or pick one of the examples first.")
    name = "the upload" if isinstance(source, bytes | bytearray) else Path(source).name
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes | bytearray) else source) as im:
            w, h = im.size
            if w * h > MAX_UPLOAD_PIXELS:
                raise ImageError(f"{name} is {w}×{h} px; the demo takes at most {MAX_UPLOAD_PIXELS // 10**6} Mpx")
            rgb = np.array(to_rgb(ImageOps.exif_transpose(im)), dtype=np.uint8)  # writable, for torch
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(
            f"{name} has too many pixels; the demo takes at most {MAX_UPLOAD_PIXELS // 10**6} Mpx"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image this demo can read") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageError(f"{name} is truncated or corrupt: {e}") from None
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageError(f"{name} is {w}×{h} px; cwic needs at least {MIN_SIDE} px on each side.")
    note = ""
    if max(h, w) > max_side:
        # A long thin strip is shrunk only as far as the codec's minimum short side allows.
        scale = max(max_side / max(h, w), min(1.0, MIN_SIDE / min(h, w)))
        size = (round(w * scale), round(h * scale))
        if max(size) > CODEC_MAX_SIDE:
            raise ImageError(
                f"{name} is {w}×{h} px, too long and thin: with its short side at cwic's minimum of {MIN_SIDE} px "
                f"the long side is still {max(size)} px, over cwic's {CODEC_MAX_SIDE}."
            )
        why = f"the demo caps the long side at {max_side} px to stay responsive"
        if scale > max_side / max(h, w):
            why += f", but never takes the short side under cwic's minimum of {MIN_SIDE} px"
        if size == (w, h):
            note = f"Kept at {w}×{h} px: {why}."
        else:
            rgb = np.array(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))
            note = f"Downscaled from {w}×{h} to {size[0]}×{size[1]} px: {why} (the codec itself takes larger images)."
    return rgb, note


def roi_from_editor(value: dict | None, shape: tuple[int, int]) -> np.ndarray | None:
    """The painted strokes of a gr.ImageEditor value as an HxW float mask in [0, 1], or None.

    The editor returns {"background", "layers", "composite"}; every layer's alpha is a stroke.
    """
    if not value or not value.get("layers"):
        return None
    mask = np.zeros(shape, dtype=np.float32)
    for layer in value["layers"]:
        if layer is None:
            continue
        im = Image.open(layer) if isinstance(layer, str | Path) else Image.fromarray(np.asarray(layer))
        alpha = np.asarray(im.convert("RGBA").resize(shape[::-1], Image.Resampling.BILINEAR))[..., 3]
        mask = np.maximum(mask, alpha.astype(np.float32) / 255)
    return mask if mask.max() > 0 else None
