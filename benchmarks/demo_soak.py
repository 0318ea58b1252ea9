"""Demo soak: many distinct uploads from concurrent users; does the server's memory and temp disk level off?

`python app.py` runs in a subprocess with its own temp folders (TMPDIR and GRADIO_TEMP_DIR under a
fresh folder), so only its files are counted. --users gradio_client users send --requests requests
in all to the `compress` API, each a new file (a random crop of an example, randomly flipped) at a
random level and model; every user opens a new session (Client) every --per-session requests and
closes the old one, as visitors come and go. Throughout, and for --settle seconds after the last
answer (default: long enough for one cleanup after the cache age), it samples the RSS of the server
and its children and the bytes, files and folders under both temp folders.

    nice -n 10 python benchmarks/demo_soak.py --cache-frequency 30 --cache-age 60 --out docs/demo_soak.json

The cache settings reach the app as CWIC_CACHE_FREQUENCY / CWIC_CACHE_AGE. Exit status 0 when
every request was answered.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from gradio_client import Client, handle_file
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "demo" / "examples").glob("kodim*.png"))
MODELS = sorted(p.name for p in (ROOT / "checkpoints").iterdir() if (p / "model.safetensors").is_file())


def start_app(port: int, env: dict) -> subprocess.Popen:
    """`python app.py` on `port`; returns once it answers HTTP."""
    env = {**os.environ, **env, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("app.py did not start") from None
            time.sleep(1)


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and all its descendants, MB (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 1)


def folder_usage(root: Path) -> dict:
    """MB, files and folders under `root`: the demo's folders (cwic-*) and the rest, flattened for the JSON."""
    out = {f"{kind}_{key}": 0 for kind in ("demo", "other") for key in ("bytes", "files", "folders")}
    for top in root.iterdir() if root.is_dir() else []:
        kind = "demo" if top.name.startswith("cwic-") else "other"
        walk = os.walk(top) if top.is_dir() else [(root, [], [top.name])]
        for folder, _, files in walk:
            out[f"{kind}_folders"] += top.is_dir()
            for name in files:
                try:
                    out[f"{kind}_bytes"] += (Path(folder) / name).stat().st_size
                    out[f"{kind}_files"] += 1
                except OSError:  # deleted while we looked
                    pass
    return out


