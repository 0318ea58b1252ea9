"""RD plots (PSNR, SSIM, MS-SSIM against bpp) from a results.json, optionally with published curves.

Published curves are means over Kodak at one setting per point (not rate-matched, other encoder
versions); they are drawn in grey with their source in the legend and a footnote.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PLOTS = {"psnr-rgb": ("rd_psnr.png", "PSNR (dB, RGB)"), "ssim-rgb": ("rd_ssim.png", "SSIM (RGB)"),
         "ms-ssim-rgb": ("rd_msssim.png", "MS-SSIM (RGB)")}  # fmt: skip
COLORS = {
    "cwic": "C3",
    "cwic-uniform": "C1",
    "cwic-refined": "C6",
    "cwic-uniform-refined": "C7",
    "jpeg": "C0",
    "jpeg2000": "C2",
    "webp": "C4",
    "avif": "C5",
}
COMPRESSAI = {
    "jpeg.json": "JPEG",
    "jpeg2000.json": "JPEG 2000",
    "webp.json": "WebP",
    "bpg_444_x265_ycbcr.json": "BPG 4:4:4",
}
ATTRIBUTION = (
    "Grey: published Kodak means, not rate-matched. CompressAI results (InterDigital, BSD 3-Clause Clear); "
    "Li et al. CVPR 2018 model 5 and TPAMI CWIC curves (github limuhit/ImageCompression, limuhit/CWIC)."
)


def load_reference(folder: Path) -> list[dict]:
    """Published curves as [{"label", "results": {"bpp", "psnr-rgb", "ms-ssim-rgb"}, "style"}]."""
    refs = []
    for i, (fname, label) in enumerate(COMPRESSAI.items()):
        path = folder / "compressai_kodak" / fname
        if path.exists():
            data = json.loads(path.read_text())
            refs.append({"label": f"{label} (CompressAI)", "results": data["results"], "style": _grey(i)})
    li = folder / "li2018_kodak.json"
    if li.exists():
        data = json.loads(li.read_text())
        for i, key in enumerate(("tpami_cwic_mse", "tpami_cwic_msssim")):
            c = data[key]
            res = {"bpp": c["bpp"], "psnr-rgb": c["psnr_rgb"], "ms-ssim-rgb": c["ms_ssim_rgb"]}
            label = f"Li et al. CWIC TPAMI ({'MSE' if i == 0 else 'MS-SSIM'})"
            refs.append(
                {"label": label, "results": res, "style": {"color": "0.35", "ls": "-", "marker": ("^", "v")[i]}}
            )
        m5 = next(m for m in data["cvpr2018"]["models"] if "psnr_rgb" in m)
        res = {"bpp": [m5["bpp"]], "psnr-rgb": [m5["psnr_rgb"]], "ms-ssim-rgb": [m5["ms_ssim_rgb"]]}
        refs.append({"label": "Li et al. CVPR 2018, model 5", "results": res, "style": {"color": "k", "marker": "*"}})
    return refs


def plot_all(results: dict, out: Path, reference: Path | None = None) -> list[Path]:
    """Write rd_psnr.png, rd_ssim.png and rd_msssim.png into `out`; returns their paths."""
    refs = load_reference(reference) if reference else []
    return [plot_metric(results, metric, out / fname, refs) for metric, (fname, _) in PLOTS.items()]


def plot_metric(results: dict, metric: str, path: Path, refs: list[dict] | None = None) -> Path:
    """One RD plot: cwic levels, rate-matched baselines (markers) on their sweep curves (lines)."""
    curves = results["curves"]
    fig, ax = plt.subplots(figsize=(8, 5.6), dpi=110)
    cwic_bpp = [b for k in curves if k.startswith("cwic") for b in curves[k]["results"]["bpp"]]
    xmax = max([1.0] + [1.3 * b for b in cwic_bpp])
    shown: list[tuple[float, float]] = []
    refs = [ref for ref in refs or [] if metric in ref["results"]]  # none has plain SSIM
    for ref in refs:
        style = {"lw": 1.0, "ms": 4, "alpha": 0.8, **ref["style"]}
        shown += _draw(ax, ref["results"], metric, ref["label"], xmax, **style)
    for key, color in COLORS.items():
        sweep = curves.get(f"{key}-sweep")
        if sweep:
            label = None if key in curves else sweep["name"]
            shown += _draw(ax, sweep["results"], metric, label, xmax, color=color, lw=1.2, ls=":", marker=".", ms=4)
        if key in curves:
            c = curves[key]
            cwic = key.startswith("cwic")
            style = {"lw": 2.2 if key in ("cwic", "cwic-refined") else 1.6, "ls": "--" if "uniform" in key else "-"}
            style.update(marker="o" if cwic else "s", ms=6 if cwic else 5)
            shown += _draw(ax, c["results"], metric, c["name"], xmax, color=color, **style)
    if shown:
        ys = sorted(y for _, y in shown)
        lo, hi = ys[int(0.02 * (len(ys) - 1))], ys[-1]
        pad = 0.05 * (hi - lo or 1)
        ax.set_ylim(lo - pad, hi + pad)
    n = len(results.get("images", {}))
    note = "large markers: cwic levels and baselines rate-matched to them per image; dotted: fixed quality sweeps"
    ax.text(0.01, 0.99, note, transform=ax.transAxes, fontsize=7, va="top", color="0.3")
    ax.set_xlim(0, xmax)
    ax.set_xlabel("bits per pixel (real file bytes)")
    ax.set_ylabel(PLOTS[metric][1])
    ax.set_title(f"{PLOTS[metric][1]} vs rate, mean over {n} images; baselines rate-matched per image")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7.5, loc="lower right", ncol=2 if refs else 1)
    else:
        ax.text(0.5, 0.5, "no image could be scored with this metric", ha="center", transform=ax.transAxes)
    if refs:
        fig.text(0.01, 0.005, ATTRIBUTION, fontsize=5.6, color="0.3", wrap=True)
    fig.tight_layout(rect=(0, 0.03 if refs else 0, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _draw(ax, res: dict, metric: str, label: str | None, xmax: float, **style) -> list[tuple[float, float]]:
    pts = [(b, v) for b, v in zip(res["bpp"], res[metric], strict=False) if v is not None]
    pts.sort()
    if not pts:
        return []
    ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label, **style)
    return [p for p in pts if p[0] <= xmax]


def _grey(i: int) -> dict:
    return {"color": f"{0.45 + 0.1 * (i % 3):.2f}", "ls": "--", "marker": "xd+1"[i % 4]}
