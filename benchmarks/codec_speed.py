"""Median encode / decode time of a 768x512 Kodak image with the model loaded, entropy coding included.

    nice -n 10 python benchmarks/codec_speed.py [--repeats 5] [--out docs/codec_speed.json]

Prints one JSON row per setting and writes JSON. Records whether a `cwic train` process was
running at the same time and the load average: on a busy machine wall times mostly measure
waiting, so process CPU time is recorded too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/...` from a checkout

from cwic import Codec  # noqa: E402
from cwic.images import load_rgb  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def training_running() -> bool:
    """True if another process runs `python -m cwic train` and is not stopped (SIGSTOP pauses a run for an
    idle measurement); a read-only look at /proc."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if b"cwic" in cmd and b"train" in cmd and state not in ("T", "t"):
            return True
    return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image", type=Path, default=REPO.parent / "shared" / "data" / "kodak" / "kodim23.png")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 3, 6])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "codec_speed.json")
    args = ap.parse_args()
    codec = Codec.load()
    rgb = load_rgb(args.image)
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for level in args.levels:
            c = codec.compress(rgb, level=level)  # warm-up
            codec.decompress(c.data)
            enc, dec, enc_cpu, dec_cpu = [], [], [], []
            for _ in range(args.repeats):
                t, tc = time.perf_counter(), time.process_time()
                c = codec.compress(rgb, level=level)
                enc.append(time.perf_counter() - t)
                enc_cpu.append(time.process_time() - tc)
                t, tc = time.perf_counter(), time.process_time()
                codec.decompress(c.data)
                dec.append(time.perf_counter() - t)
                dec_cpu.append(time.process_time() - tc)
            tc = time.process_time()
            header, q, bits = codec.decode_codes(c.data)
            ent_dec = time.process_time() - tc
            tc = time.process_time()
            codec.entropy.encode(q, bits, header.rate)
            ent_enc = time.process_time() - tc
            row = {
                "threads": threads,
                "level": level,
                "bpp": round(c.bpp, 4),
                "encode_s": round(statistics.median(enc), 3),
                "decode_s": round(statistics.median(dec), 3),
                "encode_cpu_s": round(statistics.median(enc_cpu), 3),
                "decode_cpu_s": round(statistics.median(dec_cpu), 3),
                "entropy_encode_cpu_s": round(ent_enc, 3),
                "entropy_decode_cpu_s": round(ent_dec, 3),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {
        "image": f"{args.image.name} {rgb.shape[1]}x{rgb.shape[0]}",
        "checkpoint_id": codec.checkpoint_id,
        "repeats": args.repeats,
        "statistic": "median wall time (and process CPU time), model loaded, entropy coding and file packing included",
        "note": "threads is the caller's torch setting (the encoder's analysis); the entropy coder and the "
        "synthesis always run on two threads (CODER_THREADS, RENDER_THREADS)",
        "load_average_1min": os.getloadavg()[0],
        "cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores",
        "torch": torch.__version__,
        "training_running_concurrently": training_running(),
        "results": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} (training running concurrently: {result['training_running_concurrently']})")


if __name__ == "__main__":
    main()
