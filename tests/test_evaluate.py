"""`cwic evaluate`: the results.json layout, plots, BD-rate table and bad input, on small images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cwic.evaluation import baselines, evaluate

KODAK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak"
CURVE_KEYS = {"bpp", "psnr-rgb", "ssim-rgb", "ms-ssim-rgb"}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("imgs")
    for i, name in enumerate(("kodim05.png", "kodim23.png")):
        if (KODAK / name).exists():
            rgb = np.asarray(Image.open(KODAK / name).convert("RGB"))[64:160, 96:224]
        else:
            yy, xx = np.mgrid[0:96, 0:128]
            rgb = np.stack([(xx * (2 + i)) % 256, (yy * 3) % 256, (xx + yy) % 256], -1).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"img{i}.png")
    return folder


def _codec_or_skip():
    from cwic import Codec
    from cwic.errors import CwicError

    try:
        return Codec.load()
    except CwicError as e:
        pytest.skip(f"no usable checkpoint: {e}")


def _check_layout(out: Path, codecs: list[str], n_images: int) -> dict:
    results = json.loads((out / "results.json").read_text())
    assert set(results["images"]) == {"img0.png", "img1.png"} and len(results["images"]) == n_images
    assert {"Pillow", "openjpeg", "libwebp", "libavif", "libjpeg-turbo"} <= set(results["encoders"])
    for key, curve in results["curves"].items():
        assert set(curve) >= {"name", "description", "results"}, key
        assert set(curve["results"]) == CURVE_KEYS, key
        n = len(curve["results"]["bpp"])
        assert all(len(v) == n for v in curve["results"].values())
        assert curve["results"]["ms-ssim-rgb"] == [None] * n  # 96x128 is too small for MS-SSIM
        assert curve["points"] == sorted(curve["points"]) and len(curve["points"]) == n
    for row in results["rows"]:
        assert row["image"] in results["images"] and row["codec"] in codecs
        size = results["images"][row["image"]]
        assert row["bpp"] == pytest.approx(row["bytes"] * 8 / (size["width"] * size["height"]))
        assert row["ms-ssim-rgb"] is None and 0 < row["ssim-rgb"] <= 1
    for name in ("rd_psnr.png", "rd_ssim.png", "rd_msssim.png", "bdrate.md", "bdrate.json"):
        assert (out / name).stat().st_size > 0, name
    return results


def test_classical_sweeps_without_a_model(images, tmp_path):
    out = tmp_path / "out"
    assert evaluate.main(["--images", str(images), "--out", str(out), "--codecs", "jpeg", "webp"]) == 0
    results = _check_layout(out, ["jpeg", "webp"], 2)
    assert set(results["curves"]) == {"jpeg-sweep", "webp-sweep"}
    assert len(results["rows"]) == 2 * sum(len(baselines.SPECS[c].sweep) for c in ("jpeg", "webp"))


def test_full_run_with_cwic(images, tmp_path):
    codec = _codec_or_skip()
    levels = [codec.levels[0]["level"], codec.levels[-1]["level"]]
    out = tmp_path / "out"
    argv = ["--images", str(images), "--out", str(out), "--levels", *map(str, levels), "--no-sweep"]
    assert evaluate.main(argv + ["--codecs", "cwic", "cwic-uniform", "jpeg", "jpeg2000"]) == 0
    results = _check_layout(out, ["cwic", "cwic-uniform", "jpeg", "jpeg2000"], 2)
    assert set(results["curves"]) == {"cwic", "cwic-uniform", "jpeg", "jpeg2000"}
    assert results["curves"]["cwic"]["points"] == levels
    cwic = {(r["image"], r["level"]): r for r in results["rows"] if r["codec"] == "cwic"}
    for r in (r for r in results["rows"] if r["kind"] == "matched"):
        assert r["target_bpp"] == cwic[r["image"], r["level"]]["bpp"]
    assert "jpeg2000" in results["bdrate"]["matched"] and "cwic" in results["bdrate"]["matched"]["jpeg"]
    assert set(results["bdrate"]["ablation"]["cwic-uniform"]["cwic"]) == {"psnr-rgb", "ssim-rgb", "ms-ssim-rgb"}
    md = (out / "bdrate.md").read_text()
    assert "| cwic |" in md and "## Content weighting against its ablation" in md
    per_level = [line.split(" | ")[:2] for line in md.splitlines() if line.startswith(f"| {levels[-1]} | ")]
    assert [cells[1] for cells in per_level] == ["cwic", "cwic, uniform importance (ablation)", "JPEG", "JPEG 2000"]


def test_bad_input_exits_2(tmp_path, capsys):
    assert evaluate.main(["--images", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert evaluate.main(["--images", str(tmp_path), "--out", str(tmp_path / "o"), "--codecs", "jpeg"]) == 2
    err = capsys.readouterr().err
    assert err.count("cwic evaluate:") == 2 and "Traceback" not in err


def test_rate_matching_without_cwic_is_refused_rather_than_writing_no_rows(images, tmp_path, capsys):
    argv = ["--images", str(images), "--out", str(tmp_path / "o"), "--no-sweep", "--codecs", "cwic-uniform", "jpeg2000"]
    assert evaluate.main(argv) == 2
    assert "jpeg2000 can only be rate-matched to cwic's levels" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_bench_times_every_codec(images, tmp_path, capsys):
    from cwic.evaluation import bench

    _codec_or_skip()
    out = tmp_path / "bench.json"
    assert bench.main(["--image", str(images / "img0.png"), "--repeat", "1", "--json", str(out)]) == 0
    table = json.loads(out.read_text())
    assert [r["codec"] for r in table["rows"]] == ["cwic", "jpeg", "jpeg2000", "webp", "avif"]
    assert table["cpu_count"] >= 1 and all(r["encode_ms"] > 0 and r["decode_ms"] > 0 for r in table["rows"])
    assert "cpu cores" in capsys.readouterr().out
    assert bench.main(["--image", str(images / "img0.png"), "--level", "99"]) == 2


def test_image_the_codec_rejects_exits_2(tmp_path, capsys):
    _codec_or_skip()
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(tmp_path / "tiny.png")
    argv = ["--images", str(tmp_path), "--out", str(tmp_path / "o"), "--levels", "1", "--codecs", "cwic"]
    assert evaluate.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("cwic evaluate: tiny.png:") and "Traceback" not in err


def test_refined_codecs_and_their_ablation(images, tmp_path, capsys):
    codec = _codec_or_skip()
    levels = [str(codec.levels[1]["level"]), str(codec.levels[3]["level"])]
    out = tmp_path / "out"
    argv = ["--images", str(images), "--out", str(out), "--levels", *levels, "--no-sweep", "--refine-steps", "3"]
    codecs = ["cwic", "cwic-uniform", "cwic-refined", "cwic-uniform-refined"]
    assert evaluate.main(argv + ["--codecs", *codecs]) == 0
    results = _check_layout(out, codecs, 2)
    assert results["refine"] == {"steps": 3, "metrics": ["psnr", "ssim"]}
    assert "3 refinement steps for psnr+ssim" in results["curves"]["cwic-refined"]["description"]
    assert set(results["bdrate"]["ablation"]) == {"cwic-uniform", "cwic-uniform-refined"}
    md = (out / "bdrate.md").read_text()
    assert "| cwic, refined codes | cwic, uniform importance, refined codes |" in md
    assert evaluate.main(argv[:-2] + ["--refine-steps", "0", "--codecs", "cwic-refined"]) == 2
    assert "--refine-steps must be in [1, 1000]" in capsys.readouterr().err


def _stopped_at_second_image(argv: list[str], monkeypatch) -> None:
    """Run `cwic evaluate` until it is killed on img1.png, as a session's end would."""
    real = evaluate._evaluate_image

    def stops_at_second(a):
        if a[1].name == "img1.png":
            raise KeyboardInterrupt
        return real(a)

    monkeypatch.setattr(evaluate, "_evaluate_image", stops_at_second)
    with pytest.raises(KeyboardInterrupt):
        evaluate.main(argv)


