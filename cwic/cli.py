"""Command lines of the codec: `encode`, `decode`, `info`, `levels` (see `python -m cwic`).

Every user error (bad image, bad file, missing checkpoint, bad option) ends with exit status 2
and one line on stderr, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from .errors import CwicError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse would print the usage too)
        raise _UsageError(f"{self.prog}: {message}")


class _UsageError(Exception):
    pass


def _run(body: Callable[[], int]) -> int:
    try:
        return body()
    except (CwicError, ValueError, OSError, _UsageError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2


def _checkpoint_arg(p: argparse.ArgumentParser, default: str = "shipped cwic-slim") -> None:
    p.add_argument("--checkpoint", type=Path, default=None, help=f"checkpoint folder (default: {default})")


def encode_main(argv: list[str] | None = None) -> int:
    """`cwic encode IN OUT.cwic [--level K | --bpp X]`."""
    p = _Parser(prog="cwic encode", description="Compress an image into a .cwic file.")
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--level", type=int, default=None, help="rate level, 1 (smallest) .. 6 (default 3)")
    g.add_argument("--bpp", type=float, default=None, help="target file size in bits per pixel")
    p.add_argument("--uniform", action="store_true", help="ablation: constant importance map")
    p.add_argument(
        "--refine",
        type=int,
        default=0,
        metavar="STEPS",
        help="encoder-side refinement steps on the codes (slower encoding, better quality; docs/refinement.md)",
    )
    p.add_argument(
        "--refine-for", nargs="+", default=["psnr", "ssim"], metavar="METRIC", help="psnr, ssim and/or ms-ssim"
    )
    _checkpoint_arg(p)

    def body() -> int:
        args = p.parse_args(argv)
        from .codec import Codec
        from .images import load_rgb

        rgb = load_rgb(args.input)
        codec = Codec.load(args.checkpoint)
        c = codec.compress(
            rgb, level=args.level, bpp=args.bpp, uniform=args.uniform, refine=args.refine, refine_for=args.refine_for
        )
        args.output.write_bytes(c.data)
        out = {"output": str(args.output), "bytes": len(c.data), "bpp": round(c.bpp, 5), "level": c.level}
        print(json.dumps(out | {"refine_steps": c.refine_steps}))
        return 0

    return _run(body)


def decode_main(argv: list[str] | None = None) -> int:
    """`cwic decode IN.cwic OUT.png`."""
    p = _Parser(prog="cwic decode", description="Decode a .cwic file to PNG (or any format Pillow writes).")
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path)
    _checkpoint_arg(p, "the shipped checkpoint the file names")

    def body() -> int:
        args = p.parse_args(argv)
        from PIL import Image

        from . import bitstream
        from .codec import Codec
        from .errors import CheckpointError

        data = args.input.read_bytes()
        if args.checkpoint is None:
            codec = Codec.for_file(data)
        else:
            header, _, _ = bitstream.parse(data)
            try:
                codec = Codec.load(args.checkpoint)
            except CheckpointError as e:
                raise CheckpointError(f"this file needs checkpoint {header.checkpoint_id}: {e}") from None
        rgb = codec.decompress(data)
        Image.fromarray(rgb).save(args.output)
        return 0

    return _run(body)


def info_main(argv: list[str] | None = None) -> int:
    """`cwic info FILE.cwic`: the header as JSON (needs no checkpoint)."""
    p = _Parser(prog="cwic info", description="Print the header of a .cwic file as JSON.")
    p.add_argument("input", type=Path)

    def body() -> int:
        args = p.parse_args(argv)
        from . import bitstream

        data = args.input.read_bytes()
        header, _, _ = bitstream.parse(data)
        out = header.to_dict() | {"file_bytes": len(data), "bpp": len(data) * 8 / (header.width * header.height)}
        print(json.dumps(out, indent=2))
        return 0

    return _run(body)


def levels_main(argv: list[str] | None = None) -> int:
    """`cwic levels`: JSON list of {"level", "bpp"} (mean Kodak bpp, level 1 = lowest rate)."""
    p = _Parser(prog="cwic levels", description="List the rate levels and their mean Kodak bpp.")
    _checkpoint_arg(p)

    def body() -> int:
        args = p.parse_args(argv)
        from .codec import Codec

        levels = Codec.load(args.checkpoint).levels
        print(json.dumps([{"level": lv["level"], "bpp": lv["bpp"], "rate": lv["rate"]} for lv in levels]))
        return 0

    return _run(body)
