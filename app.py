"""Entry point of the cwic demo (locally: `python app.py`; on a Hugging Face Space: app_file).

Serves on 127.0.0.1:7860 unless GRADIO_SERVER_NAME / GRADIO_SERVER_PORT say otherwise
(Spaces set GRADIO_SERVER_NAME=0.0.0.0). The demo offers every checkpoint under checkpoints/
(cwic-slim first); CWIC_CHECKPOINT names the only one to load instead.
"""

from __future__ import annotations

import ctypes
import os

# glibc gives each thread that allocates its own heap (up to 8 per core) and keeps what is freed there:
# the 200-request soak (benchmarks/demo_soak.py) peaked at 1.37 GB and still rising with glibc's default,
# level at 0.72 GB with 2 (docs/demo_soak.json).
if "MALLOC_ARENA_MAX" not in os.environ:  # an explicit setting wins
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX, before any thread is started
    except OSError:  # not glibc (macOS, musl): nothing to limit
        pass

# oneDNN keeps the convolutions it compiles for every input size (1024 of them by default): uploads of
# ever new sizes grew the server by megabytes a request. 64 holds what one request uses (23 conv layers).
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")  # before torch is imported

from pathlib import Path  # noqa: E402

from cwic import Codec  # noqa: E402
from cwic.checkpoint import DEFAULT_CHECKPOINT  # noqa: E402
from demo import cache  # noqa: E402
from demo.ui import build_demo  # noqa: E402

MAX_SESSIONS = 128  # visitors whose last result is kept for zoom clicks and RD curves (see launch)


def load_codecs() -> dict[str, Codec]:
    """Every shipped checkpoint, the default first; only CWIC_CHECKPOINT's folder when it is set."""
    chosen = os.environ.get("CWIC_CHECKPOINT")
    if chosen:
        folders = [Path(chosen)]
    else:
        others = sorted(p for p in DEFAULT_CHECKPOINT.parent.iterdir() if (p / "model.json").is_file())
        folders = [DEFAULT_CHECKPOINT] + [p for p in others if p != DEFAULT_CHECKPOINT]
    return {folder.name: Codec.load(folder) for folder in folders}


def main() -> None:
    try:
        cache.settings()
    except ValueError as e:  # a bad CWIC_CACHE_* stops the start with one line, not a traceback
        raise SystemExit(f"error: {e}") from None
    demo = build_demo(load_codecs())  # once, at startup: every request shares them
    cache.keep_clean(demo)  # old files and folders deleted every CWIC_CACHE_FREQUENCY seconds
    # One compression at a time: the codec already uses both CPU cores; others wait in the queue.
    demo.queue(default_concurrency_limit=1, max_size=64)
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        show_error=True,
        # Gradio keeps every session (about 80 kB, plus its last result: 6.5 MB for a 768x512 image,
        # up to 27 MB at 1024x1024 with every codec; benchmarks/demo_state_size.py) until 10,000 are
        # held; the oldest go first.
        state_session_capacity=MAX_SESSIONS,
    )


if __name__ == "__main__":
    main()
