"""`python -m cwic bench`: median encode and decode time per codec on one Kodak-size image.

The model is loaded once before timing; classical codecs are first rate-matched to the bpp cwic
reached (untimed), then every codec is timed `--repeat` times from RGB to file bytes and back.
Times are wall clock on this machine, so the core count and torch threads are printed with them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..checkpoint import REPO_ROOT
from . import baselines

DEFAULT_IMAGE = REPO_ROOT.parent / "shared" / "data" / "kodak" / "kodim23.png"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cwic bench", description=__doc__)
    p.add_argument(
        "--image", type=Path, default=None, help="image to time (default: kodim23 if present, else a synthetic 768x512)"
    )
    p.add_argument("--level", type=int, default=None, help="cwic level (default: the middle one)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per codec (median reported)")
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint folder (default: shipped)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--json", type=Path, default=None, help="also write the table to this JSON file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from .. import Codec
    from ..errors import CwicError
    from ..images import load_rgb

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        rgb, source = _image(args.image, load_rgb)
        codec = Codec.load(args.checkpoint) if args.checkpoint else Codec.load()
    except (CwicError, OSError) as e:
        print(f"cwic bench: {e}", file=sys.stderr)
        return 2
    levels = [lv["level"] for lv in codec.levels]
    level = args.level if args.level is not None else levels[len(levels) // 2]
    if level not in levels:
        print(f"cwic bench: no level {level}; levels are {levels}", file=sys.stderr)
        return 2
    size = f"{rgb.shape[1]}x{rgb.shape[0]}"
    load = os.getloadavg()[0]
    threads = torch.get_num_threads()
    print(f"image {source} {size}; cpu cores {os.cpu_count()}, torch threads {threads}, 1-min load {load:.1f}")
    rows = [_time("cwic", lambda: codec.compress(rgb, level=level).data, codec.decompress, rgb, args.repeat)]
    target = rows[0]["bpp"]
    for name in baselines.CODECS:
        knob = baselines.encode_at_bpp(name, rgb, target).settings[baselines.SPECS[name].knob]
        rows.append(_time(name, lambda n=name, k=knob: baselines.encode(n, rgb, k).data, _pil_decode, rgb, args.repeat))
    print(f"{'codec':10s} {'bpp':>7s} {'encode ms':>10s} {'decode ms':>10s}   (median of {args.repeat}, level {level})")
    for r in rows:
        print(f"{r['codec']:10s} {r['bpp']:7.3f} {r['encode_ms']:10.1f} {r['decode_ms']:10.1f}")
    if args.json:
        meta = {"image": source, "cpu_count": os.cpu_count(), "torch_threads": threads, "load": load}
        meta["level"] = level
        args.json.write_text(json.dumps({**meta, "repeat": args.repeat, "rows": rows}, indent=1) + "\n")
    return 0


def _time(name: str, encode, decode, rgb: np.ndarray, repeat: int) -> dict:
    enc, dec = [], []
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        data = encode()
        enc.append(time.perf_counter() - t)
        t = time.perf_counter()
        decode(data)
        dec.append(time.perf_counter() - t)
    bpp = len(data) * 8 / (rgb.shape[0] * rgb.shape[1])
    return {
        "codec": name,
        "bpp": bpp,
        "encode_ms": 1e3 * statistics.median(enc),
        "decode_ms": 1e3 * statistics.median(dec),
    }


def _pil_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _image(path: Path | None, load_rgb) -> tuple[np.ndarray, str]:
    if path is None and DEFAULT_IMAGE.exists():
        path = DEFAULT_IMAGE
    if path is not None:
        return load_rgb(path), path.name
    # Smooth gradients plus mild noise: compresses like a photo more than pure noise would.
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:512, 0:768] / 512.0
    base = np.stack([np.sin(3 * xx + c) * np.cos(2 * yy - c) for c in (0.0, 1.0, 2.0)], axis=-1)
    rgb = np.clip(127.5 + 100 * base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    return rgb, "synthetic 768x512"


if __name__ == "__main__":
    sys.exit(main())
