"""How long the demo keeps what it makes (demo/cache.py): Gradio's delete_cache, the request folders, the State."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

gr = pytest.importorskip("gradio")
from gradio import processing_utils  # noqa: E402 (after the importorskip)
from gradio.state_holder import StateHolder  # noqa: E402

from demo import cache  # noqa: E402


def test_settings_come_from_the_environment():
    assert cache.settings({}) == (cache.DEFAULT_FREQUENCY, cache.DEFAULT_AGE) == (300, 1800)
    assert cache.settings({"CWIC_CACHE_FREQUENCY": "30", "CWIC_CACHE_AGE": " 60 "}) == (30, 60)
    for bad in ("0", "-5", "1.5", "soon"):
        with pytest.raises(ValueError, match=f"CWIC_CACHE_AGE must be a whole number of seconds > 0, got '{bad}'"):
            cache.settings({"CWIC_CACHE_AGE": bad})


def _folder(root, kind: str, created: int, files: tuple[str, ...] = ()):
    folder = root / f"cwic-{kind}-{created}-abc"
    (folder / "view").mkdir(parents=True)
    for name in files:
        (folder / name).write_bytes(b"x")
    return folder


def test_sweep_removes_only_old_emptied_or_abandoned_folders(tmp_path):
    now, frequency, age = 10_000, 30, 60
    young = _folder(tmp_path, "demo", now - age + 1)  # its request may still be writing
    emptied = _folder(tmp_path, "demo", now - age - 1)  # Gradio deleted its files
    in_use = _folder(tmp_path, "zoom", now - age - 1, ("zoom0.png",))  # not yet deleted by Gradio
    abandoned = _folder(tmp_path, "demo", now - age - 2 * frequency - 1, ("image.cwic", "view/original.png"))
    gradio_own = tmp_path / "0123abcd"  # a folder of Gradio's: never touched
    gradio_own.mkdir()
    cache.sweep(tmp_path, frequency, age, now=now)
    assert young.is_dir() and not emptied.exists() and not abandoned.exists() and gradio_own.is_dir()
    assert (in_use / "zoom0.png").is_file() and not (in_use / "view").exists()


def test_gradio_serves_request_files_without_a_copy_and_they_are_deleted(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    folder = cache.request_folder("demo")
    assert folder.parent == tmp_path and folder.name.startswith("cwic-demo-")
    path, example = folder / "image.cwic", tmp_path / "example.png"
    path.write_bytes(b"cwic")
    example.write_bytes(b"png")
    with gr.Blocks() as demo:
        files = gr.File()
    served = processing_utils.move_files_to_cache({"path": str(path), "meta": {"_type": "gradio.FileData"}}, files)
    assert served["path"] == str(path) and str(path) in files.temp_files  # no copy, and Gradio knows it
    files.temp_files.add(str(example))
    files.keep_in_cache.add(str(example))  # as Gradio marks the examples
    cache.delete_old_files(demo, age=60)
    assert path.exists()  # younger than the age
    cache.delete_old_files(demo, age=60, now=time.time() + 61)
    assert not path.exists() and str(path) not in files.temp_files and example.exists()
    cache.sweep(tmp_path, 30, 60, now=int(folder.name.split("-")[2]) + 61)
    assert not folder.exists()


def test_deleting_while_requests_add_files(tmp_path):
    """Gradio's own pass stops at the first file added meanwhile; this one goes on."""
    with gr.Blocks() as demo:
        files = gr.File()
    for i in range(2000):
        (tmp_path / f"old{i}").touch()
        files.temp_files.add(str(tmp_path / f"old{i}"))
    stop = threading.Event()

    def request():
        i = 0
        while not stop.is_set():
            files.temp_files.add(str(tmp_path / f"new{i}"))  # never written: a file deleted meanwhile
            i += 1

    adder = threading.Thread(target=request)
    adder.start()
    try:
        cache.delete_old_files(demo, age=60, now=time.time() + 61)
    finally:
        stop.set()
        adder.join()
    assert not any(tmp_path.glob("old*")) and not any(p.startswith(str(tmp_path / "old")) for p in files.temp_files)


def test_a_leaving_visitor_frees_their_result(monkeypatch):
    monkeypatch.setenv("CWIC_CACHE_FREQUENCY", "7")
    monkeypatch.setenv("CWIC_CACHE_AGE", "11")
    from cwic import Codec
    from demo.ui import build_demo

    demo = build_demo({"cwic-slim": Codec.load()})
    assert demo.delete_cache == (7, 11)
    (state,) = [b for b in demo.blocks.values() if isinstance(b, gr.State)]
    assert state.time_to_live == 11
    holder = StateHolder()
    holder.set_blocks(demo)
    holder["visitor"][state._id] = "a result"
    (unload,) = [fn for fn in demo.fns.values() if any(t[1] == "unload" for t in fn.targets)]
    unload.fn(SimpleNamespace(session_hash="visitor"))
    assert state._id not in holder["visitor"].state_data
