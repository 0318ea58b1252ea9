"""Demo latency: `python app.py` in a subprocess, driven through its `compress` API with gradio_client.

1. One user: a 768x512 upload (a Kodak example) to every panel (cwic + JPEG + JPEG 2000, maps,
   zoom, table, downloads), wall time of the whole request, median of --repeats after a warm-up.
2. Concurrency: --users clients submit at once; every one must be answered (the app queues them,
   one compression at a time).

    python benchmarks/demo_latency.py [--out docs/demo_latency.json]

The machine's load average is recorded with the numbers, and so is the app process's CPU time per
request (user + system, all threads): on a busy machine (training on the same cores) wall times are
not the demo's own speed, while the CPU time is what the request costs wherever it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from demo_soak import start_app  # noqa: E402  (benchmarks/ is sys.path[0] when run as a script)
from gradio_client import Client, handle_file

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "demo" / "examples").glob("kodim*.png"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def compress(url: str, image: Path, level: int) -> float:
    """Seconds for one full request, upload to every output, in a fresh client."""
    client = Client(url, verbose=False)
    t0 = time.perf_counter()
    client.predict(
        handle_file(str(image)), "cwic level", level, 0.3, ["JPEG", "JPEG 2000"], False, api_name="/compress"
    )
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    args = p.parse_args(argv)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    load_before = os.getloadavg()
    proc = start_app(port, {})
    try:
        compress(url, EXAMPLES[0], 3)  # warm-up: first request pays for lazy imports and caches
        single, single_cpu = [], []
        for _ in range(args.repeats):
            cpu0 = cpu_seconds(proc.pid)
            single.append(compress(url, EXAMPLES[1], 3))
            single_cpu.append(cpu_seconds(proc.pid) - cpu0)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.users) as pool:
            jobs = [pool.submit(compress, url, EXAMPLES[i % len(EXAMPLES)], 1 + i % 6) for i in range(args.users)]
            answered = []
            for job in jobs:
                try:
                    answered.append(job.result())
                except Exception as e:  # noqa: BLE001 (count every failure, keep measuring)
                    print(f"user failed: {e}", file=sys.stderr)
        burst = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    result = {
        "image": f"{EXAMPLES[1].name} (768x512), cwic level 3 + JPEG + JPEG 2000, every panel",
        "single_user_seconds": [round(t, 2) for t in single],
        "single_user_median_seconds": round(statistics.median(single), 2),
        "single_user_server_cpu_seconds": [round(t, 2) for t in single_cpu],
        "concurrent_users": args.users,
        "concurrent_answered": len(answered),
        "concurrent_max_latency_seconds": round(max(answered), 2) if answered else None,
        "concurrent_total_seconds": round(burst, 2),
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if len(answered) == args.users else 1


if __name__ == "__main__":
    sys.exit(main())
