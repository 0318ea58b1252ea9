"""How long the demo keeps what it makes (demo/cache.py): Gradio's delete_cache, the request folders, the State."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

gr = pytest.importorskip("gradio")
from gradio import processing_utils, route_utils  # noqa: E402 (after the importorskip)
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


def test_gradio_serves_request_files_without_a_copy_and_deletes_them(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    monkeypatch.setenv("CWIC_CACHE_AGE", "60")
    folder = cache.request_folder("demo")
    assert folder.parent == tmp_path and folder.name.startswith("cwic-demo-")
    path = folder / "image.cwic"
    path.write_bytes(b"cwic")
    with gr.Blocks() as demo:
        files = gr.File()
    served = processing_utils.move_files_to_cache({"path": str(path), "meta": {"_type": "gradio.FileData"}}, files)
    assert served["path"] == str(path) and str(path) in files.temp_files  # no copy; Gradio will delete it
    route_utils.delete_files_created_by_app(demo, age=0)  # what delete_cache runs on its schedule
    assert not path.exists() and folder.is_dir()
    cache.sweep(tmp_path, 30, 60, now=int(folder.name.split("-")[2]) + 61)  # and the next request
    assert not folder.exists()


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
