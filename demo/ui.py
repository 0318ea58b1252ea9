"""The Gradio Blocks of the cwic demo: where a learned codec spends its bits, against JPEG and
JPEG 2000 at the same file size. The logic lives in demo/compare.py, inputs.py, maps.py and
rd_curves.py; this file only lays it out."""

from __future__ import annotations

import base64
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import skimage.data

from cwic.errors import CwicError
from demo import cache, compare, inputs, maps, rd_curves

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
_SKIMAGE_DIR = Path(skimage.data.__file__).resolve().parent
EXAMPLES = sorted(str(p) for p in EXAMPLES_DIR.glob("kodim*.png")) + [
    str(_SKIMAGE_DIR / name) for name in ("astronaut.png", "coffee.png") if (_SKIMAGE_DIR / name).exists()
]

INTRO = """\
# cwic: where does a learned codec spend its bits?
cwic is a learned image codec after *Learning Convolutional Networks for Content-weighted Image
Compression* (Li et al., CVPR 2018). Its encoder turns the image into binary codes, and a small
**importance map** decides, for every 8×8 block, how many of those codes to keep: more for edges
and texture, fewer for flat sky. Pick an image and a rate, press **Compress**, and compare the real
`.cwic` file with JPEG and JPEG 2000 files **of the same size**.
"""

REFINE_INFO = (
    "0: the encoder's own codes. Each step runs the decoder forward and backward on this image and nudges "
    "the codes toward better PSNR and SSIM at the model's own rate–distortion price: a better picture at "
    "nearly the same size, for a slower encode. The decoder and the file format do not change."
)

EXPLAIN_MAPS = """\
**Importance map** (left): the network's estimate of how much each block needs, p in [0, 1].
**Channels kept** (middle): p quantized to 16 levels; a block at level q keeps the first 4·(q+1)
of the 64 code channels, the rest are never sent. **cwic: bits per pixel**: what the entropy
coder actually spent on each 8×8 block (map bits included) over its 64 pixels; the total is the
file's payload. **JPEG: bits per pixel, by MCU** (right): the same for the JPEG file below, read
from its Huffman codes; each MCU (the 16×16 pixels that share one pair of colour blocks) is one
colour. Both use one colour scale, so the same colour means the same spending.
Tick *uniform importance map* to see the paper's ablation: the same model and mean rate, with the
same number of channels everywhere. Content weighting is not free: the map is part of the file
(on Kodak 17–18 % of the default's files at levels 1–2, 8 % at level 4), while a uniform map is
one number (4 bytes): compare the two files' size and quality below.
"""

EXPLAIN_LEVELS = """\
**The map across rates**: the channels kept per 8×8 block at every level of this image (the
level of the file above, if it was made at one, is framed in red). Channels kept rather than p:
they are exactly what each level's file sends (a block at p = 0.01 and one at p = 0.06 both keep
4), and with one colour per importance level the same colour means the same channels in every
panel. Only the importance network sees the rate, so the strip reuses the encoder pass of the
file above. Watch where the first channels go at level 1 (the strongest edges), what mid-scale
structure joins by levels 3 and 4, and what fine texture fills in by level 5; at the top level
nearly every block keeps every channel.
"""

EXPLAIN_CLASSICAL = """\
Each classical codec is searched for the setting whose real file matches the cwic file size
(within 2 %; otherwise the largest file below it). Same bytes, different pictures: look at edges,
faces and textures. Click an image to enlarge it.
"""


def _raw_upload(payload):
    """Preprocess of the input image: the uploaded file, unopened (bytes for a data: URL).

    gr.Image would open it with Pillow first, so broken files and decompression bombs would end in
    a generic error; inputs.prepare_image gives the user a clear message instead.
    """
    if payload is None:
        return None
    if payload.url and payload.url.startswith("data:"):
        return base64.b64decode(payload.url.split(",", 1)[1])
    return payload.path


def _level_info(codec) -> str:
    parts = [f"{lv['level']}: {lv['bpp']:.2f}" for lv in codec.levels if lv.get("bpp") is not None]
    return "mean bpp on Kodak per level: " + ", ".join(parts) if parts else "1 = fewest bits"


