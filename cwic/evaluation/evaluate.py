"""`python -m cwic evaluate`: cwic against JPEG, JPEG 2000, WebP and AVIF at matched rates.

For every image: every cwic level (bpp from the real .cwic file), the uniform-importance ablation
at the same levels, each classical codec searched to the bpp cwic reached on that image, and a
fixed quality sweep per classical codec for full curves. Writes `results.json` (per-image rows +
one CompressAI-style curve per codec), RD plots and a BD-rate table (see docs/evaluation.md).

Each finished image is appended to `OUT/partial.jsonl` as it completes; a run that stops (a killed
process, a session's end) resumes from there when started again with the same settings, so a
multi-hour evaluation loses at most the images in flight.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..refinement import DEFAULT_METRICS, DEFAULT_STEPS
from ..refinement import METRICS as REFINE_METRICS
from . import baselines
from .bdrate import bd_rate_curves

CWIC_CODECS = ("cwic", "cwic-uniform", "cwic-refined", "cwic-uniform-refined")
ALL_CODECS = CWIC_CODECS + baselines.CODECS
REFINED = ("cwic-refined", "cwic-uniform-refined")  # encoder-side refinement: ~15 s per image and level
DEFAULT_CODECS = tuple(c for c in ALL_CODECS if c not in REFINED)
METRICS = ("psnr-rgb", "ssim-rgb", "ms-ssim-rgb")
ANCHORS = ("jpeg", "jpeg2000")
NAMES = {
    "cwic": "cwic",
    "cwic-uniform": "cwic, uniform importance (ablation)",
    "cwic-refined": "cwic, refined codes",
    "cwic-uniform-refined": "cwic, uniform importance, refined codes",
    "jpeg": "JPEG",
    "jpeg2000": "JPEG 2000",
    "webp": "WebP",
    "avif": "AVIF",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cwic evaluate", description=__doc__)
    p.add_argument("--images", type=Path, required=True, help="folder of images (e.g. ../shared/data/kodak)")
    p.add_argument("--out", type=Path, required=True, help="output folder (results.json, plots, bdrate.*)")
    p.add_argument(
        "--codecs",
        nargs="+",
        default=list(DEFAULT_CODECS),
        choices=ALL_CODECS,
        metavar="CODEC",
        help=f"default: {' '.join(DEFAULT_CODECS)}; {' and '.join(REFINED)} add encoder-side code refinement (slow)",
    )
    p.add_argument("--refine-steps", type=int, default=DEFAULT_STEPS, help="refinement steps of the refined codecs")
    p.add_argument("--refine-for", nargs="+", default=list(DEFAULT_METRICS), choices=REFINE_METRICS, metavar="METRIC")
    p.add_argument("--levels", nargs="+", type=int, default=None, help="cwic levels (default: all)")
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint folder (default: shipped)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (trial runs)")
    p.add_argument("--tol", type=float, default=0.02, help="relative bpp tolerance of rate matching")
    p.add_argument("--no-sweep", action="store_true", help="skip the fixed quality sweeps")
    p.add_argument(
        "--reference",
        nargs="?",
        type=Path,
        const=Path(__file__).resolve().parents[3] / "shared" / "reference",
        default=None,
        help="add published Kodak curves to the plots (folder, default ../shared/reference)",
    )
    p.add_argument("--jobs", type=int, default=1, help="worker processes, one image each (use 2 on an idle 2-core box)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: fastest on a busy machine)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    classical = [c for c in args.codecs if c in baselines.CODECS]
    if args.no_sweep and classical and "cwic" not in args.codecs:
        print(
            f"cwic evaluate: with --no-sweep, {', '.join(classical)} can only be rate-matched to cwic's levels: "
            "add cwic to --codecs, or drop --no-sweep",
            file=sys.stderr,
        )
        return 2
    if not 1 <= args.refine_steps <= 1000:
        print(f"cwic evaluate: --refine-steps must be in [1, 1000], got {args.refine_steps}", file=sys.stderr)
        return 2
    if args.out.exists() and not args.out.is_dir():
        print(f"cwic evaluate: --out {args.out} is a file, not a folder", file=sys.stderr)
        return 2
    try:
        images = _list_images(args.images, args.limit)
    except (FileNotFoundError, NotADirectoryError, ValueError) as e:
        print(f"cwic evaluate: {e}", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    codec = None
    if any(c in CWIC_CODECS for c in args.codecs):
        from .. import Codec
        from ..errors import CwicError

        try:
            codec = Codec.load(args.checkpoint) if args.checkpoint else Codec.load()
        except (CwicError, OSError) as e:
            print(f"cwic evaluate: {e}", file=sys.stderr)
            return 2
    levels = args.levels or ([lv["level"] for lv in codec.levels] if codec else [])
    if codec and (bad := [k for k in levels if k not in {lv["level"] for lv in codec.levels}]):
        print(f"cwic evaluate: no such level(s) {bad}; the checkpoint has {len(codec.levels)}", file=sys.stderr)
        return 2
    from ..errors import CwicError

    refine, sweep = (args.refine_steps, tuple(args.refine_for)), not args.no_sweep
    settings, partial = run_settings(images, codec, args.codecs, levels, args.tol, sweep, refine), args.out / PARTIAL
    try:
        results = run(images, codec, args.codecs, levels, args.tol, sweep, args.jobs, refine, partial, settings)
    except CwicError as e:  # an image the codec or the loader rejects (unreadable, smaller than 16 px)
        print(f"cwic evaluate: {e}", file=sys.stderr)
        return 2
    results["checkpoint"] = _checkpoint_info(args.checkpoint) if codec else None
    for key in (k for k in CWIC_CODECS if k in results["curves"]):
        results["curves"][key]["description"] += f"; checkpoint {results['checkpoint']['weights_id']}"
        if key in REFINED:
            results["curves"][key]["description"] += f"; {refine[0]} refinement steps for {'+'.join(refine[1])}"
    write_outputs(results, args.out, args.reference)
    (args.out / PARTIAL).unlink(missing_ok=True)
    print(f"wrote {args.out}/results.json, rd_*.png, bdrate.md ({results['elapsed_s']:.0f} s)")
    return 0


PARTIAL = "partial.jsonl"


def run_settings(images: list[Path], codec, codecs, levels, tol: float, sweep: bool, refine) -> dict:
    """What decides an image's rows: a partial run is resumed only when all of it is unchanged."""
    return {
        "checkpoint": codec.checkpoint_id if codec else None,
        "codecs": list(codecs),
        "levels": list(levels),
        "rates": [[lv["level"], lv["rate"]] for lv in codec.levels if lv["level"] in levels] if codec else None,
        "tolerance": tol,
        "sweep": sweep,
        "refine": {"steps": refine[0], "metrics": list(refine[1])},
        "encoders": baselines.encoder_versions(),
        "images": {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in images},
    }