def make_upload(rng: random.Random, path: Path) -> Path:
    """A new file: a random crop (at least 128 px a side) of a random example, maybe flipped."""
    rgb = np.asarray(Image.open(rng.choice(EXAMPLES)).convert("RGB"))
    h, w = rgb.shape[:2]
    ch, cw = rng.randint(128, h), rng.randint(128, w)
    top, left = rng.randint(0, h - ch), rng.randint(0, w - cw)
    crop = rgb[top : top + ch, left : left + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.5:
        crop = crop[::-1]
    Image.fromarray(np.ascontiguousarray(crop)).save(path)
    return path


def to_json(result: dict) -> str:
    """The result as JSON with one line per sample and per request, so the file reads as a table."""
    lines = []
    for key, value in result.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            rows = ",\n  ".join(json.dumps(row) for row in value)
            lines.append(f" {json.dumps(key)}: [\n  {rows}\n ]")
        else:
            lines.append(f" {json.dumps(key)}: " + json.dumps(value, indent=1).replace("\n", "\n "))
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--per-session", type=int, default=1, help="requests per Client (visitor) before a user reconnects")
    p.add_argument("--cache-frequency", type=int, default=30, help="seconds, passed as CWIC_CACHE_FREQUENCY")
    p.add_argument("--cache-age", type=int, default=60, help="seconds, passed as CWIC_CACHE_AGE")
    p.add_argument("--settle", type=float, default=None, help="seconds to sample after the last answer")
    p.add_argument("--sample-every", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    args = p.parse_args(argv)
    settle = args.cache_age + 2 * args.cache_frequency + 15 if args.settle is None else args.settle

    work = Path(tempfile.mkdtemp(prefix="cwic-soak-"))
    roots = {"tmpdir": work / "tmp", "gradio": work / "gradio"}
    for root in [*roots.values(), work / "uploads"]:
        root.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    env = {
        "TMPDIR": str(roots["tmpdir"]),
        "GRADIO_TEMP_DIR": str(roots["gradio"]),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "CWIC_CACHE_FREQUENCY": str(args.cache_frequency),
        "CWIC_CACHE_AGE": str(args.cache_age),
    }
    t_start = time.monotonic()
    proc = start_app(port, env)
    startup_s = time.monotonic() - t_start

    lock = threading.Lock()
    next_index, results, samples = [0], [], []
    stop_sampling = threading.Event()

    def sample() -> None:
        samples.append(
            {
                "t": round(time.monotonic() - t_start, 1),
                "answered": sum(r["ok"] for r in results),
                "rss_mb": tree_rss_mb(proc.pid),
                "server_cpu_s": cpu_seconds(proc.pid),
                **{f"{name}_{k}": v for name, root in roots.items() for k, v in folder_usage(root).items()},
            }
        )

    def sampler() -> None:
        while not stop_sampling.wait(args.sample_every):
            sample()

    def user(u: int) -> None:
        rng = random.Random(args.seed * 1000 + u)
        client, used = None, 0
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= args.requests:
                break
            upload = make_upload(rng, work / "uploads" / f"u{i}.png")
            level, model = rng.randint(1, 6), MODELS[i % len(MODELS)]
            t0 = time.monotonic()
            try:
                if client is None or used == args.per_session:
                    if client is not None:
                        client.close()  # the server sees the visitor leave
                    client, used = None, 0
                    client = Client(url, verbose=False)
                used += 1
                client.predict(
                    handle_file(str(upload)),
                    "cwic level",
                    level,
                    0.3,
                    ["JPEG", "JPEG 2000"],
                    False,
                    model=model,
                    api_name="/compress",
                )
                ok, error = True, None
            except Exception as e:  # noqa: BLE001 (count every failure, keep going)
                ok, error = False, str(e)[:300]
            with lock:
                t1 = time.monotonic()
                results.append(
                    {"i": i, "user": u, "ok": ok, "seconds": round(t1 - t0, 2), "at": round(t1 - t_start, 1)}
                    | ({"error": error} if error else {})
                )
        if client is not None:
            client.close()

    load_before = os.getloadavg()
    sample()
    sampling = threading.Thread(target=sampler, daemon=True)
    sampling.start()
    try:
        users = [threading.Thread(target=user, args=(u,)) for u in range(args.users)]
        for t in users:
            t.start()
        for t in users:
            t.join()
        t_done = time.monotonic() - t_start
        time.sleep(settle)
        stop_sampling.set()
        sampling.join()
        sample()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)

    def temp_bytes(s: dict) -> int:
        return sum(s[f"{r}_{k}_bytes"] for r in roots for k in ("demo", "other"))

    loaded = [s for s in samples if s["t"] <= t_done]  # while requests were running
    first, second = loaded[: len(loaded) // 2], loaded[len(loaded) // 2 :]

    def rss_max(part: list[dict]) -> float | None:
        return max((s["rss_mb"] for s in part), default=None)

    def temp_mb_max(part: list[dict]) -> float:
        return round(max((temp_bytes(s) for s in part), default=0) / 1e6, 1)

    result = {
        "command": "python benchmarks/demo_soak.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "requests": args.requests,
        "users": args.users,
        "requests_per_session": args.per_session,
        "cache_frequency_s": args.cache_frequency,
        "cache_age_s": args.cache_age,
        "summary": {
            "answered": sum(r["ok"] for r in results),
            "failed": [r for r in results if not r["ok"]],
            "startup_seconds": round(startup_s, 1),  # `python app.py` until it answers HTTP
            "first_answer_seconds": min((r["at"] for r in results if r["ok"]), default=None),
            "load_seconds": round(t_done - startup_s, 1),
            "median_request_seconds": float(np.median([r["seconds"] for r in results])) if results else None,
            # server CPU from start to the last sample (idle settle included) per request: wall times here
            # share the CPU with other work
            "server_cpu_seconds_per_request": round(
                (samples[-1]["server_cpu_s"] - samples[0]["server_cpu_s"]) / max(len(results), 1), 2
            ),
            "rss_mb_first": samples[0]["rss_mb"],
            "rss_mb_max": rss_max(samples),
            "rss_mb_max_first_half_of_load": rss_max(first),
            "rss_mb_max_second_half_of_load": rss_max(second),
            "rss_mb_last": samples[-1]["rss_mb"],
            "temp_mb_max": temp_mb_max(samples),
            "temp_mb_max_first_half_of_load": temp_mb_max(first),
            "temp_mb_max_second_half_of_load": temp_mb_max(second),
            "temp_mb_last": temp_mb_max(samples[-1:]),
            "temp_last": {k: v for k, v in samples[-1].items() if k.startswith(tuple(roots))},
        },
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "samples": samples,
        "requests_log": sorted(results, key=lambda r: r["i"]),
    }
    print(json.dumps(result["summary"], indent=1))
    if args.out:
        args.out.write_text(to_json(result))
    return 0 if result["summary"]["answered"] == args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
