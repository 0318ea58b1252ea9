"""An exponential moving average of the weights: what `cwic train --ema` evaluates, keeps and exports."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


class WeightAverage:
    """Exponential moving average of the weights, with the usual warm-up min(decay, (1+t)/(10+t)).

    Saved beside the train state (`ema.safetensors`) so `--resume` restores it.
    """

    FILE = "ema.safetensors"

    def __init__(self, model: torch.nn.Module, decay: float, resume_from: Path | None = None) -> None:
        self.model, self.decay, self.updates = model, decay, 0
        self.params = [p.detach().clone() for p in model.parameters()]
        if resume_from is not None and (resume_from / self.FILE).is_file():
            saved = load_file(str(resume_from / self.FILE))
            self.params = [saved[str(i)].to(p.device) for i, p in enumerate(self.params)]
            self.updates = int(saved["updates"])

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.params, [p.detach() for p in self.model.parameters()], 1 - d)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        for p, a in zip(self.model.parameters(), self.params, strict=True):
            p.copy_(a)

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The model computes with the averaged weights inside the block."""
        live = [p.detach().clone() for p in self.model.parameters()]
        self.copy_to_model()
        try:
            yield
        finally:
            with torch.no_grad():
                for p, v in zip(self.model.parameters(), live, strict=True):
                    p.copy_(v)

    def save(self, folder: Path) -> None:
        tensors = {str(i): p.contiguous().cpu() for i, p in enumerate(self.params)}
        tensors["updates"] = torch.tensor(self.updates)
        save_file(tensors, str(folder / (self.FILE + ".tmp")))
        (folder / (self.FILE + ".tmp")).replace(folder / self.FILE)
