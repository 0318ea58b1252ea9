"""RD curves of the current image: every cwic level and each classical codec's quality sweep, measured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cwic.evaluation import baselines, metrics
from demo.compare import CLASSICAL, Comparison


def _render(fig: Figure) -> np.ndarray:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


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