def run(
    images: list[Path],
    codec,
    codecs: list[str],
    levels: list[int],
    tol: float,
    sweep: bool = True,
    jobs: int = 1,
    refine: tuple[int, tuple[str, ...]] = (DEFAULT_STEPS, DEFAULT_METRICS),
    partial: Path | None = None,
    settings: dict | None = None,
) -> dict:
    """Evaluate every image (in `jobs` processes); returns the results dict written to results.json.

    `refine`: (steps, metrics) of the refined cwic codecs. With `partial` (a .jsonl path) and its
    `settings`, images already recorded there under the same settings are taken from it, and each
    newly finished image is appended as soon as it is done."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm import tqdm

    t0 = time.perf_counter()
    before = _read_partial(partial, settings) if partial else {}
    if before:
        print(f"cwic evaluate: resuming, {len(before)} of {len(images)} images from {partial}", file=sys.stderr)
    elif partial:
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({"settings": settings}) + "\n")
    args = [(i, path, codecs, levels, tol, sweep, refine) for i, path in enumerate(images) if path.name not in before]
    done = dict(before)

    def record(result: tuple) -> None:
        done[result[0]] = result
        if partial:
            with partial.open("a") as f:
                f.write(json.dumps(list(result), allow_nan=False) + "\n")

    _WORKER["codec"] = codec
    bar = tqdm(total=len(images), initial=len(before), **TQDM)
    if jobs > 1 and len(args) > 1:
        import multiprocessing

        # fork: the workers share the loaded model; each runs one torch thread
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            for future in as_completed([pool.submit(_evaluate_image, a) for a in args]):
                record(future.result())
                bar.update()
    else:
        for a in args:
            record(_evaluate_image(a))
            bar.update()
    bar.close()
    ordered = [done[p.name] for p in images]
    rows = [row for _, _, image_rows, _, _ in ordered for row in image_rows]
    curves = make_curves(rows, len(images))
    return {
        "name": "cwic evaluation",
        "images": {name: size for name, size, *_ in ordered},
        "codecs": list(codecs),
        "levels": list(levels),
        "tolerance": tol,
        "refine": {"steps": refine[0], "metrics": list(refine[1])},
        "encoders": baselines.encoder_versions(),
        "machine": {"cpu_count": os.cpu_count(), "jobs": jobs},
        "elapsed_s": time.perf_counter() - t0 + sum(r[4] for r in before.values()),
        "resumed_images": len(before),
        "decoded_files_checked": sum(r[3] for r in ordered),
        "rows": rows,
        "curves": curves,
        "bdrate": bdrate_table(curves),
    }


def _read_partial(partial: Path, settings: dict | None) -> dict[str, tuple]:
    """Finished images of an earlier run of the same settings, by name; {} if there is none.

    A file of other settings yields nothing (run() then starts it afresh); one cut off mid-line by a
    killed process yields its whole lines, and the torn tail is cut off the file."""
    try:
        lines = partial.read_text().splitlines()
        if not lines or json.loads(lines[0]).get("settings") != settings:
            return {}
    except (OSError, ValueError, AttributeError):
        return {}
    found = {}
    for line in lines[1:]:
        try:
            name, size, rows, decoded, seconds = json.loads(line)
        except (ValueError, TypeError):
            break  # a line cut off by a kill: everything after it is lost too
        found[name] = (name, size, rows, decoded, seconds)
    if len(found) < len(lines) - 1:  # drop the torn tail so appends start on a whole line
        partial.write_text("\n".join(lines[: len(found) + 1]) + "\n")
    return found


_WORKER: dict = {}
TQDM = {"unit": "img", "desc": "evaluate", "file": sys.stderr}


def _evaluate_image(args: tuple) -> tuple[str, dict, list[dict], int, float]:
    """All codecs on one image: (name, size, rows, number of .cwic files decoded and checked, seconds)."""
    from ..errors import CwicError, ImageError
    from ..images import load_rgb

    index, path, codecs, levels, tol, sweep, refine = args
    t0 = time.perf_counter()
    try:
        result = _evaluate_loaded(index, path, load_rgb(path), _WORKER["codec"], codecs, levels, tol, sweep, refine)
        return (*result, time.perf_counter() - t0)
    except CwicError as e:
        raise ImageError(f"{path.name}: {e}") from None


def _evaluate_loaded(
    index, path, rgb, codec, codecs, levels, tol, sweep, refine=(0, DEFAULT_METRICS)
) -> tuple[str, dict, list[dict], int]:
    rows: list[dict] = []
    cwic_bpp, decoded = {}, 0
    for name in (c for c in CWIC_CODECS if c in codecs):
        steps = refine[0] if name in REFINED else 0
        for k in levels:
            c = codec.compress(rgb, level=k, uniform="uniform" in name, refine=steps, refine_for=refine[1])
            if index == 0 and name in ("cwic", "cwic-refined"):  # the first image: decode the real files too
                if not np.array_equal(codec.decompress(c.data), c.reconstruction):
                    raise RuntimeError(f"{path.name} level {k}: decoded file differs from the encoder's image")
                decoded += 1
            row = {"codec": name, "kind": "level", "level": k, "rate": c.rate, "bytes": len(c.data), "bpp": c.bpp}
            rows.append({"image": path.name, **row, **score(rgb, c.reconstruction)})
            if name == "cwic":
                cwic_bpp[k] = c.bpp
    scores: dict = {}  # by file: a search may return the same file for several levels

    def scored(e: baselines.Encoded) -> dict:
        if e.data not in scores:
            scores[e.data] = score(rgb, e.reconstruction)
        return scores[e.data]

    for name in (c for c in baselines.CODECS if c in codecs):
        cache: dict = {}
        if sweep:
            for e in baselines.sweep(name, rgb, cache):
                rows.append({"image": path.name, "kind": "sweep", **e.row(), **scored(e)})
        for k, target in cwic_bpp.items():
            e = baselines.encode_at_bpp(name, rgb, target, tol, cache)
            rows.append({"image": path.name, "kind": "matched", "level": k, **e.row(), **scored(e)})
    return path.name, {"width": rgb.shape[1], "height": rgb.shape[0]}, rows, decoded


def score(ref: np.ndarray, rec: np.ndarray) -> dict:
    """The three metrics of docs/metrics.md; non-finite or unscorable values become None."""
    from .metrics import quality

    q = quality(ref, rec)
    out = {"psnr-rgb": q["psnr"], "ssim-rgb": q["ssim"], "ms-ssim-rgb": q["ms_ssim"]}
    return {k: (v if v is not None and math.isfinite(v) else None) for k, v in out.items()}


def make_curves(rows: list[dict], n_images: int) -> dict:
    """One CompressAI-style curve per codec: bpp and metrics averaged over images per point.

    cwic points are its levels, rate-matched classical points are keyed by the cwic level they
    were matched to, sweep points by their setting (curve name `<codec>-sweep`). A mean that
    includes an unscorable image (None) is None.
    """
    groups: dict[str, dict] = {}
    for r in rows:
        if r["kind"] == "sweep":
            spec = baselines.SPECS[r["codec"]]
            key, point = f"{r['codec']}-sweep", r["settings"][spec.knob]
        else:
            key, point = r["codec"], r["level"]
        groups.setdefault(key, {}).setdefault(point, []).append(r)
    curves = {}
    for key, points in groups.items():
        base = key.removesuffix("-sweep")
        what = {
            "level": f"mean over {n_images} images per cwic level; bpp from real file bytes",
            "matched": f"rate-matched per image to cwic's bpp at each level; mean over {n_images} images",
            "sweep": f"fixed quality sweep, mean over {n_images} images per setting",
        }[next(iter(points.values()))[0]["kind"]]
        ordered = sorted(points.items())
        results = {"bpp": [_mean([r["bpp"] for r in rs]) for _, rs in ordered]}
        results.update({m: [_mean([r[m] for r in rs]) for _, rs in ordered] for m in METRICS})
        if base in baselines.SPECS:
            what = f"{what}. {baselines.describe(base)}"
        curves[key] = {
            "name": NAMES[base] + (" (sweep)" if key.endswith("-sweep") else ""),
            "description": what,
            "points": [p for p, _ in ordered],
            "results": results,
        }
    return curves


def bdrate_table(curves: dict) -> dict:
    """BD-rate (%) of every codec against JPEG and JPEG 2000 (rate-matched and sweep anchors), and of cwic
    against its uniform-map ablation."""
    table: dict = {}
    for anchor_kind, suffix in (("matched", ""), ("sweep", "-sweep")):
        for anchor in ANCHORS:
            a = curves.get(anchor + suffix)
            if a is None:
                continue
            for test in (c for c in ALL_CODECS if c in curves and c != anchor):
                entry = {m: bd_rate_curves(a["results"], curves[test]["results"], m) for m in METRICS}
                table.setdefault(anchor_kind, {}).setdefault(anchor, {})[test] = entry
    for anchor, test in (("cwic-uniform", "cwic"), ("cwic-uniform-refined", "cwic-refined")):
        if test in curves and anchor in curves:  # the paper's ablation, measured directly
            a, t = curves[anchor]["results"], curves[test]["results"]
            table.setdefault("ablation", {})[anchor] = {test: {m: bd_rate_curves(a, t, m) for m in METRICS}}
    return table


def bdrate_markdown(results: dict) -> str:
    """The BD-rate tables as markdown (negative = fewer bits than the anchor at equal quality)."""
    table = results["bdrate"]
    n = len(results["images"])
    lines = [
        "# BD-rate (%)",
        "",
        f"Bjøntegaard delta rate over {n} images; negative = fewer bits than the anchor for the same",
        "quality. Curves are means over images per cwic level; SSIM and MS-SSIM are fitted in dB. Empty =",
        "the quality ranges do not overlap. See docs/evaluation.md.",
    ]
    titles = {
        "matched": "Anchors rate-matched per image to cwic",
        "sweep": "Anchors from the fixed quality sweep (wider range)",
        "ablation": "Content weighting against its ablation (anchor: the same model with a uniform map)",
    }
    for kind, by_anchor in table.items():
        if kind == "ablation":  # one row per (model, its own uniform-map ablation)
            head = ["codec", "anchor"] + [m.removesuffix("-rgb").upper() for m in METRICS]
            lines += ["", f"## {titles[kind]}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for a, tests in by_anchor.items():
                for t, entry in tests.items():
                    lines.append("| " + " | ".join([NAMES[t], NAMES[a]] + [_fmt(entry.get(m)) for m in METRICS]) + " |")
            continue
        anchors = list(by_anchor)
        tests = [t for t in ALL_CODECS if any(t in by_anchor[a] for a in anchors)]
        head = ["codec"] + [f"vs {NAMES[a]} {m.removesuffix('-rgb').upper()}" for a in anchors for m in METRICS]
        lines += ["", f"## {titles[kind]}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for t in tests:
            cells = [_fmt(by_anchor[a].get(t, {}).get(m)) for a in anchors for m in METRICS]
            lines.append("| " + " | ".join([NAMES[t]] + cells) + " |")
    return "\n".join(lines + levels_markdown(results["curves"])) + "\n"


def levels_markdown(curves: dict) -> list[str]:
    """Per cwic level: every rate-matched codec's mean bpp and metrics (the numbers behind the curves)."""
    cwic = curves.get("cwic")
    if cwic is None:
        return []
    tests = [c for c in ALL_CODECS if c in curves]
    lines = [
        "",
        "## Per cwic level (means over the images; each codec matched per image to cwic's bpp)",
        "",
        "| level | codec | bpp | PSNR (dB) | SSIM | MS-SSIM |",
        "|---|---|---|---|---|---|",
    ]
    for i, level in enumerate(cwic["points"]):
        for t in tests:
            res = curves[t]["results"]
            if i >= len(res["bpp"]) or curves[t]["points"][i] != level:
                continue
            vals = zip([res[m][i] for m in METRICS], (2, 4, 4), strict=True)
            cells = [f"{res['bpp'][i]:.3f}"] + ["" if v is None else f"{v:.{d}f}" for v, d in vals]
            lines.append("| " + " | ".join([str(level), NAMES[t], *cells]) + " |")
    return lines


