"""Replace some codecs' rows of a `cwic evaluate` result with those of a newer run over the same images.

Usage: python benchmarks/merge_results.py BASE.json NEW.json --codecs cwic-uniform cwic-uniform-refined
           [--same-pixels] [--out FOLDER] [--reference [FOLDER]]

For a change that touches only some codecs' files (a bitstream change that shrinks the uniform-map
files, say), rerunning those codecs costs a fraction of the full evaluation. BASE and NEW must cover
the same images with the same checkpoint, levels and refinement settings. `--same-pixels` also
requires every replaced row to keep its PSNR / SSIM / MS-SSIM exactly (a format change that must
not alter reconstructions); the largest change of any replaced row is recorded either way.
Curves, BD-rates, plots and bdrate.md are recomputed by the harness's own functions; results.json
records where the replaced rows came from under "merged".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/...` from a checkout

from cwic.evaluation.evaluate import METRICS, bdrate_table, make_curves, write_outputs  # noqa: E402

SAME = ("images", "levels", "tolerance", "refine")


def merge(base: dict, new: dict, codecs: list[str], same_pixels: bool, source: str) -> dict:
    """BASE with the rows of `codecs` taken from NEW; SystemExit naming the first mismatch."""
    for key in SAME:
        if base[key] != new[key]:
            raise SystemExit(f"merge_results: the runs differ in {key!r}")
    if base["checkpoint"]["weights_id"] != new["checkpoint"]["weights_id"]:
        raise SystemExit("merge_results: the runs used different checkpoints")
    if missing := [c for c in codecs if c not in new["codecs"] or c not in base["codecs"]]:
        raise SystemExit(f"merge_results: {missing} not in both runs")
    key = lambda r: (r["image"], r["codec"], r["kind"], r.get("level"))  # noqa: E731
    old = {key(r): r for r in base["rows"] if r["codec"] in codecs}
    fresh = {key(r): r for r in new["rows"] if r["codec"] in codecs}
    if old.keys() != fresh.keys():
        raise SystemExit("merge_results: the runs have different rows for those codecs")
    if same_pixels and (changed := [k for k in old if any(old[k][m] != fresh[k][m] for m in METRICS)]):
        raise SystemExit(f"merge_results: --same-pixels, but {len(changed)} rows changed quality, e.g. {changed[0]}")
    change = {m: max(abs(old[k][m] - fresh[k][m]) for k in old) for m in METRICS}
    rows = [fresh[key(r)] if r["codec"] in codecs else r for r in base["rows"]]
    curves = make_curves(rows, len(base["images"]))
    for c in codecs:
        curves[c]["description"] = new["curves"][c]["description"]
    merged = {**base, "rows": rows, "curves": curves, "bdrate": bdrate_table(curves)}
    merged["elapsed_s"] = base["elapsed_s"] + new["elapsed_s"]
    merged["merged"] = merged.get("merged", []) + [
        {
            "codecs": codecs,
            "from": source,
            "elapsed_s": new["elapsed_s"],
            "same_pixels_checked": same_pixels,
            "max_quality_change": change,  # largest |new - old| of any replaced row, per metric
        }
    ]
    return merged


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("--codecs", nargs="+", required=True)
    p.add_argument("--same-pixels", action="store_true", help="the replaced rows must keep their quality exactly")
    p.add_argument("--out", type=Path, help="output folder (default: BASE's folder)")
    p.add_argument("--reference", nargs="?", const=Path("../shared/reference"), type=Path)
    args = p.parse_args(argv)
    base, new = (json.loads(f.read_text()) for f in (args.base, args.new))
    merged = merge(base, new, args.codecs, args.same_pixels, str(args.new))
    out = args.out or args.base.parent
    write_outputs(merged, out, args.reference)
    print(json.dumps({"max_quality_change": merged["merged"][-1]["max_quality_change"]}))
    print(json.dumps(merged["bdrate"].get("ablation"), indent=1))
    print(f"wrote {out}/results.json, bdrate.*, rd_*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
