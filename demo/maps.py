"""Where the bits go, drawn: per-8x8-block maps over the image with a colour bar (cwic's, and JPEG's
bits per MCU read from its file), the channels kept at every level side by side, and the zoomed crops."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from cwic.evaluation import jpeg_bits
from demo.compare import Comparison

if TYPE_CHECKING:
    from cwic.codec import Codec

PANEL_MIN_WIDTH = 384  # small images are enlarged (whole pixels) so their map panels stay readable
STRIP_PANEL = 192  # about how many px the long side of each panel of the level strip gets
STRIP_TOP = 30  # white above the strip: Gradio's label and buttons sit over an image's top edge
FONT = str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")  # has × and ·


def panel_scale(width: int) -> int:
    """The whole-pixel enlargement of an image `width` px wide in the map panels."""
    return max(1, math.ceil(PANEL_MIN_WIDTH / width))


def overlay(
    rgb: np.ndarray,
    values: np.ndarray,
    *,
    title: str,
    label: str,
    cmap: str = "inferno",
    vmin: float | None = None,
    vmax: float | None = None,
    levels: int | None = None,
    alpha: float = 0.65,
) -> np.ndarray:
    """A per-8x8-block map blended over a grey copy of the image at its own resolution, with a
    colour bar labelled `label` and `title` underneath.

    Drawn with numpy and Pillow, not matplotlib: each block covers exactly its 8x8 pixels, and a
    map costs milliseconds instead of a tenth of a second. `levels` gives a discrete colour map.
    """
    h, w = rgb.shape[:2]
    values = np.asarray(values, dtype=np.float64)
    lo = float(values.min()) if vmin is None else vmin
    hi = float(values.max()) if vmax is None else vmax
    hi = hi if hi > lo else lo + 1
    cm = colormaps[cmap] if levels is None else colormaps[cmap].resampled(levels)
    colours = cm(np.clip((values - lo) / (hi - lo), 0, 1))[..., :3]
    blocks = np.repeat(np.repeat(colours, 8, axis=0), 8, axis=1)[:h, :w]
    grey = rgb.astype(np.float64).mean(axis=2, keepdims=True) / 255
    picture = np.round(((1 - alpha) * grey + alpha * blocks) * 255).astype(np.uint8)
    scale = panel_scale(w)
    picture = np.repeat(np.repeat(picture, scale, axis=0), scale, axis=1)
    ph, pw = picture.shape[:2]

    font = ImageFont.truetype(FONT, 12)
    bar_x, bar_w, tick_w = pw + 10, 14, 48
    canvas = Image.new("RGB", (bar_x + bar_w + tick_w + 18, ph + 26), "white")
    canvas.paste(Image.fromarray(picture), (0, 0))
    ramp = (cm(np.linspace(1, 0, ph))[:, :3] * 255).round().astype(np.uint8)
    canvas.paste(Image.fromarray(np.repeat(ramp[:, None], bar_w, axis=1)), (bar_x, 0))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((bar_x, 0, bar_x + bar_w - 1, ph - 1), outline="black")
    for v in np.linspace(lo, hi, 5):
        y = round((hi - v) / (hi - lo) * (ph - 1))
        draw.line((bar_x + bar_w, y, bar_x + bar_w + 3, y), fill="black")
        draw.text((bar_x + bar_w + 5, min(max(y, 7), ph - 7)), f"{v:.3g}", fill="black", font=font, anchor="lm")
    side = Image.new("L", (ph, 18), 255)
    ImageDraw.Draw(side).text((ph // 2, 9), label, fill=0, font=font, anchor="mm")
    canvas.paste(side.rotate(90, expand=True), (bar_x + bar_w + tick_w, 0))
    draw.text((4, ph + 13), title, fill="black", font=font, anchor="lm")
    return np.asarray(canvas)


def maps(comp: Comparison) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(importance p, kept channels per location, cwic's bits per pixel by 8x8 block, JPEG's bits per
    pixel by MCU or None without JPEG) drawn over the image; the two bits maps share one colour scale,
    so the same colour means the same spending in both."""
    c, rgb = comp.compressed, comp.original
    p = np.asarray(c.importance, dtype=np.float64)
    kept = np.asarray(c.kept_channels)
    bits = np.asarray(c.bits_per_block, dtype=np.float64)
    imp = overlay(rgb, p, title=f"importance map p (mean {p.mean():.3f})", label="importance p", vmin=0, vmax=1)
    n_max = int(max(kept.max(), 1))
    lev = overlay(
        rgb,
        kept,
        title=f"code channels kept per location (mean {kept.mean():.1f})",
        label="channels kept",
        cmap="viridis",
        vmin=0,
        vmax=n_max,
        levels=16,
    )
    jpeg = next((r for r in comp.others if r.name == "JPEG"), None)
    parsed = None if jpeg is None else jpeg_bits.parse(jpeg.data)
    jpeg_bpp = None if parsed is None else jpeg_bits.block_bpp(parsed)
    vmax = max(bits.max() / 64, 0 if jpeg_bpp is None else jpeg_bpp.max())
    header = len(comp.cwic.data) - c.payload_bits // 8
    b = overlay(
        rgb,
        bits / 64,
        title=f"cwic: {len(comp.cwic.data):,} bytes = {comp.cwic.bpp():.3f} bpp, of which header {header} bytes",
        label="bits per pixel, by 8×8 block",
        cmap="magma",
        vmin=0,
        vmax=vmax,
    )
    if parsed is None:
        return imp, lev, b, None
    j = overlay(
        rgb,
        jpeg_bpp,
        title=(
            f"JPEG: {len(jpeg.data):,} bytes = {jpeg.bpp():.3f} bpp, of which headers and tables "
            f"{round(parsed.other_bits / 8):,} bytes"
        ),
        label=f"bits per pixel, by {parsed.mcu_size[1]}×{parsed.mcu_size[0]} MCU",
        cmap="magma",
        vmin=0,
        vmax=vmax,
    )
    return imp, lev, b, j