def test_a_stopped_run_resumes_from_its_finished_images(images, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    argv = ["--images", str(images), "--out", str(out), "--codecs", "jpeg"]
    assert evaluate.main(argv + ["--out", str(tmp_path / "whole")]) == 0
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    real, seen = evaluate._evaluate_image, []
    _stopped_at_second_image(argv, monkeypatch)
    lines = (out / evaluate.PARTIAL).read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])[0] == "img0.png"
    with (out / evaluate.PARTIAL).open("a") as f:
        f.write('["img1.png", {"wid')  # a line torn by the kill
    monkeypatch.setattr(evaluate, "_evaluate_image", lambda a: seen.append(a[1].name) or real(a))
    assert evaluate.main(argv) == 0
    assert seen == ["img1.png"] and "resuming, 1 of 2 images" in capsys.readouterr().err
    results = _check_layout(out, ["jpeg"], 2)
    assert results["resumed_images"] == 1 and not (out / evaluate.PARTIAL).exists()
    assert results["rows"] == whole["rows"] and results["curves"] == whole["curves"]


def test_a_partial_run_of_other_settings_is_not_reused(images, tmp_path, monkeypatch):
    out = tmp_path / "out"
    argv = ["--images", str(images), "--out", str(out), "--codecs", "jpeg"]
    real, seen = evaluate._evaluate_image, []
    _stopped_at_second_image(argv, monkeypatch)
    assert len((out / evaluate.PARTIAL).read_text().splitlines()) == 2
    monkeypatch.setattr(evaluate, "_evaluate_image", lambda a: seen.append(a[1].name) or real(a))
    assert evaluate.main(argv[:-1] + ["webp"]) == 0
    assert seen == ["img0.png", "img1.png"]
    assert {r["codec"] for r in json.loads((out / "results.json").read_text())["rows"]} == {"webp"}


