"""The demo's comparison, testable without a browser: run cwic and the classical codecs at the same
file size, score them, and write the downloads.

The other seams: demo/inputs.py (uploads, the painted region), demo/maps.py (maps and zooms),
demo/rd_curves.py (RD curves). demo/ui.py only wires them to Gradio components.
"""

from __future__ import annotations

import io
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from cwic.evaluation import baselines, metrics

WORKERS = 2  # threads for the single-threaded work (scores, classical codecs, PNG writes): one per core

# Display name -> (cwic.evaluation.baselines codec key, file extension of the download).
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
    if c.refine_steps:
        settings += f", {c.refine_steps} refinement steps"
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
    refine: int = 0,
    progress=None,
) -> Comparison:
    """cwic at a level (or a target bpp), the classical codecs at the file size cwic reached, and,
    with `uniform`, the paper's ablation: the same model with a constant importance map. `refine`:
    encoder-side refinement steps for both cwic files (cwic.refinement)."""
    step = progress or (lambda *a, **k: None)
    unknown = [n for n in classical if n not in CLASSICAL]
    if unknown:
        raise ValueError(f"unknown codec(s) {unknown}; choose from {list(CLASSICAL)}")
    step(0.05, desc="cwic: encoding and decoding" + (f" ({refine} refinement steps)" if refine else ""))
    extra = ({} if roi is None else {"roi": roi}) | ({"refine": int(refine)} if refine else {})
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
