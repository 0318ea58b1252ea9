"""The demo's logic, testable without a browser: prepare an upload, run cwic and the classical
codecs at the same file size, measure them, draw where the bits go, and write the downloads.

The UI (demo/ui.py) only wires these functions to Gradio components.
"""

from __future__ import annotations

import io
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from cwic import baselines, metrics
from cwic.errors import ImageError
from cwic.images import MIN_SIDE, to_rgb

WORKERS = 2  # threads for the single-threaded work (scores, classical codecs, PNG writes): one per core
MAX_SIDE = 1024  # the demo downscales larger uploads (long side) to stay responsive on 2 CPU cores
MAX_UPLOAD_PIXELS = 50 * 10**6  # larger uploads are refused before decoding (decompression bombs)

# Display name -> (cwic.baselines codec key, file extension of the download).
CLASSICAL = {
    "JPEG": ("jpeg", "jpg"),
    "JPEG 2000": ("jpeg2000", "j2k"),
    "WebP": ("webp", "webp"),
    "AVIF": ("avif", "avif"),
}
DEFAULT_CLASSICAL = ("JPEG", "JPEG 2000")


@dataclass
class Result:
    """One codec's real file and what a viewer sees of it."""

    name: str
    data: bytes
    image: np.ndarray  # decoded from `data`
    ext: str
    settings: str = ""
    encode_s: float | None = None
    decode_s: float | None = None
    scores: dict = field(default_factory=dict)  # psnr, ssim, ms_ssim

    def bpp(self) -> float:
        return len(self.data) * 8 / (self.image.shape[0] * self.image.shape[1])


@dataclass
class Comparison:
    """Everything one click of "Compress" shows."""

    original: np.ndarray
    cwic: Result
    compressed: object  # the cwic compression result: importance, kept channels, bits per block
    others: list[Result]  # classical codecs at the cwic file size, then the uniform-map ablation
    model: str = ""  # which of the demo's checkpoints made it (the RD curves use the same one)