# the demo's words for each `cwic train --distortion` (cwic.training.distortion.DISTORTIONS)
_TRAINED_FOR = {
    "mse": "trained on MSE",
    "ms-ssim": "fine-tuned on MS-SSIM (higher SSIM, softer PSNR)",
    "mse+ssim": "fine-tuned on PSNR + SSIM",
    "mse+ssim+ms-ssim": "fine-tuned on PSNR + SSIM + MS-SSIM (higher SSIM, softer PSNR)",
    "ssim+ms-ssim": "fine-tuned on SSIM + MS-SSIM (higher SSIM, softer PSNR)",
}


def describe(codec) -> str:
    """What a checkpoint was trained for: the distortion of the last session in its model card."""
    training = codec.card.get("training", {})
    sessions = training.get("sessions") or [{}]
    distortion = sessions[-1].get("args", {}).get("distortion") or "mse"
    what = _TRAINED_FOR.get(distortion, f"fine-tuned on {distortion}")
    steps = training.get("steps")
    return f"{what}, {steps:,} steps" if steps else what


def _model_info(codecs: dict) -> str:
    return "; ".join(f"{name}: {describe(c)}" for name, c in codecs.items())


def _roi_explanation(codec) -> str:
    """What painting does depends on the checkpoint: a mean-shifted map moves bits, an older one adds them."""
    how = (
        "Paint over a face or some text, then press **Compress**: cwic raises the importance there "
        "(p' = p + roi·(1 − p))"
    )
    if codec.model.config.mean_shift:
        return how + (
            " before the map is shifted back to the level's mean, so the file stays about the same size and "
            "the bits map shows the bits move from the rest of the image into the painted region."
        )
    return how + (
        " and the bits map shows them move. At a fixed level the file grows; with a target bpp the total "
        "stays put and the rest of the image pays for it."
    )


def _pick(codecs: dict, model: str | None):
    """The codec a request names (None: the first, the default); a clear error for an unknown name."""
    if model is None:
        return next(iter(codecs.items()))
    if model not in codecs:
        raise gr.Error(f"unknown model {model!r}; choose from {list(codecs)}")
    return model, codecs[model]


def make_handler(codecs: dict):
    """The event function behind the Compress button (and the `compress` API endpoint)."""

    def run(image, mode, level, bpp, classical, uniform, roi=None, model=None, refine=0, progress=gr.Progress()):  # noqa: B008
        name, codec = _pick(codecs, model)
        try:
            rgb, note = inputs.prepare_image(image)
            kwargs = {"bpp": float(bpp)} if mode == "target bpp" else {"level": int(level)}
            mask = inputs.roi_from_editor(roi, rgb.shape[:2])
            comp = compare.compare(
                codec,
                rgb,
                classical=list(classical or []),
                uniform=bool(uniform),
                roi=mask,
                refine=int(refine or 0),
                progress=progress,
                **kwargs,
            )
        except (CwicError, ValueError) as e:
            raise gr.Error(str(e)) from e
        comp = dataclasses.replace(comp, model=name)
        if "bpp" in kwargs:
            note = " ".join(filter(None, [note, compare.target_note(comp.cwic.bpp(), kwargs["bpp"])]))
        folder = cache.request_folder("demo")
        view = folder / "view"
        view.mkdir()
        tiles = maps.zoom_tiles(comp, maps.zoom_box(comp.compressed.bits_per_block, rgb.shape[:2]))
        strip = maps.level_strip(comp, codec)  # torch (both cores) before the PNG writes share them
        with ThreadPoolExecutor(compare.WORKERS) as pool:  # PNG writes run while matplotlib draws the maps

            def png(image, name: str):
                return pool.submit(compare.png_file, image, view / name)

            written = pool.submit(compare.write_files, comp, folder)
            original = png(comp.original, "original.png")
            shown = [png(r.image, f"codec{i}.png") for i, r in enumerate(comp.others)]
            zoomed = [png(t, f"zoom{i}.png") for i, (t, _) in enumerate(tiles)]
            drawn = [None if m is None else png(m, f"map{i}.png") for i, m in enumerate(maps.maps(comp))]
            strip = png(strip, "levels.png")
        files, original = written.result(), original.result()
        imp, kept, bits, jpeg_map = (None if job is None else job.result() for job in drawn)
        cwic_png = str(files[1])
        gallery = [(cwic_png, f"cwic · {comp.cwic.bpp():.3f} bpp")]
        for r, path in zip(comp.others, shown, strict=True):
            gallery.append((path.result(), f"{r.name} · {r.bpp():.3f} bpp · {r.scores['psnr']:.2f} dB"))
        zoom = [(path.result(), name) for path, (_, name) in zip(zoomed, tiles, strict=True)]
        return (
            (original, cwic_png),
            compare.summary_markdown(comp),
            note,
            imp,
            kept,
            bits,
            jpeg_map,  # None without JPEG (its panel is hidden then)
            strip.result(),
            gallery,
            compare.metrics_rows(comp),
            [str(p) for p in files],
            zoom,
            comp,
        )

    return run


