"""The demo as users meet it: `python app.py` in a subprocess, driven through its `compress` API
with gradio_client and in a real browser (Playwright + Debian's Chromium at /usr/bin/chromium).

Set CWIC_SCREENSHOT=docs/demo.png to refresh the README's screenshot from the browser test.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "demo" / "examples" / "kodim23.png"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """`python app.py` on a free localhost port, as the README starts it."""
    port = _free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    log = tmp_path_factory.mktemp("app") / "app.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"app.py did not start: {log.read_text()[-2000:]}")
            time.sleep(1)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_compress_api_with_gradio_client(app_url, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    slider, summary, note, imp, kept, bits, jpeg_map, strip, gallery, table, files, zoom = client.predict(
        handle_file(str(EXAMPLE)), "target bpp", 1, 0.25, ["JPEG"], False, api_name="/compress"
    )
    assert "cwic file" in summary and "Downscaled" not in note
    assert [row[0] for row in table["data"]] == ["cwic", "JPEG"]
    cwic_file = Path(files[0])
    assert cwic_file.suffix == ".cwic" and cwic_file.stat().st_size == table["data"][0][1]
    assert all(Path(p).suffix == ".png" for p in (imp, kept, bits, jpeg_map, strip, *slider))  # never lossy WebP
    assert [item["caption"] for item in zoom] == ["original", "cwic", "JPEG"]

    # every shipped checkpoint is offered; the model parameter picks one by name
    last = sorted(p.name for p in (ROOT / "checkpoints").iterdir() if (p / "model.json").is_file())[-1]
    out = client.predict(handle_file(str(EXAMPLE)), "cwic level", 1, 0.3, [], False, model=last, api_name="/compress")
    assert f"model {last}" in out[1]

    bad = tmp_path / "broken.png"
    bad.write_bytes(EXAMPLE.read_bytes()[:2000])
    with pytest.raises(Exception, match="broken.png is truncated or corrupt"):
        client.predict(handle_file(str(bad)), "cwic level", 1, 0.3, ["JPEG"], False, api_name="/compress")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"Debian's chromium is not installed ({CHROMIUM} missing)")
def test_browser_upload_compress_and_change_rate(app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    bad = tmp_path / "not-an-image.png"
    bad.write_text("hello")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app_url)
        page.wait_for_selector("#compress-button", timeout=60_000)

        # A broken upload: a clear message, and the app keeps serving.
        page.locator("#input-image input[type=file]").set_input_files(str(bad))
        page.click("#compress-button")
        message = page.get_by_text("not-an-image.png is not an image this demo can read")
        expect(message).to_be_visible(timeout=60_000)
        page.locator(".toast-close").first.click()
        expect(message).to_be_hidden()

        # An example, compressed: every panel fills in.
        page.locator(".gallery-item").filter(has=page.locator("img[src*='kodim23']")).click()
        # (the broken upload's <img> is there already: wait until the example has replaced it)
        expect(page.locator("#input-image img")).to_have_attribute("src", re.compile("kodim23"), timeout=30_000)
        page.click("#compress-button")
        summary = page.locator("#summary")
        expect(summary).to_contain_text("cwic file", timeout=180_000)
        for panel in ("#slider", "#importance-map", "#kept-map", "#bits-map", "#jpeg-bits-map", "#level-strip"):
            expect(page.locator(f"{panel} img").first).to_be_visible()
        expect(page.locator("#gallery img")).to_have_count(3)
        expect(page.locator("#zoom img")).to_have_count(4)  # original, cwic, JPEG, JPEG 2000
        expect(page.locator("#metrics")).to_contain_text("JPEG 2000")
        first = summary.inner_text()
        bits_src = page.locator("#bits-map img").get_attribute("src")
        strip_src = page.locator("#level-strip img").get_attribute("src")

        # A click on a map moves the zoomed crops there.
        zoom_src = page.locator("#zoom img").first.get_attribute("src")
        page.locator("#bits-map img").click(position={"x": 12, "y": 12})
        expect(page.locator("#zoom img").first).not_to_have_attribute("src", zoom_src, timeout=60_000)
        zoom_src = page.locator("#zoom img").first.get_attribute("src")
        page.locator("#jpeg-bits-map img").click(position={"x": 120, "y": 80})  # JPEG's map too
        expect(page.locator("#zoom img").first).not_to_have_attribute("src", zoom_src, timeout=60_000)

        # Another rate: the numbers and the maps change.
        page.locator("#mode").get_by_text("target bpp").click()
        level = page.locator("#level input[type=number]")
        level.fill("1")
        level.press("Enter")
        expect(page.locator("#mode input[value='cwic level']")).to_be_checked()  # touching the level selects it
        page.click("#compress-button")
        expect(summary).to_contain_text("(level 1,", timeout=180_000)
        assert summary.inner_text() != first
        expect(page.locator("#bits-map img")).not_to_have_attribute("src", bits_src)
        expect(page.locator("#level-strip img")).not_to_have_attribute("src", strip_src)  # level 1 framed now

        # The other checkpoint (when more than one ships), at level 3.
        models = sorted(p.name for p in (ROOT / "checkpoints").iterdir() if (p / "model.json").is_file())
        if len(models) > 1:
            page.locator("#model").get_by_text(models[-1], exact=True).click()
            level.fill("3")
            level.press("Enter")
            page.click("#compress-button")
            expect(summary).to_contain_text(f"model {models[-1]})", timeout=180_000)
            expect(summary).to_contain_text("(level 3,")

        shot = tmp_path / "demo.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 50_000
        if os.environ.get("CWIC_SCREENSHOT"):  # for the README: 1000 px wide, 256 colours, a few hundred kB
            with Image.open(shot) as im:
                small = im.convert("RGB").resize((1000, round(im.height * 1000 / im.width)), Image.Resampling.LANCZOS)
                small.quantize(256, method=Image.Quantize.MEDIANCUT).save(
                    ROOT / os.environ["CWIC_SCREENSHOT"], optimize=True
                )

        # Without JPEG among the codecs, its bits map is hidden.
        page.locator("#classical").get_by_text("JPEG", exact=True).click()
        expect(page.locator("#jpeg-bits-map")).to_be_hidden()
        browser.close()