def prepare_image(source: str | Path | bytes | None, max_side: int = MAX_SIDE) -> tuple[np.ndarray, str]:
    """An upload as HxWx3 uint8 RGB, downscaled to `max_side` on the long side; returns (rgb, note).

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
    note = ""
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb = np.array(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))
        note = (
            f"Downscaled from {w}×{h} to {size[0]}×{size[1]} px: the demo caps the long side at {max_side} px "
            "to stay responsive (the codec itself takes larger images)."
        )
    if min(rgb.shape[:2]) < MIN_SIDE:
        raise ImageError(
            f"{name} is {rgb.shape[1]}×{rgb.shape[0]} px; cwic needs at least {MIN_SIDE} px on each side"
            + (" after the demo's downscaling." if note else ".")
        )
    return rgb, note


def target_note(achieved: float, target: float, tol: float = 0.1) -> str:
    """A note for the user when the bpp search could not land near the target (the model's range)."""
    if abs(achieved - target) <= tol * target:
        return ""
    return (
        f"cwic cannot reach {target:g} bpp on this image with this checkpoint: the closest file it makes "
        f"is {achieved:.3f} bpp."
    )


def score(result: Result, original: np.ndarray) -> Result:
    """Fill in PSNR, SSIM and MS-SSIM (None when the image is too small for MS-SSIM)."""
    result.scores = metrics.quality(original, result.image)
    return result


def run_cwic(codec, rgb: np.ndarray, *, level: int | None = None, bpp: float | None = None, **kwargs):
    """Compress with cwic and decode the real file; returns (Result, the compression result)."""
    rate = {"level": level} if bpp is None else {"bpp": bpp}
    t0 = time.perf_counter()
    c = codec.compress(rgb, **rate, **kwargs)
    t1 = time.perf_counter()
    decoded = codec.decompress(c.data)
    t2 = time.perf_counter()
    name = "cwic (uniform map)" if kwargs.get("uniform") else "cwic"
    settings = _rate_text(c, bpp) + (", uniform map" if kwargs.get("uniform") else "")
    return Result(name, c.data, decoded, "cwic", settings, t1 - t0, t2 - t1), c


def _rate_text(c, bpp: float | None) -> str:
    """How the rate was chosen: a level, or a search for a target bpp (the codec reports level 0)."""
    how = f"searched for {bpp:g} bpp" if bpp is not None else f"level {c.level}"
    return f"{how}, rate r = {c.rate:.3f}"


def run_classical(name: str, rgb: np.ndarray, target_bpp: float) -> Result:
    """`name` (a key of CLASSICAL) at `target_bpp` (within 2 %, else the largest file below it)."""
    key, ext = CLASSICAL[name]
    t0 = time.perf_counter()
    enc = baselines.encode_at_bpp(key, rgb, target_bpp)
    search_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with Image.open(io.BytesIO(enc.data)) as im:
        decoded = np.asarray(im.convert("RGB"))
    decode_s = time.perf_counter() - t0
    knob = baselines.SPECS[key].knob
    value = enc.settings[knob]
    settings = f"{knob} {value:.3g}" if isinstance(value, float) else f"{knob} {value}"
    if not enc.matched:
        settings += " (smallest file this codec can make is larger)"
    # The search runs several encodes; the time of one is what a user of the codec would wait.
    return Result(name, enc.data, decoded, ext, settings, search_s / max(enc.probes, 1), decode_s)


def compare(
    codec,
    rgb: np.ndarray,
    *,
    level: int | None = None,
    bpp: float | None = None,
    classical: tuple[str, ...] | list[str] = DEFAULT_CLASSICAL,
    uniform: bool = False,
    roi: np.ndarray | None = None,
    progress=None,
) -> Comparison:
    """cwic at a level (or a target bpp), the classical codecs at the file size cwic reached, and,
    with `uniform`, the paper's ablation: the same model with a constant importance map."""
    step = progress or (lambda *a, **k: None)
    unknown = [n for n in classical if n not in CLASSICAL]
    if unknown:
        raise ValueError(f"unknown codec(s) {unknown}; choose from {list(CLASSICAL)}")
    step(0.05, desc="cwic: encoding and decoding")
    extra = {} if roi is None else {"roi": roi}
    main, c = run_cwic(codec, rgb, level=level, bpp=bpp, **extra)  # torch: both cores, timed alone
    # Scoring and the classical codecs are single-threaded: two at a time fill the two cores, and
    # a timed classical encode never shares its core with torch.
    with ThreadPoolExecutor(WORKERS) as pool:
        main_scored = pool.submit(score, main, rgb)
        jobs = [pool.submit(lambda n: score(run_classical(n, rgb, main.bpp()), rgb), name) for name in classical]
        others = []
        for i, (name, job) in enumerate(zip(classical, jobs, strict=True)):
            step(0.3 + 0.5 * i / max(len(classical), 1), desc=f"{name} at {main.bpp():.3f} bpp")
            others.append(job.result())
        main_scored.result()
    if uniform:
        step(0.85, desc="cwic with a uniform importance map")
        others.append(score(run_cwic(codec, rgb, level=level, bpp=bpp, uniform=True, **extra)[0], rgb))
    step(0.95, desc="metrics and maps")
    return Comparison(rgb, main, c, others)


def metrics_rows(comp: Comparison) -> list[list]:
    """One table row per codec: name, bytes, bpp, PSNR, SSIM, MS-SSIM, encode ms, decode ms, settings."""

    def fmt(x, digits):
        return "n/a" if x is None else ("∞" if math.isinf(x) else round(x, digits))

    rows = []
    for r in [comp.cwic, *comp.others]:
        s = r.scores
        ms = [None if t is None else round(t * 1000) for t in (r.encode_s, r.decode_s)]
        rows.append([r.name, len(r.data), round(r.bpp(), 4), fmt(s["psnr"], 2), fmt(s["ssim"], 4)])
        rows[-1] += [fmt(s["ms_ssim"], 4), ms[0], ms[1], r.settings]
    return rows


METRIC_HEADERS = ["codec", "bytes", "bpp", "PSNR (dB)", "SSIM", "MS-SSIM", "encode (ms)", "decode (ms)", "settings"]


def summary_markdown(comp: Comparison) -> str:
    """The headline numbers of the cwic file, for the panel under the slider."""
    r, c = comp.cwic, comp.compressed
    s = r.scores
    ms = "n/a (image under 161 px)" if s["ms_ssim"] is None else f"{s['ms_ssim']:.4f}"
    return (
        f"**cwic file: {len(r.data):,} bytes = {r.bpp():.3f} bpp** for {c.width}×{c.height} px "
        f"({r.settings}{', model ' + comp.model if comp.model else ''}).  \n"
        f"PSNR **{s['psnr']:.2f} dB** · SSIM **{s['ssim']:.4f}** · MS-SSIM **{ms}** · "
        f"encode {r.encode_s * 1000:.0f} ms · decode {r.decode_s * 1000:.0f} ms"
    )


def _render(fig: Figure) -> np.ndarray:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


PANEL_MIN_WIDTH = 384  # small images are enlarged (whole pixels) so their map panels stay readable
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


def maps(comp: Comparison) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(importance p, kept channels per location, bits per 8x8 block) drawn over the image."""
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
    b = overlay(
        rgb,
        bits,
        title=f"bits per 8×8 block: {bits.sum():,.0f} bits in all, mean {bits.mean():.1f}",
        label="bits per 8×8 block",
        cmap="magma",
        vmin=0,
    )
    return imp, lev, b


def write_files(comp: Comparison, folder: Path, stem: str = "image") -> list[Path]:
    """The real files: the .cwic file, its decoded PNG, and each classical codec's file as shown."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.cwic", folder / f"{stem}.cwic.png"]
    paths[0].write_bytes(comp.cwic.data)
    png_file(comp.cwic.image, paths[1])
    for r in comp.others:
        slug = r.name.lower().replace(" ", "").replace("(", "_").replace(")", "")
        path = folder / f"{stem}.{slug}.{r.ext}"
        path.write_bytes(r.data)
        paths.append(path)
    return paths


def png_file(rgb: np.ndarray, path: Path) -> str:
    """Write a lossless PNG at zlib level 1: about 4x faster than Pillow's default level for 10 % more bytes.

    The demo hands these files to Gradio, which would otherwise encode every array at the default level.
    """
    Image.fromarray(rgb).save(path, compress_level=1)
    return str(path)


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


REFERENCE_FILE = Path(__file__).resolve().parent / "reference_kodak.json"


def rd_points(
    codec, rgb: np.ndarray, classical: tuple[str, ...] | list[str], uniform: bool = False, progress=None
) -> dict[str, list[dict]]:
    """Every cwic level and each classical codec's fixed quality sweep on this image, measured."""
    step = progress or (lambda *a, **k: None)
    jobs = [("cwic", False)] + ([("cwic (uniform map)", True)] if uniform else [])
    curves: dict[str, list[dict]] = {}
    total = len(jobs) * len(codec.levels) + len(classical)
    done = 0
    for name, flat in jobs:
        curves[name] = []
        for lv in codec.levels:
            step(done / total, desc=f"{name}, level {lv['level']}")
            c = codec.compress(rgb, level=lv["level"], uniform=flat)
            curves[name].append(_point(len(c.data), c.reconstruction, rgb))
            done += 1
    for name in classical:
        step(done / total, desc=f"{name} quality sweep")
        curves[name] = [_point(len(e.data), e.reconstruction, rgb) for e in baselines.sweep(CLASSICAL[name][0], rgb)]
        done += 1
    return curves


def _point(nbytes: int, image: np.ndarray, rgb: np.ndarray) -> dict:
    return {"bpp": nbytes * 8 / (rgb.shape[0] * rgb.shape[1]), **metrics.quality(rgb, image)}


def rd_plot(curves: dict[str, list[dict]], current: Comparison | None = None, reference: bool = True) -> np.ndarray:
    """PSNR and MS-SSIM (SSIM for images too small for MS-SSIM) against bpp for this image, the
    current comparison marked with stars, and the published Kodak means as thin dashed lines."""
    use_ms = all(p["ms_ssim"] is not None for pts in curves.values() for p in pts)
    second = ("ms_ssim", "MS-SSIM") if use_ms else ("ssim", "SSIM")
    fig = Figure(figsize=(11, 4.2), dpi=100, layout="constrained")
    axes = fig.subplots(1, 2)
    xmax = 1.25 * max(p["bpp"] for pts in curves.values() for p in pts)
    colours = {}
    for ax, (key, label) in zip(axes, [("psnr", "PSNR (dB)"), second], strict=True):
        for name, pts in curves.items():
            pts = sorted(pts, key=lambda p: p["bpp"])
            (line,) = ax.plot([p["bpp"] for p in pts], [p[key] for p in pts], "o-", ms=4, label=f"{name} (this image)")
            colours[name] = line.get_color()
        if current is not None:
            for r in [current.cwic, *current.others]:
                if r.name in colours and r.scores.get(key) is not None:
                    ax.plot(r.bpp(), r.scores[key], "*", ms=16, color=colours[r.name], mec="black", zorder=5)
        if reference and key in ("psnr", "ms_ssim"):
            for ref in json.loads(REFERENCE_FILE.read_text())["curves"]:
                xs = [x for x in ref["bpp"] if x <= xmax]
                colour = colours.get(ref["codec"], "grey")  # a published curve wears its codec's colour
                style = "^" if len(xs) == 1 else "--"
                ax.plot(xs, ref[key][: len(xs)], style, color=colour, lw=1, alpha=0.6, ms=7, label=ref["name"])
        ax.set_xlim(0, xmax)
        ax.set_xlabel("bits per pixel (real file size)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(
        "Rate–distortion on this image (★ = the comparison above; dashed = published Kodak means)", fontsize=10
    )
    return _render(fig)