def _editor_background(image):
    """A fresh region-of-interest canvas over the newly chosen image (as the codec will see it)."""
    try:
        rgb, _ = inputs.prepare_image(image)
    except CwicError:
        return None  # the Compress button reports what is wrong with the upload
    return {"background": rgb, "layers": [], "composite": None}


def zoom_at(comp, evt: gr.SelectData):
    """A click on one of the maps: the zoomed crops move to the clicked block."""
    if comp is None:
        raise gr.Error("Compress an image first.")
    box = maps.zoom_box_at(evt.index, comp.original.shape[:2])
    if box is None:  # the colour bar or the title
        return gr.skip()
    folder = cache.request_folder("zoom")
    return [
        (compare.png_file(t, folder / f"zoom{i}.png"), name) for i, (t, name) in enumerate(maps.zoom_tiles(comp, box))
    ]


def make_rd_handler(codecs: dict):
    """The event function behind "Plot RD curves": every level and quality sweep on the last image."""

    def run(comp, progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
        if comp is None:
            raise gr.Error("Compress an image first; the curves are measured on it.")
        _, codec = _pick(codecs, comp.model or None)
        classical = [r.name for r in comp.others if r.name in compare.CLASSICAL]
        uniform = any(r.name == "cwic (uniform map)" for r in comp.others)
        curves = rd_curves.rd_points(codec, comp.original, classical, uniform, progress=progress)
        return rd_curves.rd_plot(curves, comp)

    return run


def build_demo(codecs: dict) -> gr.Blocks:
    """The whole demo for the loaded codecs, {name: Codec}, the default first (load them once, at startup)."""
    codec = next(iter(codecs.values()))
    n_levels = min(len(c.levels) for c in codecs.values())
    keep = cache.settings()  # (frequency, age) of the cleanup (demo/cache.py); Gradio's own runs at shutdown
    with gr.Blocks(title="cwic: content-weighted image compression", delete_cache=keep) as demo:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                image = gr.Image(
                    type="filepath",
                    label="Image (PNG, JPEG, WebP, TIFF, BMP)",
                    sources=["upload", "clipboard"],
                    format="png",
                    height=300,
                    elem_id="input-image",
                )
                image.preprocess = _raw_upload  # an instance attribute: a subclass would make Gradio write a .pyi
                gr.Examples(EXAMPLES, inputs=image, label="Examples (Kodak, scikit-image)", examples_per_page=8)
                model = gr.Radio(
                    list(codecs),
                    value=next(iter(codecs)),
                    label="Model",
                    info=_model_info(codecs),
                    visible=len(codecs) > 1,
                    elem_id="model",
                )
                mode = gr.Radio(["cwic level", "target bpp"], value="cwic level", label="Rate control", elem_id="mode")
                level = gr.Slider(
                    1,
                    n_levels,
                    value=min(3, n_levels),
                    step=1,
                    label="cwic level",
                    info=_level_info(codec),
                    elem_id="level",
                )
                bpp = gr.Slider(0.05, 1.5, value=0.3, step=0.01, label="target bpp (bits per pixel)")
                classical = gr.CheckboxGroup(
                    list(compare.CLASSICAL),
                    value=list(compare.DEFAULT_CLASSICAL),
                    label="Compare with",
                    elem_id="classical",
                )
                uniform = gr.Checkbox(False, label="Also show a uniform importance map (no content weighting)")
                refine = gr.Slider(
                    0,
                    40,
                    value=0,
                    step=5,
                    label="encoder-side refinement steps",
                    info=REFINE_INFO,
                    elem_id="refine",
                )
                button = gr.Button("Compress", variant="primary", elem_id="compress-button")
                note = gr.Markdown(elem_id="note")
            with gr.Column(scale=2):
                slider = gr.ImageSlider(
                    label="original ◀ ▶ cwic reconstruction (drag)", format="png", max_height=560, elem_id="slider"
                )
                summary = gr.Markdown("Press **Compress** to see the numbers.", elem_id="summary")
        with gr.Accordion("Paint where the bits should go (region of interest)", open=False):
            gr.Markdown(_roi_explanation(codec))
            roi = gr.ImageEditor(
                type="numpy",
                format="png",
                layers=False,
                transforms=(),
                sources=(),
                brush=gr.Brush(colors=["#ff2d55"], color_mode="fixed", default_size=20),
                label="region of interest (paint)",
                height=380,
                elem_id="roi",
            )
        gr.Markdown("## Where the bits go")
        gr.Markdown(EXPLAIN_MAPS)
        with gr.Row():
            imp = gr.Image(label="importance map", format="png", elem_id="importance-map")
            kept = gr.Image(label="channels kept", format="png", elem_id="kept-map")
            bits = gr.Image(label="cwic: bits per pixel, by 8×8 block", format="png", elem_id="bits-map")
            jpeg_map = gr.Image(label="JPEG: bits per pixel, by MCU", format="png", elem_id="jpeg-bits-map")
        gr.Markdown(EXPLAIN_LEVELS)
        strip = gr.Image(label="channels kept at every level", format="png", elem_id="level-strip")
        gr.Markdown("## Same file size, classical codecs")
        gr.Markdown(EXPLAIN_CLASSICAL)
        gallery = gr.Gallery(
            label="decoded images at the cwic file size",
            format="png",
            columns=3,
            object_fit="contain",
            height=420,
            elem_id="gallery",
        )
        gr.Markdown(
            "### Zoom: the region where cwic spent the most bits\n"
            "The same crop of every decoded image, enlarged 3× with square pixels. "
            "Click anywhere on one of the maps above to zoom there instead."
        )
        zoom = gr.Gallery(label="zoomed crops", format="png", columns=5, height=300, elem_id="zoom")
        table = gr.Dataframe(headers=compare.METRIC_HEADERS, label="measured on this image", elem_id="metrics")
        files = gr.File(
            label="downloads: the .cwic file, its decoded PNG, and each codec's file", file_count="multiple"
        )

        with gr.Accordion("Rate–distortion curves for this image", open=False):
            gr.Markdown(
                "Every cwic level and a quality sweep of each classical codec on this image, with the "
                "comparison above marked and published Kodak means for context. Takes a while on a CPU."
            )
            rd_button = gr.Button("Plot RD curves for this image", elem_id="rd-button")
            rd = gr.Image(label="rate–distortion on this image", format="png", elem_id="rd-plot")
        last = gr.State(None, time_to_live=keep[1])  # the result behind zoom clicks: as long as its files

        controls = [image, mode, level, bpp, classical, uniform, roi, model, refine]
        outputs = [slider, summary, note, imp, kept, bits, jpeg_map, strip, gallery, table, files, zoom, last]
        button.click(make_handler(codecs), controls, outputs, api_name="compress")
        for panel in (imp, kept, bits, jpeg_map):
            panel.select(zoom_at, last, zoom, api_name=False)
        rd_button.click(make_rd_handler(codecs), last, rd, api_name=False)  # needs the session's State
        # JPEG's bits map only when JPEG is compared (the API's output stays a file path, or None).
        classical.change(
            lambda c: gr.update(visible="JPEG" in (c or [])), classical, jpeg_map, api_name=False, queue=False
        )
        image.change(_editor_background, image, roi, api_name=False, queue=False)
        # Moving a rate control selects it, so the rate used is always the one last touched.
        level.input(lambda: "cwic level", None, mode, api_name=False, queue=False)
        bpp.input(lambda: "target bpp", None, mode, api_name=False, queue=False)
        model.change(lambda m: gr.update(info=_level_info(codecs[m])), model, level, api_name=False, queue=False)

        def forget(request: gr.Request) -> None:
            """A visitor left: free their result now (Gradio keeps a closed session's State for an hour)."""
            demo.state_holder.delete_state(request.session_hash)

        demo.unload(forget)
    return demo
