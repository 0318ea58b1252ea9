"""Bjøntegaard delta rate (VCEG-M33): the mean bitrate difference of two RD curves at equal quality.

For each curve, log(rate) is fitted as a cubic polynomial of the quality (fewer points: degree
n - 1); both fits are integrated over the quality interval the two curves share; the mean
difference of log rates over that interval, d, gives BD-rate = (exp(d) - 1) * 100 %. Negative
means the test codec needs fewer bits than the anchor for the same quality. SSIM and MS-SSIM are
fitted in decibels, -10 log10(1 - s), where RD curves are closer to linear (see docs/evaluation.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

DB_METRICS = ("ssim-rgb", "ms-ssim-rgb")


def to_db(values: Sequence[float]) -> list[float]:
    """-10 log10(1 - s) for SSIM-like scores in [0, 1)."""
    return [-10 * math.log10(max(1 - v, 1e-12)) for v in values]


def bd_rate(
    rate_anchor: Sequence[float],
    quality_anchor: Sequence[float],
    rate_test: Sequence[float],
    quality_test: Sequence[float],
) -> float | None:
    """BD-rate of `test` against `anchor` in percent, or None when the quality ranges do not overlap.

    Points with a missing (None) or non-finite quality are dropped; each curve needs >= 2 points
    with distinct qualities (the fit degree is min(3, distinct qualities - 1)).
    """
    ra, qa = _clean(rate_anchor, quality_anchor)
    rt, qt = _clean(rate_test, quality_test)
    if len(np.unique(qa)) < 2 or len(np.unique(qt)) < 2:
        return None
    lo, hi = max(qa.min(), qt.min()), min(qa.max(), qt.max())
    if not hi > lo:
        return None
    pa = np.polyfit(qa, np.log(ra), min(3, len(np.unique(qa)) - 1))
    pt = np.polyfit(qt, np.log(rt), min(3, len(np.unique(qt)) - 1))
    ia, it = np.polyint(pa), np.polyint(pt)
    mean_diff = ((np.polyval(it, hi) - np.polyval(it, lo)) - (np.polyval(ia, hi) - np.polyval(ia, lo))) / (hi - lo)
    return float((math.exp(mean_diff) - 1) * 100)


def bd_rate_curves(anchor: dict, test: dict, metric: str) -> float | None:
    """BD-rate between two CompressAI-style `results` dicts ({"bpp": [...], metric: [...]})."""
    qa, qt = anchor[metric], test[metric]
    if metric in DB_METRICS:
        qa, qt = (_maybe_db(q) for q in (qa, qt))
    return bd_rate(anchor["bpp"], qa, test["bpp"], qt)


def _maybe_db(values: Sequence[float | None]) -> list[float | None]:
    return [None if v is None else to_db([v])[0] for v in values]


def _clean(rate: Sequence[float], quality: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [
        (float(r), float(q))
        for r, q in zip(rate, quality, strict=True)
        if q is not None and r is not None and r > 0 and math.isfinite(q)
    ]
    pairs.sort(key=lambda p: p[1])
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
