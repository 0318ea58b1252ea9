"""Training: a tiny run writes a checkpoint and resumes exactly where it stopped."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from cwic.checkpoint import load_checkpoint, save_checkpoint
from cwic.entropy_models.context_model import BitContext, code_bits, export_int
from cwic.models.config import PRESETS, ModelConfig
from cwic.models.network import ResBlock
from cwic.training.distortion import DISTORTIONS
from cwic.training.export import main as export_main
from cwic.training.train import main as train_main
from cwic.training.train import map_total_variation, parse_args, recipe, scheduled_lr


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:112]
    for i in range(8):
        base = np.stack([(xx * (i + 1)) % 256, (yy * 3) % 256, (xx + yy) % 256], axis=2)
        img = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"photo{i}.jpg", quality=95)
    return folder


@pytest.fixture
def kodak(photos: Path, tmp_path: Path) -> Path:
    """A one-image stand-in for the Kodak folder that `cwic export` checks fp16 on."""
    folder = tmp_path / "kodak"
    folder.mkdir()
    Image.open(next(photos.glob("*.jpg"))).save(folder / "kodim01.png")
    return folder


def _args(photos: Path, out: Path, steps: int) -> list[str]:
    return [
        "--data", str(photos), "--kodak", str(photos / "none"), "--out", str(out), "--preset", "tiny",
        "--steps", str(steps), "--batch", "2", "--patch", "32", "--uniform-steps", "2", "--warmup", "1",
        "--eval-every", "3", "--threads", "1",
    ]  # fmt: skip


def _coded_start(start: Path, kodak: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """A copy of checkpoint `start` with stand-in context models and levels, and the `cwic export`
    options that carry them over to a run trained from it."""
    model, card, _ = load_checkpoint(start)
    coded = save_checkpoint(
        tmp_path / "coded", model, card | {"entropy": {"fitted": "here"}, "levels": [{"level": 1, "rate": 0.5}]},
        extra={"entropy.bits.conv2.w": torch.arange(4, dtype=torch.int32)},
    )  # fmt: skip
    return coded, ["--kodak", str(kodak), "--rates", "0.5", "--entropy-from", str(coded)]


def test_resume_continues_the_same_run(photos: Path, tmp_path: Path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train_main(_args(photos, straight, 5)) == 0
    assert train_main(_args(photos, split, 3)) == 0
    assert json.loads((split / "train_state.json").read_text())["step"] == 3
    assert train_main(_args(photos, split, 5) + ["--resume"]) == 0

    info = json.loads((split / "train_state.json").read_text())
    assert info["step"] == 5 and len(info["sessions"]) == 2
    # weights, Adam moments and both RNGs were restored: the split run equals the straight one
    a = load_file(str(straight / "train_state.safetensors"))
    b = load_file(str(split / "train_state.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        if k.startswith("model."):
            assert np.allclose(a[k].numpy(), b[k].numpy(), atol=1e-6), k


def test_run_exports_a_loadable_best_checkpoint(photos: Path, tmp_path: Path) -> None:
    assert train_main(_args(photos, tmp_path, 3)) == 0
    model, card, extra = load_checkpoint(tmp_path / "best")
    assert card["training"]["steps"] == 3 and card["config"] == model.config.to_dict()
    assert extra == {}
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert any("eval" in row for row in log)


def test_a_fresh_gdn_run_with_zero_residuals_and_tight_clipping_trains_and_loads(photos: Path, tmp_path: Path) -> None:
    fresh = ["--gdn", "--zero-init-residual", "--clip", "0.06"]
    assert train_main(_args(photos, tmp_path, 3) + fresh) == 0
    model, card, _ = load_checkpoint(tmp_path / "best")
    assert card["config"]["gdn"] and model.config.gdn
    blocks = [m for m in model.modules() if isinstance(m, ResBlock)]
    assert all(0 < float(b.conv2.weight.detach().abs().max()) < 1e-2 for b in blocks)  # 3 steps from zero
    with pytest.raises(SystemExit, match="fresh run"):
        train_main(_args(photos, tmp_path / "again", 4) + ["--init-from", str(tmp_path / "best"), "--gdn"])
    assert train_main(_args(photos, tmp_path, 4) + fresh + ["--resume"]) == 0  # the same command resumes
    assert json.loads((tmp_path / "train_state.json").read_text())["step"] == 4
    relu = tmp_path / "relu"
    assert train_main(_args(photos, relu, 2)) == 0
    with pytest.raises(SystemExit, match="keeps them"):
        train_main(_args(photos, relu, 3) + ["--gdn", "--resume"])


def test_init_from_a_shipped_checkpoint_continues_its_record(photos: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert train_main(_args(photos, first, 3)) == 0
    _, card, _ = load_checkpoint(first / "best")
    assert train_main(_args(photos, second, 5) + ["--init-from", str(first / "best")]) == 0
    info = json.loads((second / "train_state.json").read_text())
    assert info["step"] == 5 and len(info["sessions"]) == 2
    assert info["init_from"] == {"weights_id": card["weights_id"], "step": 3}


def test_ms_ssim_fine_tune_resumes_a_run_and_names_itself_in_the_recipe(photos: Path, tmp_path: Path) -> None:
    assert train_main(_args(photos, tmp_path, 3)) == 0
    assert train_main(_args(photos, tmp_path, 6) + ["--resume", "--distortion", "ms-ssim"]) == 0
    info = json.loads((tmp_path / "train_state.json").read_text())
    assert info["step"] == 6
    config = ModelConfig.from_dict(info["config"])
    assert recipe(config, info["sessions"]).startswith("D + gamma")
    assert "D = 1 - MS-SSIM in the sessions run with --distortion ms-ssim" in recipe(config, info["sessions"])
    assert recipe(config, info["sessions"][:1]).startswith("MSE + gamma")
    weights = load_file(str(tmp_path / "train_state.safetensors"))
    assert all(np.isfinite(v.numpy()).all() for k, v in weights.items() if k.startswith("model."))


@pytest.mark.parametrize("name", DISTORTIONS)
def test_every_distortion_trains_the_autoencoder(photos: Path, tmp_path: Path, name: str) -> None:
    # the mean-shifted map zeroes the rate terms, so the distortion alone must move the weights
    assert train_main(_args(photos, tmp_path, 1) + ["--mean-shift"]) == 0
    before = load_file(str(tmp_path / "train_state.safetensors"))
    assert train_main(_args(photos, tmp_path, 4) + ["--resume", "--mean-shift", "--distortion", name]) == 0
    after = load_file(str(tmp_path / "train_state.safetensors"))
    for part in ("model.encoder.", "model.decoder."):
        keys = [k for k in before if k.startswith(part) and k.endswith("weight")]
        assert keys and all(not np.array_equal(before[k].numpy(), after[k].numpy()) for k in keys), part


def test_export_ships_fp16_weights_with_the_quality_check(photos: Path, kodak: Path, tmp_path: Path) -> None:
    run, shipped = tmp_path / "run", tmp_path / "shipped"
    assert train_main(_args(photos, run, 2)) == 0
    assert export_main(["--run", str(run), "--to", str(shipped), "--kodak", str(kodak), "--rates", "0.3"]) == 0
    model, card, _ = load_checkpoint(shipped)
    assert card["training"]["steps"] == 2 and card["dtype"] == "torch.float16"
    (row,) = card["fp16_check"]["rows"]
    assert row["rate"] == 0.3 and set(row) == {"rate", "raw_bpp", "psnr", "ssim", "ms_ssim", "psnr_fp32"}


def test_export_can_average_runs_of_one_architecture(photos: Path, kodak: Path, tmp_path: Path) -> None:
    a, b, wide = tmp_path / "a", tmp_path / "b", tmp_path / "wide"
    assert train_main(_args(photos, a, 2)) == 0
    assert train_main(_args(photos, b, 2) + ["--seed", "1"]) == 0
    soup = ["--run", str(a), "--average-with", str(b), "--kodak", str(kodak), "--rates", "0.3"]
    assert export_main(soup + ["--to", str(tmp_path / "soup")]) == 0
    model, card, _ = load_checkpoint(tmp_path / "soup")
    wa, wb = (load_file(str(r / "train_state.safetensors")) for r in (a, b))
    key = next(k for k in model.state_dict() if k.endswith("weight"))
    first, second = wa["model." + key], wb["model." + key]
    assert torch.allclose(model.state_dict()[key], ((first + second) / 2).half().float(), atol=1e-3)
    assert not torch.equal(first, second)
    assert card["training"]["steps"] == 2 and card["averaged_with"][0]["steps"] == 2
    assert train_main(_args(photos, wide, 2) + ["--preset", "slim"]) == 0
    with pytest.raises(SystemExit, match="architecture differs"):
        export_main(soup[:2] + ["--average-with", str(wide), "--to", str(tmp_path / "refused")])
    with pytest.raises(SystemExit, match="drop --which best"):
        export_main(soup + ["--which", "best", "--to", str(tmp_path / "refused")])


def test_init_from_can_grow_the_code(photos: Path, tmp_path: Path) -> None:
    first, grown = tmp_path / "first", tmp_path / "grown"
    assert train_main(_args(photos, first, 3)) == 0
    assert train_main(_args(photos, grown, 4) + ["--init-from", str(first / "best"), "--grow-n", "128"]) == 0
    info = json.loads((grown / "train_state.json").read_text())
    assert info["config"]["n"] == 128 and info["init_from"]["grown_from_n"] == 64 and info["step"] == 4
    with pytest.raises(SystemExit, match="--grow-n, --widen, --widen-decoder and --widen-encoder start a new run"):
        train_main(_args(photos, grown, 5) + ["--resume", "--grow-n", "256"])


def test_init_from_can_widen_the_layers(photos: Path, tmp_path: Path) -> None:
    first, wide = tmp_path / "first", tmp_path / "wide"
    assert train_main(_args(photos, first, 3)) == 0
    assert train_main(_args(photos, wide, 4) + ["--init-from", str(first / "best"), "--widen", "medium"]) == 0
    info = json.loads((wide / "train_state.json").read_text())
    assert info["config"]["dec1"] == PRESETS["medium"].dec1 and info["config"]["n"] == 64
    assert info["preset"] == "medium" and info["init_from"]["widened_from"] == "tiny"


def test_a_decoder_only_run_can_widen_the_decoder_and_keep_the_context_models(
    photos: Path, kodak: Path, tmp_path: Path
) -> None:
    first, wide = tmp_path / "first", tmp_path / "wide"
    assert train_main(_args(photos, first, 3)) == 0
    grow = ["--init-from", str(first / "best"), "--widen-decoder", "slim", "--decoder-only"]
    assert train_main(_args(photos, wide, 5) + grow) == 0
    info = json.loads((wide / "train_state.json").read_text())
    assert info["config"]["dec1"] == PRESETS["slim"].dec1 and info["config"]["enc1"] == PRESETS["tiny"].enc1
    assert info["init_from"]["decoder_widened_to"] == "slim" and info["decoder_only"]
    _, export = _coded_start(first / "best", kodak, tmp_path)
    assert export_main(["--run", str(wide), "--to", str(tmp_path / "shipped")] + export) == 0
    shipped, card, _ = load_checkpoint(tmp_path / "shipped")
    assert card["entropy"] == {"fitted": "here"} and shipped.config.dec2 == PRESETS["slim"].dec2
    with pytest.raises(SystemExit, match="start a new run"):
        train_main(_args(photos, wide, 6) + ["--resume", "--widen-decoder", "medium"])


def test_an_encoder_only_run_can_widen_the_encoder_and_keeps_the_decoder(photos: Path, tmp_path: Path) -> None:
    first, wide = tmp_path / "first", tmp_path / "wide"
    assert train_main(_args(photos, first, 3)) == 0
    grow = ["--init-from", str(first / "best"), "--widen-encoder", "slim", "--encoder-only"]
    assert train_main(_args(photos, wide, 5) + grow) == 0
    info = json.loads((wide / "train_state.json").read_text())
    assert info["config"]["enc1"] == PRESETS["slim"].enc1 and info["config"]["dec1"] == PRESETS["tiny"].dec1
    assert info["init_from"]["encoder_widened_to"] == "slim" and info["encoder_only"]
    start, after = load_checkpoint(first / "best")[0].state_dict(), load_file(str(wide / "train_state.safetensors"))
    decoder = [k for k in start if k.startswith("decoder.")]
    assert decoder and all(torch.equal(start[k], after["model." + k]) for k in decoder)  # frozen, as it was
    with pytest.raises(SystemExit, match="start a new run"):
        train_main(_args(photos, wide, 6) + ["--resume", "--widen-encoder", "medium"])


def test_ema_schedule_rate_weighting_and_stochastic_bits_resume_exactly(
    photos: Path, kodak: Path, tmp_path: Path
) -> None:
    recipe_args = ["--ema", "0.9", "--decay-steps", "4", "--lr-end", "1e-5"]
    recipe_args += ["--rate-weight", "per-db", "--full-rate-frac", "0.5", "--binarize", "stochastic"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train_main(_args(photos, straight, 6) + recipe_args) == 0
    assert train_main(_args(photos, split, 3) + recipe_args) == 0
    assert train_main(_args(photos, split, 6) + ["--resume"]) == 0  # the run's recipe, not the defaults
    for name in ("train_state.safetensors", "ema.safetensors"):
        a, b = load_file(str(straight / name)), load_file(str(split / name))
        assert a.keys() == b.keys()
        assert all(np.allclose(a[k].numpy(), b[k].numpy(), atol=1e-6) for k in a), name
    info = json.loads((split / "train_state.json").read_text())
    assert info["schedule"] == {"start": 0, "steps": 4} and info["cpu_seconds"] > 0
    args = argparse.Namespace(lr=1e-3, lr_end=1e-5, warmup=1)
    assert [scheduled_lr(args, info, s, 0, False) for s in (0, 2, 4, 9)] == pytest.approx([1e-3, 5.05e-4, 1e-5, 1e-5])

    # an --ema run ships its averaged weights, not the last step's
    ema, live = load_file(str(split / "ema.safetensors")), load_file(str(split / "train_state.safetensors"))
    assert int(ema["updates"]) == 6
    assert export_main(["--run", str(split), "--to", str(tmp_path / "shipped"), "--kodak", str(kodak)]) == 0
    model, _, _ = load_checkpoint(tmp_path / "shipped")
    first = next(model.parameters()).detach()
    assert torch.equal(first, ema["0"].half().float())
    assert not torch.equal(first, live["model.encoder.body.0.weight"].half().float())


def test_decoder_only_keeps_the_codes_and_resumes_as_decoder_only(photos: Path, kodak: Path, tmp_path: Path) -> None:
    first, tuned = tmp_path / "first", tmp_path / "tuned"
    assert train_main(_args(photos, first, 3)) == 0
    start, _, _ = load_checkpoint(first / "best")
    assert train_main(_args(photos, tuned, 5) + ["--init-from", str(first / "best"), "--decoder-only"]) == 0
    assert train_main(_args(photos, tuned, 7) + ["--resume"]) == 0  # the flag is kept, the moments fit
    info = json.loads((tuned / "train_state.json").read_text())
    assert info["decoder_only"] and info["step"] == 7
    after = load_file(str(tuned / "train_state.safetensors"))
    for name, value in start.state_dict().items():
        same = torch.equal(after[f"model.{name}"], value)
        assert same == (not name.startswith("decoder.")), name

    # its export keeps the start's context models; a run that moved the encoder cannot borrow them
    coded, export = _coded_start(first / "best", kodak, tmp_path)
    assert export_main(["--run", str(tuned), "--to", str(tmp_path / "shipped")] + export) == 0
    _, card, extra = load_checkpoint(tmp_path / "shipped")
    assert card["entropy"] == {"fitted": "here"} and card["levels"] == [{"level": 1, "rate": 0.5}]
    assert torch.equal(extra["entropy.bits.conv2.w"], torch.arange(4, dtype=torch.int32))
    assert card["entropy_from"] == load_checkpoint(coded)[1]["weights_id"]
    assert train_main(_args(photos, first, 5) + ["--resume"]) == 0  # the whole net moves on
    with pytest.raises(SystemExit, match="encoder or the importance net differ"):
        export_main(["--run", str(first), "--to", str(tmp_path / "refused")] + export)


def test_encoder_only_keeps_the_decoder_and_resumes_as_encoder_only(photos: Path, kodak: Path, tmp_path: Path) -> None:
    first, tuned = tmp_path / "first", tmp_path / "tuned"
    assert train_main(_args(photos, first, 3)) == 0
    start, _, _ = load_checkpoint(first / "best")
    with pytest.raises(SystemExit, match="would train nothing"):
        train_main(
            _args(photos, tmp_path / "none", 5)
            + ["--init-from", str(first / "best"), "--decoder-only", "--encoder-only"]
        )
    assert train_main(_args(photos, tuned, 5) + ["--init-from", str(first / "best"), "--encoder-only"]) == 0
    assert train_main(_args(photos, tuned, 7) + ["--resume"]) == 0
    info = json.loads((tuned / "train_state.json").read_text())
    assert info["encoder_only"] and not info["decoder_only"] and info["step"] == 7
    after = load_file(str(tuned / "train_state.safetensors"))
    moved = {name for name, value in start.state_dict().items() if not torch.equal(after[f"model.{name}"], value)}
    assert moved and not any(name.startswith("decoder.") for name in moved)
    assert any(name.startswith("encoder.") for name in moved)


def test_bf16_on_a_cpu_without_bf16_instructions_is_named_slow(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr("cwic.training.train.cpu_has_bf16", lambda: False)
    assert train_main(_args(photos, tmp_path / "run", 1) + ["--amp", "bf16"]) == 0
    assert "--amp none is the faster setting" in capsys.readouterr().err
    info = json.loads((tmp_path / "run" / "train_state.json").read_text())
    assert info["sessions"][-1]["cpu_bf16"] is False


def test_map_total_variation_counts_level_steps_between_neighbours() -> None:
    assert map_total_variation(torch.full((2, 1, 4, 4), 0.3), 16).tolist() == [0.0, 0.0]
    p = torch.tensor([[0.0, 1 / 16], [0.0, 1 / 16]]).view(1, 1, 2, 2)  # one level across, none down
    assert map_total_variation(p, 16).item() == pytest.approx(0.5)


def test_a_map_tv_run_logs_the_variation_and_resumes_with_its_weight(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "tv"
    assert train_main(_args(photos, out, 20) + ["--mean-shift", "--map-tv", "3"]) == 0
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any(row.get("map_tv", -1) >= 0 for row in rows if "eval" not in row)
    assert parse_args(["--out", str(out), "--resume"]).map_tv == 3.0


def _priced_start(start: Path, tmp_path: Path) -> Path:
    """A copy of checkpoint `start` with a stand-in bit context model and calibrated levels, as
    `--code-rate` needs them."""
    model, card, _ = load_checkpoint(start)
    torch.manual_seed(0)
    net = BitContext(model.config.n, model.config.levels, width=8, k=3)
    levels = [{"level": i + 1, "rate": r, "bpp": 0.1 + r, "psnr": 20 + 4 * r**0.5} for i, r in enumerate((0.1, 0.5, 1))]
    return save_checkpoint(tmp_path / "priced", model, card | {"levels": levels}, extra=export_int(net, "entropy.bits"))


def test_a_code_rate_run_prices_the_kept_bits_and_resumes_with_its_model(photos: Path, tmp_path: Path) -> None:
    first, out = tmp_path / "first", tmp_path / "priced-run"
    assert train_main(_args(photos, first, 3)) == 0
    with pytest.raises(SystemExit, match="needs --bit-model"):
        train_main(_args(photos, tmp_path / "none", 5) + ["--code-rate", "1"])
    with pytest.raises(SystemExit, match="no context models"):
        train_main(_args(photos, tmp_path / "none", 5) + ["--init-from", str(first / "best"), "--code-rate", "1"])
    priced = _priced_start(first / "best", tmp_path)
    assert train_main(_args(photos, out, 8) + ["--init-from", str(priced), "--code-rate", "1", "--encoder-only"]) == 0
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(row["code_bpp"] > 0 for row in rows if "eval" not in row)
    resumed = parse_args(["--out", str(out), "--resume"])
    assert resumed.code_rate == 1.0 and resumed.bit_model == priced


def test_code_bits_of_a_batch_is_each_sample_alone() -> None:
    torch.manual_seed(0)
    net = BitContext(16, 4, width=8, k=3).eval()
    bits = (torch.rand(3, 16, 5, 6) > 0.5).float()
    t = torch.randint(-1, 4, (3, 1, 5, 6))  # the last kept group; -1: nothing kept (zero_level maps)
    rates = torch.tensor([2, 8, 16])
    together = code_bits(net, bits, t, rates)
    alone = [code_bits(net, bits[i : i + 1], t[i : i + 1], rates[i : i + 1])[0] for i in range(3)]
    assert torch.allclose(together, torch.stack(alone), rtol=1e-5)
    assert (together > 0).all()
