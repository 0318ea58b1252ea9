"""How long the demo keeps what it makes, so a hosted demo runs for weeks on a fixed disk and memory.

Every file a request hands Gradio is written in a folder of its own under Gradio's cache folder
(GRADIO_TEMP_DIR, else <system temp>/gradio), which Gradio serves without copying. Every
`frequency` seconds `keep_clean` deletes the files Gradio was handed (uploads, the demo's files,
Gradio's own) once older than `age`, then the demo's emptied folders. The Blocks also get
`delete_cache=settings()`, so Gradio deletes its files when the server stops; its own scheduled
pass is not enough: in Gradio 6.31 it walks the live sets of files and stops for good the first
time a request adds a file meanwhile ("Set changed size during iteration", in a task nobody
awaits), which the soak (benchmarks/demo_soak.py) hit within two minutes. A visitor's last result
(the gr.State behind zoom clicks and RD curves) lives as long as its files.

CWIC_CACHE_FREQUENCY (default 300) and CWIC_CACHE_AGE (default 1800) set the schedule in seconds:
a file is deleted between `age` and `age + frequency` seconds after it was written.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import gradio as gr
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
    """A new folder for one request's files (`kind` without a '-'), in Gradio's cache."""
    root = Path(get_upload_folder())
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-{int(time.time())}-", dir=root))


def delete_old_files(demo: gr.Blocks, age: int, now: float | None = None) -> None:
    """Gradio's delete_cache pass, safe while requests add files: every file the Blocks handed out,
    older than `age` (by ctime, as Gradio ages them), except the ones Gradio keeps (the examples)."""
    now = time.time() if now is None else now
    keep = set().union(*(getattr(block, "keep_in_cache", set()) for block in list(demo.blocks.values())))
    for files in list(demo.temp_file_sets):
        for path in list(files):  # a snapshot (copied under the GIL): requests add files meanwhile
            if path in keep:
                continue
            try:
                if now - os.lstat(path).st_ctime > age:
                    os.remove(path)
                    files.discard(path)
            except FileNotFoundError:
                files.discard(path)
            except OSError as e:  # e.g. a permission problem: leave it, say so, keep going
                print(f"cwic demo: cannot delete {path}: {e}", file=sys.stderr)


def sweep(root: Path, frequency: int, age: int, now: float | None = None) -> None:
    """Remove the demo's folders under `root` that are older than `age` and empty (their files were
    deleted), and those older than `age + 2 * frequency` whatever they still hold: by then every file
    handed to Gradio is deleted, so what is left (a request that failed halfway) no visitor can
    download. A folder younger than `age` is never touched: its request may still be writing.
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


def keep_clean(demo: gr.Blocks) -> threading.Thread:
    """Start the schedule of `settings()` for `demo` in a daemon thread: old files, then emptied folders."""
    frequency, age = settings()

    def loop() -> None:
        while True:
            time.sleep(frequency)
            try:
                delete_old_files(demo, age)
                sweep(Path(get_upload_folder()), frequency, age)
            except Exception as e:  # noqa: BLE001 (the schedule must outlive any one bad pass)
                print(f"cwic demo: cache cleanup failed, retrying in {frequency} s: {e!r}", file=sys.stderr)

    thread = threading.Thread(target=loop, name="cwic-cache-cleanup", daemon=True)
    thread.start()
    return thread