def write_outputs(results: dict, out: Path, reference: Path | None = None) -> None:
    """results.json, bdrate.json, bdrate.md and the three RD plots."""
    from .plots import plot_all

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, allow_nan=False) + "\n")
    bd = {"images": len(results["images"]), "encoders": results["encoders"], "bdrate": results["bdrate"]}
    (out / "bdrate.json").write_text(json.dumps(bd, indent=1, allow_nan=False) + "\n")
    (out / "bdrate.md").write_text(bdrate_markdown(results))
    plot_all(results, out, reference)


def _checkpoint_info(folder: Path | None) -> dict:
    from ..checkpoint import DEFAULT_CHECKPOINT, weights_id

    folder = Path(folder or DEFAULT_CHECKPOINT)
    info = {"path": str(folder), "weights_id": weights_id(folder / "model.safetensors")}
    card = folder / "model.json"
    if card.exists():
        meta = json.loads(card.read_text())
        info.update({k: meta[k] for k in ("name", "steps", "levels") if k in meta})
    return info


def _list_images(folder: Path, limit: int | None) -> list[Path]:
    from ..training.data import list_images

    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder: {folder}")
    files = list_images(folder)
    return files[:limit] if limit else files


def _mean(values: list) -> float | None:
    return None if any(v is None for v in values) else float(np.mean(values))


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:+.1f}"


if __name__ == "__main__":
    sys.exit(main())
