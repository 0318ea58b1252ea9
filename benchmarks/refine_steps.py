"""What each encoder-side refinement step buys, and what it costs -> docs/refine_steps.json.

    python benchmarks/refine_steps.py [--checkpoint DIR] [--images kodim03 kodim13 ...] [--levels 2 4]
        [--steps 0 5 10 20 40] [--refine-for psnr+ssim ssim ...] [--threads 1] [--out docs/refine_steps.json]

For each image, level and objective (metrics joined by "+"): the real .cwic file made with each
number of steps (Codec.compress with refine=, refine_for=), its size, its PSNR / SSIM / MS-SSIM
and the encoder's CPU time. The deltas against 0
steps are the refinement's gain at (nearly) the same size; cwic evaluate's refined codecs give
the BD-rates on all of Kodak.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/...` from a checkout

from cwic import Codec  # noqa: E402
from cwic.evaluation.evaluate import METRICS, score  # noqa: E402
from cwic.images import load_rgb  # noqa: E402
from cwic.training.data import DEFAULT_KODAK_DIR  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--kodak", type=Path, default=DEFAULT_KODAK_DIR)
    ap.add_argument("--images", nargs="+", default=["kodim03", "kodim08", "kodim13", "kodim21"])
    ap.add_argument("--levels", nargs="+", type=int, default=[2, 4])
    ap.add_argument("--steps", nargs="+", type=int, default=[0, 5, 10, 20, 40])
    ap.add_argument("--refine-for", nargs="+", default=["psnr+ssim"], help="objectives, metrics joined by +")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "refine_steps.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    codec = Codec.load(args.checkpoint)
    rows = []
    for name in args.images:
        rgb = load_rgb(args.kodak / f"{name}.png")
        for level in args.levels:
            runs = [("none", 0)] + [(obj, s) for obj in args.refine_for for s in args.steps if s > 0]
            for objective, steps in runs:
                metrics = tuple(objective.split("+")) if steps else ("psnr",)
                t0 = time.process_time()
                c = codec.compress(rgb, level=level, refine=steps, refine_for=metrics)
                cpu = time.process_time() - t0
                rows.append({"image": name, "level": level, "objective": objective, "steps": steps, "bpp": c.bpp})
                rows[-1].update(encode_cpu_s=cpu, **score(rgb, c.reconstruction))
                print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for objective, steps in sorted({(r["objective"], r["steps"]) for r in rows if r["steps"]}):
        d = {k: [] for k in ("bpp", *METRICS, "encode_cpu_s")}
        for r in (r for r in rows if (r["objective"], r["steps"]) == (objective, steps)):
            base = next(b for b in rows if b["steps"] == 0 and (b["image"], b["level"]) == (r["image"], r["level"]))
            d["bpp"].append(r["bpp"] / base["bpp"] - 1)
            d["encode_cpu_s"].append(r["encode_cpu_s"])
            for m in METRICS:
                d[m].append(r[m] - base[m])
        summary[f"{objective}, {steps} steps"] = {
            "mean_bpp_change": round(float(np.mean(d["bpp"])), 4),
            **{f"mean_{m}_gain": round(float(np.mean(d[m])), 4) for m in METRICS},
            "mean_encode_cpu_s": round(float(np.mean(d["encode_cpu_s"])), 2),
        }
    out = {
        "command": "python benchmarks/refine_steps.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "checkpoint": codec.checkpoint_id,
        "threads": args.threads,
        "cpu": _cpu_name(),
        "summary_vs_unrefined": summary,
        "rows": rows,
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


def _cpu_name() -> str:
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("model name"))
        return line.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
