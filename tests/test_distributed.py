"""Training at scale: two gloo ranks equal one process on the same global batch, resume on both
ranks, the packed training set, and the prepared GPU run dry-run on the CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from cwic.training.data import PatchSampler, list_images, load_downscaled, split
from cwic.training.pack import read_pack, write_pack
from cwic.training.train import main as train_main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:80, 0:104]
    for i in range(31):  # 30 to train on, the first one held out for validation
        base = np.stack([(xx * (i + 1)) % 256, (yy * 5) % 256, (xx + 2 * yy) % 256], axis=2)
        img = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"photo{i:02d}.jpg", quality=90)
    (folder / "kodak").mkdir()
    Image.fromarray(np.tile(img, (3, 2, 1))[:176, :176]).save(folder / "kodak" / "kodim01.png")  # MS-SSIM: 161 px
    return folder


def _args(photos: Path, out: Path, steps: int) -> list[str]:
    return [
        "--data", str(photos), "--kodak", str(photos / "kodak"), "--out", str(out), "--preset", "tiny",
        "--steps", str(steps), "--batch", "4", "--patch", "32", "--uniform-steps", "2", "--warmup", "1",
        "--eval-every", "3", "--threads", "1", "--rate-weight", "per-db",
    ]  # fmt: skip


def _torchrun(args: list[str]) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "cwic", "train"]
    done = subprocess.run(cmd + args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def _weights(folder: Path) -> dict[str, np.ndarray]:
    tensors = load_file(str(folder / "train_state.safetensors"))
    return {k: v.numpy() for k, v in tensors.items() if k.startswith("model.")}


def test_two_gloo_ranks_equal_one_process_on_the_same_global_batch(photos: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    assert train_main(_args(photos, one, 3) + ["--shards", "2"]) == 0
    _torchrun(_args(photos, two, 3))
    a, b = _weights(one), _weights(two)
    assert a.keys() == b.keys()
    for k in a:
        assert np.allclose(a[k], b[k], atol=1e-5), (k, float(np.abs(a[k] - b[k]).max()), int((a[k] != b[k]).sum()))
    # rank 0 alone wrote: the same files as the single process, each log row once
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    steps = [json.loads(line)["step"] for line in (two / "log.jsonl").read_text().splitlines()]
    assert steps == [3]  # the one quick evaluation
    info = json.loads((two / "train_state.json").read_text())
    assert info["shards"] == 2 and info["global_batch"] == 4 and info["sessions"][-1]["processes"] == 2
    assert len(info["np_rng"]) == 2

    # --resume continues the step count and every rank's stream: 3 + 2 steps equal 5 in one go
    _torchrun(_args(photos, two, 5) + ["--resume"])
    assert train_main(_args(photos, tmp_path / "straight", 5) + ["--shards", "2"]) == 0
    info = json.loads((two / "train_state.json").read_text())
    assert info["step"] == 5 and len(info["sessions"]) == 2
    a, b = _weights(tmp_path / "straight"), _weights(two)
    for k in a:
        assert np.allclose(a[k], b[k], atol=1e-5), (k, float(np.abs(a[k] - b[k]).max()), int((a[k] != b[k]).sum()))


def test_a_run_refuses_shards_that_do_not_divide(photos: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="shards must divide it"):
        train_main(_args(photos, tmp_path, 1) + ["--shards", "3"])


def test_the_pack_yields_exactly_the_folder_samplers_patches(photos: Path, tmp_path: Path) -> None:
    pack_file = tmp_path / "train.zip"
    manifest = write_pack(photos, photos / "kodak", 32, pack_file)
    pack = read_pack(pack_file)
    files_train, files_val = split(list_images(photos))
    assert manifest["train"] == [f.name for f in files_train] and list(pack.kodak) == ["kodim01.png"]
    folder = PatchSampler.from_files(files_train, 32)
    packed = PatchSampler(pack.train, 32)
    for seed in (0, 7):
        a = folder.batch(np.random.default_rng(seed), 16)
        b = packed.batch(np.random.default_rng(seed), 16)
        assert np.array_equal(a, b)
    assert all(np.array_equal(v, load_downscaled(f, 32)) for v, f in zip(pack.val, files_val, strict=True))
    # a run reads the pack as it reads the folder: the same weights after the same steps
    assert train_main(_args(photos, tmp_path / "folder", 2)) == 0
    assert train_main(_args(photos, tmp_path / "packed", 2) + ["--data", str(pack_file)]) == 0
    a, b = _weights(tmp_path / "folder"), _weights(tmp_path / "packed")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(SystemExit, match="packed for --patch 32"):
        train_main(_args(photos, tmp_path / "p16", 1) + ["--data", str(pack_file), "--patch", "16"])
    # the smaller JPEG pack, for carrying: the same photos, close but not exact
    write_pack(photos, photos / "kodak", 32, tmp_path / "q95.zip", quality=95)
    small = read_pack(tmp_path / "q95.zip")
    assert small.manifest["ext"] == "jpg" and len(small.train) == len(pack.train)
    err = np.mean([np.mean((a.astype(float) - b) ** 2) for a, b in zip(small.train, pack.train, strict=True)])
    assert 0 < err < 255**2 / 10**3.5  # over 35 dB
    assert all(np.array_equal(small.kodak[k], pack.kodak[k]) for k in pack.kodak)  # evaluation images stay exact
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable cwic training pack"):
        read_pack(tmp_path / "bad.zip")


def test_the_prepared_gpu_run_dry_runs_on_the_cpu(photos: Path, tmp_path: Path) -> None:
    assert train_main(_args(photos, tmp_path / "start", 3)) == 0  # best/ is written at step 3
    pack_file = tmp_path / "train.zip"
    write_pack(photos, photos / "kodak", 32, pack_file)
    recipe = "--preset tiny --batch 4 --patch 32 --threads 1 --uniform-steps 1 --eval-every 2 --warmup 1"
    env = dict(os.environ, CWIC_DEVICE="cpu", CWIC_NPROC="2", CWIC_PACK=str(pack_file), CWIC_TRAIN_ARGS=recipe)
    out = tmp_path / "gpu"
    cmd = ["bash", "benchmarks/gpu_run.sh", str(tmp_path / "start" / "best"), "0.1", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "steps/s (median over this run's log rows):" in done.stdout
    info = json.loads((out / "train_state.json").read_text())
    assert info["step"] > 3 and info["sessions"][-1]["processes"] == 2
    card = json.loads((out / "checkpoint" / "model.json").read_text())
    assert card["fp16_check"]["rows"][0]["rate"] == 0.1 and card["training"]["steps"] == info["step"]


def test_bf16_channels_last_weights_export_in_the_usual_format_and_decode_exactly(photos: Path, tmp_path: Path) -> None:
    from cwic import Codec
    from cwic.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from cwic.entropy_models.entropy_coder import EntropyModel
    from cwic.training.export import main as export_main

    run = tmp_path / "run"
    assert train_main(_args(photos, run, 3) + ["--amp", "bf16", "--channels-last"]) == 0
    assert export_main(["--run", str(run), "--to", str(tmp_path / "ckpt"), "--kodak", str(photos / "kodak")]) == 0
    model, card, _ = load_checkpoint(tmp_path / "ckpt")
    assert card["dtype"] == "torch.float16" and card["format"] == "cwic-checkpoint/1"
    assert all(t.is_contiguous() for t in load_file(str(tmp_path / "ckpt" / "model.safetensors")).values())
    # any valid context model codes these codes (the shipped one, n = 64 and L = 16 like `tiny`): bit-exact on the CPU
    _, _, shipped_entropy = load_checkpoint(DEFAULT_CHECKPOINT)
    codec = Codec(model, card, EntropyModel(shipped_entropy, model.config))
    rgb = np.asarray(Image.open(photos / "kodak" / "kodim01.png").convert("RGB")).copy()
    c = codec.compress(rgb, level=2)
    assert np.array_equal(codec.decompress(c.data), c.reconstruction)
