"""What one visitor costs the demo's memory: Gradio's record of the session and the result its gr.State keeps.

    python benchmarks/demo_state_size.py

Prints JSON: the kB of a new session of the demo's Blocks (tracemalloc over 100 sessions made in a
StateHolder, as the server makes them), and the MB of the result a session keeps (numpy arrays,
torch tensors and bytes reachable from the Comparison; the shared codec is not counted) for a
768x512 example with JPEG and JPEG 2000, and for 1024x1024 with every codec and the uniform map,
the largest a request makes. app.py's MAX_SESSIONS bounds how many of each are held.
"""

from __future__ import annotations

import gc
import json
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import torch
from gradio.state_holder import StateHolder
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/...` from a checkout

from cwic import Codec  # noqa: E402
from demo import compare  # noqa: E402
from demo.ui import build_demo  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "demo" / "examples" / "kodim23.png"


def reachable_bytes(obj, seen: set[int] | None = None) -> int:
    """Bytes of the arrays, tensors and byte strings `obj` holds, each counted once (the Codec skipped)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, Codec):
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return obj.nbytes if obj.base is None else reachable_bytes(obj.base, seen)
    if isinstance(obj, torch.Tensor):
        return obj.untyped_storage().nbytes()
    if isinstance(obj, bytes | bytearray):
        return len(obj)
    parts = list(obj.values()) if isinstance(obj, dict) else list(obj) if isinstance(obj, list | tuple) else []
    parts += list(vars(obj).values()) if hasattr(obj, "__dict__") else []
    parts += [cell.cell_contents for cell in getattr(obj, "__closure__", None) or []]
    return sum(reachable_bytes(p, seen) for p in parts)


def session_kb(codec: Codec, n: int = 100) -> float:
    holder = StateHolder()
    holder.set_blocks(build_demo({"cwic-slim": codec}))
    holder["warm-up"]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        holder[f"visitor-{i}"]
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return round(grown / n / 1024, 1)


def main() -> None:
    torch.set_num_threads(1)
    codec = Codec.load()
    rgb = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    typical = compare.compare(codec, rgb, level=3, classical=["JPEG", "JPEG 2000"])
    big = np.asarray(Image.fromarray(rgb).resize((1024, 1024)))
    largest = compare.compare(codec, big, level=6, classical=list(compare.CLASSICAL), uniform=True)
    result = {
        "session_kb": session_kb(codec),
        "result_mb_768x512_jpeg_jpeg2000": round(reachable_bytes(typical) / 1e6, 1),
        "result_mb_1024x1024_every_codec_uniform": round(reachable_bytes(largest) / 1e6, 1),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
