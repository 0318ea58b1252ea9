"""How long the demo keeps what it makes, so a hosted demo runs for weeks on a fixed disk and memory.

Every file a request hands Gradio is written in a folder of its own under Gradio's cache folder
(GRADIO_TEMP_DIR, else <system temp>/gradio). Gradio serves such files without copying them and,
with `delete_cache=settings()` on the Blocks, deletes each one on its schedule once it is older
than the age; the next request then removes the folders Gradio has emptied. A visitor's last
result (the gr.State behind zoom clicks and RD curves) lives as long as its files.

CWIC_CACHE_FREQUENCY (default 300) and CWIC_CACHE_AGE (default 1800) set the schedule in seconds:
a file is deleted between `age` and `age + frequency` seconds after it was written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from gradio.utils import get_upload_folder

DEFAULT_FREQUENCY, DEFAULT_AGE = 300, 1800
PREFIX = "cwic-"  # the demo's folders in Gradio's cache: cwic-KIND-CREATED-RANDOM (CREATED in Unix seconds)


def settings(env: Mapping[str, str] = os.environ) -> tuple[int, int]:
    """(frequency, age) in seconds from CWIC_CACHE_FREQUENCY and CWIC_CACHE_AGE; ValueError naming a bad value."""
    out = []
    for name, default in (("CWIC_CACHE_FREQUENCY", DEFAULT_FREQUENCY), ("CWIC_CACHE_AGE", DEFAULT_AGE)):
        text = env.get(name, "").strip() or str(default)
        if not (text.isdigit() and int(text) > 0):
            raise ValueError(f"{name} must be a whole number of seconds > 0, got {text!r}")
        out.append(int(text))
    return out[0], out[1]


def request_folder(kind: str) -> Path:
    """A new folder for one request's files, in Gradio's cache; first removes old ones (see `sweep`)."""
    root = Path(get_upload_folder())
    root.mkdir(parents=True, exist_ok=True)
    sweep(root, *settings())
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-{int(time.time())}-", dir=root))


def sweep(root: Path, frequency: int, age: int, now: float | None = None) -> None:
    """Remove the demo's folders under `root` that are older than `age` and empty (Gradio has deleted
    their files), and those older than `age + 2 * frequency` whatever they still hold: by then Gradio
    has deleted every file it was handed, so what is left (a request that failed halfway) no visitor
    can download. A folder younger than `age` is never touched: its request may still be writing.
    """
    now = time.time() if now is None else now
    for folder in root.glob(f"{PREFIX}*-*-*"):
        created = folder.name.split("-")[2]
        if not (created.isdigit() and folder.is_dir()) or now - int(created) <= age:
            continue
        if now - int(created) > age + 2 * frequency:
            shutil.rmtree(folder, ignore_errors=True)
            continue
        for sub, _, _ in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):  # innermost first
            try:
                os.rmdir(sub)  # only succeeds when empty: never deletes a file
            except OSError:
                pass
