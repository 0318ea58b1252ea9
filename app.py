"""Entry point of the cwic demo (locally: `python app.py`; on a Hugging Face Space: app_file).

Serves on 127.0.0.1:7860 unless GRADIO_SERVER_NAME / GRADIO_SERVER_PORT say otherwise
(Spaces set GRADIO_SERVER_NAME=0.0.0.0); CWIC_CHECKPOINT names another checkpoint folder.
"""

from __future__ import annotations

import os

from cwic import Codec
from demo.ui import build_demo


def main() -> None:
    codec = Codec.load(os.environ.get("CWIC_CHECKPOINT"))  # once, at startup: every request shares it
    demo = build_demo(codec)
    # One compression at a time: the codec already uses both CPU cores; others wait in the queue.
    demo.queue(default_concurrency_limit=1, max_size=64)
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        show_error=True,
    )


if __name__ == "__main__":
    main()