def test_out_that_is_a_file_exits_2(images, tmp_path, capsys):
    (tmp_path / "o").write_text("")
    assert evaluate.main(["--images", str(images), "--out", str(tmp_path / "o"), "--codecs", "jpeg"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def _fake_results(uniform_bpp_scale: float, weights_id: str = "abc") -> dict:
    """A results dict as `cwic evaluate` writes it, for two images and four levels of cwic and its ablation."""
    rows = []
    for image in ("a.png", "b.png"):
        for codec, scale in (("cwic", 1.0), ("cwic-uniform", uniform_bpp_scale)):
            for k in range(1, 5):
                q = {"psnr-rgb": 20.0 + 2 * k, "ssim-rgb": 0.5 + 0.1 * k, "ms-ssim-rgb": 0.6 + 0.08 * k}
                rows.append({"image": image, "codec": codec, "kind": "level", "level": k, "bpp": 0.1 * k * scale, **q})
    curves = evaluate.make_curves(rows, 2)
    return {
        "images": {"a.png": {}, "b.png": {}},
        "codecs": ["cwic", "cwic-uniform"],
        "levels": [1, 2, 3, 4],
        "tolerance": 0.02,
        "refine": {"steps": 20, "metrics": ["psnr"]},
        "encoders": {},
        "checkpoint": {"weights_id": weights_id},
        "elapsed_s": 10.0,
        "rows": rows,
        "curves": curves,
        "bdrate": evaluate.bdrate_table(curves),
    }


def test_merge_results_replaces_one_codecs_rows_and_recomputes_the_bdrates(tmp_path):
    from benchmarks.merge_results import main, merge

    base, new = _fake_results(1.0), _fake_results(0.9)
    merged = merge(base, new, ["cwic-uniform"], same_pixels=True, source="new.json")
    assert [r["bpp"] for r in merged["rows"] if r["codec"] == "cwic"] == [r["bpp"] for r in base["rows"][:4] * 2]
    assert merged["curves"]["cwic-uniform"] == new["curves"]["cwic-uniform"]
    assert merged["bdrate"]["ablation"]["cwic-uniform"]["cwic"]["psnr-rgb"] == pytest.approx(100 / 0.9 - 100)
    assert merged["merged"][0]["max_quality_change"] == {"psnr-rgb": 0, "ssim-rgb": 0, "ms-ssim-rgb": 0}
    with pytest.raises(SystemExit, match="different checkpoints"):
        merge(base, _fake_results(0.9, weights_id="other"), ["cwic-uniform"], False, "x")
    changed = _fake_results(0.9)
    changed["rows"][5]["psnr-rgb"] += 0.1
    with pytest.raises(SystemExit, match="1 rows changed quality"):
        merge(base, changed, ["cwic-uniform"], True, "x")
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "new.json").write_text(json.dumps(new))
    assert main([str(tmp_path / "base.json"), str(tmp_path / "new.json"), "--codecs", "cwic-uniform"]) == 0
    assert json.loads((tmp_path / "results.json").read_text())["merged"][0]["from"].endswith("new.json")
