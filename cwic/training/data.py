"""Training photos: decoded once, downscaled (to hide JPEG blocking), cropped at random."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_TRAIN_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "train"
DEFAULT_KODAK_DIR = DEFAULT_TRAIN_DIR.parent / "kodak"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
VALIDATION_EVERY = 30  # every 30th photo (sorted by name) is held out for validation
VAL_PHOTOS = 16  # `cwic train` validates on the centre crops of the first 16 held-out photos
QUICK_KODAK = ("kodim01.png", "kodim07.png", "kodim23.png")  # `cwic train`'s quick evaluation


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted by name."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images in {folder}")
    return files


def split(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """(train, validation): a fixed hold-out of every VALIDATION_EVERY-th file."""
    val = files[::VALIDATION_EVERY]
    held = set(val)
    return [f for f in files if f not in held], val


def load_downscaled(path: Path, min_side: int) -> np.ndarray:
    """RGB uint8, box-downscaled by 2 (4 for photos over 1200 px), never below `min_side`."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        factor = 4 if max(im.size) > 1200 else 2
        while factor > 1 and min(im.size) // factor < min_side:
            factor //= 2
        if factor > 1:
            im = im.reduce(factor)
        return np.asarray(im)


class PatchSampler:
    """Random crops with horizontal flips from images held in memory, driven by one Generator."""

    def __init__(self, images: list[np.ndarray], patch: int) -> None:
        self.patch = patch
        self.images = [img for img in images if min(img.shape[:2]) >= patch]
        if not self.images:
            raise ValueError(f"no training image is at least {patch}x{patch} after downscaling")

    @classmethod
    def from_files(cls, files: list[Path], patch: int) -> PatchSampler:
        return cls([load_downscaled(f, patch) for f in files], patch)

    def batch(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """(size, 3, patch, patch) float32 in [0, 1]."""
        out = np.empty((size, self.patch, self.patch, 3), dtype=np.uint8)
        for i, idx in enumerate(rng.integers(len(self.images), size=size)):
            img = self.images[idx]
            y = rng.integers(img.shape[0] - self.patch + 1)
            x = rng.integers(img.shape[1] - self.patch + 1)
            crop = img[y : y + self.patch, x : x + self.patch]
            out[i] = crop[:, ::-1] if rng.random() < 0.5 else crop
        return out.transpose(0, 3, 1, 2).astype(np.float32) / 255.0


def center_crops(images: list[np.ndarray], size: int) -> np.ndarray:
    """Fixed validation crops: the centre size x size of each (downscaled) image."""
    crops = []
    for img in images:
        if min(img.shape[:2]) < size:
            continue
        y, x = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
        crops.append(img[y : y + size, x : x + size])
    return np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
