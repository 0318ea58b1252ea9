"""BD-rate of one `cwic evaluate` result against another: a new checkpoint against the one it replaces.

Usage: python benchmarks/compare_results.py OLD.json NEW.json [--codecs cwic cwic-uniform] [--out X.json]
OLD and NEW are `results.json` files of `python -m cwic evaluate` (bpp from real .cwic files, mean
over the same images); either may be given as REV:PATH, read from git (the one a commit shipped).
Prints, per codec, the BD-rate of NEW against OLD in PSNR, SSIM and MS-SSIM, and the per-level
changes of file size and quality.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/...` from a checkout

from cwic.evaluation.bdrate import bd_rate_curves  # noqa: E402
from cwic.evaluation.evaluate import METRICS  # noqa: E402


def compare(old: dict, new: dict, codecs: list[str]) -> dict:
    """{codec: {"bd_rate": {metric: %}, "levels": [per-level deltas]}} of NEW against OLD."""
    if sorted(old["images"]) != sorted(new["images"]):
        raise SystemExit("compare_results: the two evaluations are over different images")
    out = {}
    for codec in codecs:
        a, b = old["curves"][codec]["results"], new["curves"][codec]["results"]
        bd = {m: _round(bd_rate_curves(a, b, m)) for m in METRICS}
        levels = [
            {
                "level": k + 1,
                "bpp": [round(a["bpp"][k], 4), round(b["bpp"][k], 4)],
                **{m: [round(a[m][k], 4), round(b[m][k], 4)] for m in METRICS},
            }
            for k in range(min(len(a["bpp"]), len(b["bpp"])))
        ]
        out[codec] = {"bd_rate": bd, "levels": levels}
    return out


def read_result(spec: str) -> dict:
    """A results.json from a file, or from git as REV:PATH (e.g. HEAD~3:docs/kodak/results.json)."""
    if Path(spec).is_file() or ":" not in spec:
        return json.loads(Path(spec).read_text())
    shown = subprocess.run(["git", "show", spec], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    if shown.returncode:
        raise SystemExit(f"compare_results: {spec}: {shown.stderr.strip()}")
    return json.loads(shown.stdout)


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old", help="results.json, or REV:PATH in git")
    ap.add_argument("new", help="results.json, or REV:PATH in git")
    ap.add_argument("--codecs", nargs="+", default=["cwic", "cwic-uniform"])
    ap.add_argument("--out", type=Path, default=None, help="also write the comparison here as JSON")
    args = ap.parse_args(argv)
    old, new = read_result(args.old), read_result(args.new)
    result = {
        "command": "python benchmarks/compare_results.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "old_checkpoint": old.get("checkpoint", {}).get("weights_id"),
        "new_checkpoint": new.get("checkpoint", {}).get("weights_id"),
        "note": "BD-rate of new against old (negative: new needs fewer bits for the same quality); "
        "levels: [old, new] means over the images",
        "codecs": compare(old, new, args.codecs),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
