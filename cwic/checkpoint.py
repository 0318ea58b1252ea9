"""Checkpoints: safetensors weights beside a JSON model card. Loading never unpickles.

A shipped checkpoint is a folder with `model.safetensors` (autoencoder, optionally fp16,
plus the entropy models under `entropy.` keys when trained) and `model.json` (the card).
Training state for `--resume` lives beside it in `train_state.safetensors` / `.json`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .models.config import ModelConfig
from .models.network import CWICModel

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "cwic-slim"
WEIGHTS, CARD = "model.safetensors", "model.json"


def shipped_checkpoints() -> list[Path]:
    """Every folder under checkpoints/ with weights, the default first: where a .cwic file's checkpoint is sought."""
    root = DEFAULT_CHECKPOINT.parent
    found = sorted(p for p in root.iterdir() if (p / WEIGHTS).is_file()) if root.is_dir() else []
    return sorted(found, key=lambda p: p != DEFAULT_CHECKPOINT)  # stable: the rest stay in name order


def weights_id(path: Path) -> str:
    """Checkpoint id written into every .cwic file: first 16 hex digits of the weights' SHA-256."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def save_checkpoint(
    folder: Path, model: CWICModel, card: dict, extra: dict[str, torch.Tensor] | None = None, fp16: bool = True
) -> Path:
    """Write weights (+ extra tensors, e.g. entropy models) and the card; return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if fp16 else torch.float32
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    tensors.update({k: v.detach().contiguous() for k, v in (extra or {}).items()})
    tmp = folder / (WEIGHTS + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(folder / WEIGHTS)
    card = dict(card, config=model.config.to_dict(), weights_id=weights_id(folder / WEIGHTS), dtype=str(dtype))
    _write_json(folder / CARD, card)
    return folder


def load_checkpoint(folder: Path | None = None) -> tuple[CWICModel, dict, dict[str, torch.Tensor]]:
    """(model in eval mode, float32; card; remaining tensors such as `entropy.*`)."""
    folder = Path(folder or DEFAULT_CHECKPOINT)
    if not (folder / WEIGHTS).is_file() or not (folder / CARD).is_file():
        raise FileNotFoundError(f"no cwic checkpoint in {folder} (needs {WEIGHTS} and {CARD})")
    card = json.loads((folder / CARD).read_text())
    model = CWICModel(ModelConfig.from_dict(card["config"]))
    tensors = load_file(str(folder / WEIGHTS))
    own = set(model.state_dict())
    model.load_state_dict({k: v.float() for k, v in tensors.items() if k in own})
    model.eval()
    card["weights_id"] = weights_id(folder / WEIGHTS)
    return model, card, {k: v for k, v in tensors.items() if k not in own}


def save_train_state(folder: Path, model: CWICModel, opt: torch.optim.Optimizer, info: dict) -> None:
    """Everything `--resume` needs: fp32 weights, Adam moments, step, RNG states (atomic)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    opt_sd = opt.state_dict()
    for idx, st in opt_sd["state"].items():
        for name, val in st.items():
            tensors[f"opt.{idx}.{name}"] = torch.as_tensor(val).contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    info = dict(info, param_groups=opt_sd["param_groups"], config=model.config.to_dict())
    save_file(tensors, str(folder / "train_state.safetensors.tmp"))
    _write_json(folder / "train_state.json.tmp", info)
    (folder / "train_state.safetensors.tmp").replace(folder / "train_state.safetensors")
    (folder / "train_state.json.tmp").replace(folder / "train_state.json")


def load_train_state(folder: Path, model: CWICModel, opt: torch.optim.Optimizer) -> dict:
    """Restore weights, optimizer and torch RNG in place; return the saved info dict."""
    folder = Path(folder)
    info = json.loads((folder / "train_state.json").read_text())
    tensors = load_file(str(folder / "train_state.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    return info


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
    tmp.replace(path)


def _json_default(o):
    if isinstance(o, np.integer | np.floating):
        return o.item()
    raise TypeError(f"not JSON serializable: {type(o)}")
