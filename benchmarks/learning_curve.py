"""Learning curves of training runs: validation PSNR, Kodak PSNR and MS-SSIM, raw bpp per quick-eval rate vs hours.

Usage: python benchmarks/learning_curve.py LOG.jsonl [LOG.jsonl ...] [--axis cpu] --out docs/learning_curve.png
Each log is a run's `log.jsonl` (written by `python -m cwic train`) or a copy of its eval rows
(docs/training_log_*.jsonl); the label is the run's folder, or the copy's name. `--axis cpu` puts
the process CPU time on the x axis (read from the training rows around each evaluation), which
is the fair axis for runs that shared the machine with different neighbours.

A one-off study; its committed output is docs/learning_curve.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_evals(log: Path, axis: str) -> list[dict]:
    """Eval rows, each with "hours" on the chosen axis (CPU time: interpolated from the training rows)."""
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    wall = [r["wall_s"] for r in rows if "cpu_s" in r]
    cpu = [r["cpu_s"] for r in rows if "cpu_s" in r]
    evals = [r for r in rows if "eval" in r]
    for e in evals:
        if axis == "cpu":
            if not cpu:
                raise SystemExit(f"{log}: no training rows with cpu_s, use --axis wall")
            e["hours"] = float(np.interp(e["wall_s"], wall, cpu)) / 3600
        else:
            e["hours"] = e["wall_s"] / 3600
    return evals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("logs", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, default=Path("docs/learning_curve.png"))
    ap.add_argument("--axis", choices=["wall", "cpu"], default="wall", help="x axis: wall-clock or process CPU hours")
    args = ap.parse_args()
    xlabel = "training wall time (h)" if args.axis == "wall" else "training CPU time (core-hours)"
    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    for log in args.logs:
        evals = read_evals(log, args.axis)
        if not evals:
            continue
        name = log.parent.name if log.stem == "log" else log.stem.removeprefix("training_log_")
        for r in evals[-1]["eval"]["val"]:
            hours = [e["hours"] for e in evals if r in e["eval"]["val"]]
            val = [e["eval"]["val"][r] for e in evals if r in e["eval"]["val"]]
            axes[0].plot(hours, [v["psnr"] for v in val], marker=".", label=f"{name} r={r}")
            axes[3].plot(hours, [v["raw_bpp"] for v in val], marker=".", label=f"{name} r={r}")
            kodak = [(e["hours"], e["eval"]["kodak"][r]) for e in evals if r in e["eval"].get("kodak", {})]
            axes[1].plot([k[0] for k in kodak], [k[1]["psnr"] for k in kodak], marker=".", label=f"{name} r={r}")
            axes[2].plot([k[0] for k in kodak], [k[1]["ms_ssim"] for k in kodak], marker=".", label=f"{name} r={r}")
    axes[0].set(xlabel=xlabel, ylabel="PSNR (dB)", title="validation crops (held-out photos)")
    axes[1].set(xlabel=xlabel, ylabel="PSNR (dB)", title="3 Kodak images (quick evaluation)")
    axes[2].set(xlabel=xlabel, ylabel="MS-SSIM", title="3 Kodak images (quick evaluation)")
    axes[3].set(xlabel=xlabel, ylabel="raw bpp (kept bits + 4 bits/map entry)", title="rate")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
