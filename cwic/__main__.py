"""`python -m cwic COMMAND ...`: one entry point for every cwic command line."""

from __future__ import annotations

import importlib
import sys

# command -> ("module:function" taking argv and returning the exit status, help); imported on use
# so that `train` needs neither Gradio nor the entropy coder's libraries.
COMMANDS = {
    "train": ("cwic.training.train:main", "train the model (resumable)"),
    "train-entropy": (
        "cwic.training.train_entropy:main",
        "train the context models, calibrate levels, rewrite the golden file",
    ),
    "encode": ("cwic.cli:encode_main", "compress an image into a .cwic file"),
    "decode": ("cwic.cli:decode_main", "decode a .cwic file to an image"),
    "info": ("cwic.cli:info_main", "print a .cwic header as JSON"),
    "levels": ("cwic.cli:levels_main", "list rate levels and their mean Kodak bpp (JSON)"),
    "evaluate": (
        "cwic.evaluation.evaluate:main",
        "RD evaluation against JPEG, JPEG 2000, WebP, AVIF (results.json, plots, BD-rate)",
    ),
    "bench": ("cwic.evaluation.bench:main", "median encode/decode time per codec on a Kodak-size image"),
    "export": ("cwic.training.export:main", "ship a training run as a checkpoint with a measured model card"),
    "pack-data": ("cwic.training.pack:main", "pack the training photos into one file, to carry a run elsewhere"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        print("usage: cwic COMMAND [ARGS]\n\ncommands:")
        for name, (_, help_) in COMMANDS.items():
            print(f"  {name:14s} {help_}")
        return 0 if not argv or argv[0] in {"-h", "--help"} else 2
    module, function = COMMANDS[argv[0]][0].split(":")
    return getattr(importlib.import_module(module), function)(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