def level_strip(comp: Comparison, codec: Codec) -> np.ndarray:
    """The channels kept per 8x8 block at every level of `codec`, one small panel each, side by side on one
    discrete colour scale (one colour per importance level), each captioned with its level, rate and mean;
    the level the file was made at is framed. From `kept_channels_by_level` of the compression shown, so
    every panel is exactly what that level's file keeps."""
    rgb, c = comp.original, comp.compressed
    by_level = c.kept_channels_by_level
    rates = {lv["level"]: lv["rate"] for lv in codec.levels}
    n, cells = codec.n, codec.config.symbols  # one colour per map symbol
    group, first = n // codec.L, int(not codec.config.zero_level)  # groups kept at symbol 0
    hb, wb = next(iter(by_level.values())).shape
    s = max(1, round(STRIP_PANEL / max(hb, wb)))  # whole pixels per block, about STRIP_PANEL px on the long side
    ph, pw = hb * s, wb * s
    grey = np.asarray(Image.fromarray(rgb).convert("L").resize((pw, ph), Image.Resampling.BOX), np.float64)[..., None]
    lut = colormaps["viridis"].resampled(cells)(np.arange(cells))[:, :3]
    font = ImageFont.truetype(FONT, 12)
    captions = [
        (f"level {k} · r = {rates[k]:.2f}", f"mean {kept.mean():.1f} of {n} kept") for k, kept in by_level.items()
    ]
    slot = max(pw, *(round(font.getlength(line)) + 8 for pair in captions for line in pair))
    gap, bar_h = 10, max(ph, 128)
    bar_x = len(by_level) * (slot + gap)
    canvas = Image.new("RGB", (bar_x + 14 + 32 + 18, bar_h + 36), "white")
    draw = ImageDraw.Draw(canvas)
    for i, ((k, kept), (top, bottom)) in enumerate(zip(by_level.items(), captions, strict=True)):
        blocks = np.repeat(np.repeat(lut[kept // group - first], s, axis=0), s, axis=1)
        x = i * (slot + gap)
        canvas.paste(Image.fromarray(np.round((0.3 * grey / 255 + 0.7 * blocks) * 255).astype(np.uint8)), (x, 0))
        if k == c.level:
            draw.rectangle((x, 0, x + pw - 1, ph - 1), outline="red", width=2)
        draw.text((x, ph + 4), top, fill="black", font=font)
        draw.text((x, ph + 19), bottom, fill="black", font=font)
    cell = bar_h / cells
    for q in range(cells):  # the colour bar: the top cell is every channel kept
        y = bar_h - (q + 1) * cell
        draw.rectangle((bar_x, round(y), bar_x + 13, round(y + cell)), fill=tuple(round(255 * v) for v in lut[q]))
    draw.rectangle((bar_x, 0, bar_x + 13, bar_h - 1), outline="black")
    for q in sorted({0, cells // 4 - 1, cells // 2 - 1, 3 * cells // 4 - 1, cells - 1} - {-1}):
        y = min(max(round(bar_h - (q + 0.5) * cell), 7), bar_h - 7)
        draw.text((bar_x + 18, y), str((q + first) * group), fill="black", font=font, anchor="lm")
    side = Image.new("L", (bar_h, 18), 255)
    ImageDraw.Draw(side).text((bar_h // 2, 9), "channels kept", fill=0, font=font, anchor="mm")
    canvas.paste(side.rotate(90, expand=True), (bar_x + 14 + 32, 0))
    return np.pad(np.asarray(canvas), ((STRIP_TOP, 0), (0, 0), (0, 0)), constant_values=255)


def zoom_box(bits_per_block: np.ndarray, shape: tuple[int, int], size: int = 128) -> tuple[int, int, int]:
    """(top, left, side) of the square crop, on the 8x8 block grid, where cwic spent the most bits."""
    h, w = shape
    side = min(size, h, w) // 8 * 8
    k = side // 8
    bits = np.asarray(bits_per_block, dtype=np.float64)[: h // 8, : w // 8]
    if k == 0 or bits.shape[0] < k or bits.shape[1] < k:
        return 0, 0, min(h, w)
    integral = np.pad(bits.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    window = integral[k:, k:] - integral[:-k, k:] - integral[k:, :-k] + integral[:-k, :-k]
    by, bx = np.unravel_index(np.argmax(window), window.shape)
    return int(by) * 8, int(bx) * 8, side


def zoom_box_at(point: tuple[int, int], shape: tuple[int, int], size: int = 128) -> tuple[int, int, int] | None:
    """(top, left, side) of the square crop, on the 8x8 block grid, around a point clicked on a map
    panel ((x, y) in the panel's pixels); None when the click is on the colour bar or the title."""
    h, w = shape
    scale = panel_scale(w)
    x, y = int(point[0]) // scale, int(point[1]) // scale
    if not (0 <= x < w and 0 <= y < h):
        return None
    side = min(size, h, w) // 8 * 8
    top = min(max(y - side // 2, 0), h - side) // 8 * 8
    left = min(max(x - side // 2, 0), w - side) // 8 * 8
    return top, left, side


def zoom_tiles(comp: Comparison, box: tuple[int, int, int], scale: int = 3) -> list[tuple[np.ndarray, str]]:
    """The same crop of the original and of every codec, enlarged with square pixels."""
    top, left, side = box
    tiles = []
    for name, img in [("original", comp.original), *[(r.name, r.image) for r in [comp.cwic, *comp.others]]]:
        crop = img[top : top + side, left : left + side]
        tiles.append((np.repeat(np.repeat(crop, scale, axis=0), scale, axis=1), name))
    return tiles
