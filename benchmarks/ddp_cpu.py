"""Training throughput on this CPU: 1 process x 2 threads against 2 processes x 1 thread (torchrun,
gloo), the same global batch, the same preset -> docs/ddp_cpu.json.

    python benchmarks/ddp_cpu.py [--data runs/carry/train.zip] [--batch 16] [--steps 80] [--out docs/ddp_cpu.json]

Each setting trains a fresh run for --steps steps (no evaluation) and reads the steps per second
of its log rows (one per 20 steps; the first row, which includes start-up, is left out). Run it on
an otherwise idle machine: the record says what else was running (load average before).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(setting: str, data: Path, batch: int, steps: int, preset: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        train = ["-m", "cwic", "train", "--data", str(data), "--out", tmp, "--preset", preset, "--batch", str(batch)]
        train += ["--steps", str(steps), "--eval-every", str(10**9), "--uniform-steps", "0", "--device", "cpu"]
        env = dict(os.environ)
        if setting == "1x2":
            cmd = [sys.executable, *train, "--threads", "2"]
        else:
            env["OMP_NUM_THREADS"] = "1"
            launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
            cmd = [*launch, *train, "--threads", "1"]
        subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)
        rows = [json.loads(x) for x in (Path(tmp) / "log.jsonl").read_text().splitlines()]
    speeds = [r["steps_per_s"] for r in rows[1:]]
    sps = statistics.median(speeds)
    return {"setting": setting, "steps_per_s": round(sps, 4), "samples_per_s": round(sps * batch, 2), "rows": speeds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO / "runs" / "carry" / "train.zip")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--preset", default="slim")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "ddp_cpu.json")
    args = ap.parse_args(argv)
    load = os.getloadavg()
    rows = [run(s, args.data, args.batch, args.steps, args.preset) for s in ("1x2", "2x1")]
    for r in rows:
        print(json.dumps({k: v for k, v in r.items() if k != "rows"}))
    record = {
        "command": "python benchmarks/ddp_cpu.py " + " ".join(argv or sys.argv[1:]),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load],
        "preset": args.preset,
        "global_batch": args.batch,
        "steps": args.steps,
        "results": rows,
        "speedup_2x1_over_1x2": round(rows[1]["steps_per_s"] / rows[0]["steps_per_s"], 3),
    }
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
