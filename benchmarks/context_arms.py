"""Context-model arms: which width and spatial kernel save the most bits, and what they cost in time.

Usage: python benchmarks/context_arms.py [--checkpoint checkpoints/cwic-slim] [--minutes 8]
           [--arms 24x3 48x3 24x5 40x5] [--out docs/context_arms.json]
One set of training codes is extracted from the checkpoint's autoencoder (as `cwic train-entropy`
does); every arm "WIDTHxKERNEL" then trains both context models on it for the same minutes with
the same batches (a trailing "u": bit stages drawn uniformly, as before session 14, instead of
among the groups kept in the window), is exported to integers, and codes all 24 Kodak images at every level of the
checkpoint's card with the real arithmetic coder. The autoencoder and the levels are the
checkpoint's, so every arm codes the same bits and reconstructs the same pixels: the mean file
size per level is the whole comparison. Times are the process CPU time of entropy encoding and
decoding kodim23 (768x512) at the top level, one thread, as the codec runs it.

Its committed output is docs/context_arms.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/...` from a checkout

from cwic.checkpoint import DEFAULT_CHECKPOINT  # noqa: E402
from cwic.codec import Codec  # noqa: E402
from cwic.entropy_models.context_model import BitContext, MapContext, export_int, lookup_tables  # noqa: E402
from cwic.entropy_models.entropy_coder import EntropyModel  # noqa: E402
from cwic.models.network import quantize_importance  # noqa: E402
from cwic.training.data import DEFAULT_KODAK_DIR, DEFAULT_TRAIN_DIR  # noqa: E402
from cwic.training.train_entropy import _eval, fit, kodak_bpp, prepare_kodak, training_codes  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def entropy_times(codec: Codec, feats: torch.Tensor, bits: torch.Tensor, rate: float) -> tuple[float, float]:
    """(encode CPU s, decode CPU s) of the entropy stage alone, median of 3."""
    q = quantize_importance(codec.model.importance_map(feats, rate)[0, 0], codec.config)
    enc, dec = [], []
    for _ in range(3):
        t = time.process_time()
        c = codec.entropy.encode(q, bits, rate)
        enc.append(time.process_time() - t)
        t = time.process_time()
        q2, _ = codec.entropy.decode(c.map_section, c.bits_section, *q.shape, rate)
        dec.append(time.process_time() - t)
    if not torch.equal(q2, q):
        raise AssertionError("decoded map differs")
    return float(np.median(enc)), float(np.median(dec))


def write(args: argparse.Namespace, argv: list[str] | None, card: dict, rates: list[float], rows: list[dict]) -> None:
    base = np.array(rows[0]["kodak_bpp"])
    for row in rows:
        row["mean_bpp_change_vs_first"] = round(float(np.mean(np.array(row["kodak_bpp"]) / base - 1)), 4)
    out = {
        "command": "python benchmarks/" + Path(__file__).name + " " + " ".join(argv or sys.argv[1:]),
        "checkpoint": str(args.checkpoint),
        "checkpoint_steps": card.get("training", {}).get("steps"),
        "checkpoint_context_models": card.get("entropy"),
        "checkpoint_levels_bpp": [lv["bpp"] for lv in card.get("levels", [])],
        "rates": rates,
        "minutes_per_arm": args.minutes,
        "cpu": f"{platform.machine()}, 1 thread",
        "note": "training runs shared the 2 cores; CPU times are per process",
        "rows": rows,
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    ap.add_argument("--data", type=Path, default=DEFAULT_TRAIN_DIR)
    ap.add_argument("--kodak", type=Path, default=DEFAULT_KODAK_DIR)
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--arms", nargs="+", default=["24x3", "48x3", "24x5", "40x5"])
    ap.add_argument("--crops", type=int, default=600)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "context_arms.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    codec = Codec.load(args.checkpoint)
    model, n, L = codec.model, codec.n, codec.L
    rates = [float(np.float32(lv["rate"])) for lv in codec.card["levels"]]
    t0 = time.time()
    codes, val = training_codes(model, args.data, args.crops, 3, np.random.default_rng(0))
    print(f"codes in {time.time() - t0:.0f} s", flush=True)
    prepared = prepare_kodak(codec, args.kodak)
    top = prepared[22]  # kodim23
    rows = []
    for arm in args.arms:
        uniform_stages = arm.endswith("u")
        width, kernel = (int(v) for v in arm.rstrip("u").split("x"))
        torch.manual_seed(0)
        map_net, bit_net = MapContext(codec.config.symbols, width, kernel), BitContext(n, L, width, kernel)
        t = time.process_time()
        rng = np.random.default_rng(1)
        steps = fit(map_net, bit_net, codes, codec.config, args.minutes, 48, 16, 3e-3, rng, not uniform_stages)
        fit_cpu = time.process_time() - t
        with torch.no_grad():
            vb, vm = _eval(map_net, bit_net, *val, codec.config)
        tensors = export_int(map_net, "entropy.map") | export_int(bit_net, "entropy.bits") | lookup_tables()
        codec.entropy = EntropyModel(tensors, codec.config)
        levels = [kodak_bpp(codec, prepared, r) for r in rates]
        enc_s, dec_s = entropy_times(codec, top[0], top[1], rates[-1])
        row = {
            "arm": arm,
            "width": width,
            "kernel": kernel,
            "stages": "uniform" if uniform_stages else "present",
            "steps": steps,
            "fit_cpu_s": round(fit_cpu, 1),
            "val_bits_per_kept_bit": round(vb, 4),
            "val_bits_per_map_entry": round(vm, 4),
            "kodak_bpp": [round(b, 4) for b, _ in levels],
            "kodak_raw_bpp": [round(r, 4) for _, r in levels],
            "entropy_encode_cpu_s": round(enc_s, 3),
            "entropy_decode_cpu_s": round(dec_s, 3),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        write(args, argv, codec.card, rates, rows)  # after every arm, so a stopped run keeps what it measured
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
