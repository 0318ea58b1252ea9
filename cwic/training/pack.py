"""`python -m cwic pack-data`: the training photos, downscaled as the sampler does, in one file.

So that a run can be carried to a machine without `../shared/` (only the working tree and a few
ignored paths reach the GPU machine). The file is an uncompressed zip of images: `train/` (the
training split), `val/` (the first validation photos, for the centre crops) and `kodak/` (the
quick-evaluation images of `cwic train`, never trained on), with a `manifest.json` that names the
sources and the crop side the downscaling was done for. By default they are lossless WebP, which
decode to exactly the arrays the folder sampler builds (the same patches for the same seed), but
that is 65 MiB for this project's 912 training photos, more than a GPU machine's 64 MiB carry
limit; `--quality Q` stores JPEG 4:4:4 at quality Q instead (95: 32.7 MiB, its training images at
41.3 dB PSNR against the exact arrays; docs/training.md), for carrying.
"""

from __future__ import annotations

import argparse
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..images import load_rgb
from .data import DEFAULT_KODAK_DIR, DEFAULT_TRAIN_DIR, QUICK_KODAK, VAL_PHOTOS, list_images, load_downscaled, split

FORMAT = "cwic-train-pack/1"


@dataclass
class TrainPack:
    """The decoded contents of a pack: uint8 RGB arrays."""

    train: list[np.ndarray]
    val: list[np.ndarray]
    kodak: dict[str, np.ndarray]
    patch: int
    manifest: dict


def write_pack(data: Path, kodak: Path, patch: int, out: Path, quality: int | None = None) -> dict:
    """Write the pack (lossless, or JPEG at `quality`); return its manifest."""
    files_train, files_val = split(list_images(data))
    ext = "webp" if quality is None else "jpg"
    manifest = {"format": FORMAT, "patch": patch, "source": str(data), "ext": ext, "quality": quality}
    manifest |= {"train": [], "val": [], "kodak": []}
    encode = _webp if quality is None else (lambda rgb: _jpeg(rgb, quality))
    mse = []  # of the lossy training images against the exact arrays
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        for group, files in (("train", files_train), ("val", files_val[:VAL_PHOTOS])):
            for i, f in enumerate(files):
                rgb = load_downscaled(f, patch)
                blob = encode(rgb)
                z.writestr(f"{group}/{i:05d}.{ext}", blob)
                if group == "train" and quality is not None:
                    mse.append(np.mean((_decode(blob).astype(np.float64) - rgb) ** 2))
                manifest[group].append(f.name)
        for name in QUICK_KODAK:
            if (kodak / name).is_file():
                z.writestr(f"kodak/{name}", _webp(load_rgb(kodak / name)))  # evaluation images stay exact
                manifest["kodak"].append(name)
        if mse:
            manifest["train_psnr_db"] = round(float(np.mean(10 * np.log10(255**2 / np.maximum(mse, 1e-10)))), 2)
        z.writestr("manifest.json", json.dumps(manifest, indent=1))
    tmp.replace(out)
    return manifest


def read_pack(path: Path) -> TrainPack:
    """Decode a pack written by `write_pack` (a clear error for anything else)."""
    try:
        with zipfile.ZipFile(path) as z:
            manifest = json.loads(z.read("manifest.json"))
            if manifest.get("format") != FORMAT:
                raise ValueError(f"{path} is not a cwic training pack ({FORMAT})")
            ext = manifest.get("ext", "webp")
            groups = {
                g: [_decode(z.read(f"{g}/{i:05d}.{ext}")) for i in range(len(manifest[g]))] for g in ("train", "val")
            }
            kodak = {name: _decode(z.read(f"kodak/{name}")) for name in manifest["kodak"]}
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a readable cwic training pack: {e}") from None
    return TrainPack(groups["train"], groups["val"], kodak, int(manifest["patch"]), manifest)


def _webp(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "WEBP", lossless=True, quality=50, method=4)  # method 6 is 200x slower for 1 % less
    return buf.getvalue()


def _jpeg(rgb: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cwic pack-data", description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_TRAIN_DIR, help="folder of training photos")
    p.add_argument("--kodak", type=Path, default=DEFAULT_KODAK_DIR, help="Kodak folder (quick-evaluation images)")
    p.add_argument("--patch", type=int, default=128, help="the crop side of the runs that will read it")
    p.add_argument("--out", type=Path, required=True, help="the pack file to write, e.g. runs/carry/train.zip")
    p.add_argument(
        "--quality", type=int, default=None, help="store JPEG 4:4:4 at this quality instead of lossless WebP (smaller)"
    )
    args = p.parse_args(argv)
    if args.quality is not None and not 1 <= args.quality <= 100:
        raise SystemExit("--quality must be 1..100")
    manifest = write_pack(args.data, args.kodak, args.patch, args.out, args.quality)
    size = args.out.stat().st_size
    print(
        f"{args.out}: {len(manifest['train'])} train, {len(manifest['val'])} val, {len(manifest['kodak'])} Kodak "
        f"images, {size / 2**20:.1f} MiB"
        + (f", training images at {manifest['train_psnr_db']} dB PSNR against the exact ones" if args.quality else "")
    )
    return 0
