"""Issue 3's bitstream checks on all 24 Kodak images at every level -> docs/bitstream_kodak.json.

    nice -n 10 python benchmarks/kodak_bitstream.py [--checkpoint DIR]

Per image and level: the decoded file equals the model's own reconstruction (cwic.models.network.reconstruct)
bit for bit; file bytes x 8 / pixels is the reported bpp (header included); the per-block bit map
sums to the payload. Per level: mean bpp and the saving of context coding against the raw count
(kept bits + 4 bits per map entry); the issue requires >= 10 % at every level.
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
from cwic.images import load_rgb  # noqa: E402
from cwic.models.network import reconstruct  # noqa: E402
from cwic.training.data import DEFAULT_KODAK_DIR, list_images  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--kodak", type=Path, default=DEFAULT_KODAK_DIR)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "bitstream_kodak.json")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None, help="first N images only (a quick check of the script)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    codec = Codec.load(args.checkpoint)
    files = list_images(args.kodak)[: args.limit]
    per_level = {lv["level"]: {"rate": lv["rate"], "images": []} for lv in codec.levels}
    failures = []
    t0 = time.time()
    for f in files:
        rgb = load_rgb(f)
        x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255
        pixels = rgb.shape[0] * rgb.shape[1]
        for level, entry in per_level.items():
            c = codec.compress(rgb, level=level)
            decoded = codec.decompress(c.data)
            ref, _, _ = reconstruct(codec.model, x, c.rate)
            ref8 = (ref[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            row = {
                "image": f.name,
                "bpp": c.bpp,
                "raw_bpp": c.raw_bits / pixels,
                "payload_bits": c.payload_bits,
                "map_bits": c.map_bits,
                "code_bits": c.code_bits,
                "decoded_equals_reconstruction": bool(np.array_equal(decoded, ref8)),
                "bpp_matches_file_size": c.bpp == len(c.data) * 8 / pixels,
                "block_bits_sum_to_payload": bool(np.isclose(c.bits_per_block.sum(), c.payload_bits, rtol=1e-9)),
            }
            if not all(v for k, v in row.items() if isinstance(v, bool)):
                failures.append((f.name, level))
            entry["images"].append(row)
        print(f"{f.name} done ({time.time() - t0:.0f} s)", flush=True)
    summary = []
    for level, entry in per_level.items():
        rows = entry["images"]
        bpp = float(np.mean([r["bpp"] for r in rows]))
        raw = float(np.mean([r["raw_bpp"] for r in rows]))
        summary.append(
            {
                "level": level,
                "rate": entry["rate"],
                "mean_bpp": round(bpp, 4),
                "mean_raw_bpp": round(raw, 4),
                "saving_vs_raw": round(1 - bpp / raw, 4),
                "map_share_of_payload": round(
                    sum(r["map_bits"] for r in rows) / sum(r["payload_bits"] for r in rows), 4
                ),
                "all_checks_pass": all(
                    r["decoded_equals_reconstruction"] and r["bpp_matches_file_size"] and r["block_bits_sum_to_payload"]
                    for r in rows
                ),
            }
        )
        print(json.dumps(summary[-1]), flush=True)
    out = {
        "checkpoint_id": codec.checkpoint_id,
        "images": len(files),
        "requirement": "saving_vs_raw >= 0.10 at every level; every check true for every image",
        "meets_requirement": not failures and all(s["saving_vs_raw"] >= 0.10 for s in summary),
        "failures": failures,
        "summary": summary,
        "per_level": per_level,
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}; meets requirement: {out['meets_requirement']}")
    return 0 if out["meets_requirement"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
