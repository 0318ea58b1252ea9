"""`python -m cwic COMMAND ...`: one entry point for every cwic command line."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": ("cwic.train", "train the model (resumable)"),
    "train-entropy": ("cwic.train_entropy", "train the context models, calibrate levels, rewrite the golden file"),
    "encode": ("cwic.encode", "compress an image into a .cwic file"),
    "decode": ("cwic.decode", "decode a .cwic file to an image"),
    "info": ("cwic.info", "print a .cwic header as JSON"),
    "levels": ("cwic.levels", "list rate levels and their mean Kodak bpp (JSON)"),
    "evaluate": ("cwic.evaluate", "RD evaluation against JPEG, JPEG 2000, WebP, AVIF (results.json, plots, BD-rate)"),
    "bench": ("cwic.bench", "median encode/decode time per codec on a Kodak-size image"),
    "export": ("cwic.export", "ship a training run as a checkpoint with a measured model card"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        print("usage: cwic COMMAND [ARGS]\n\ncommands:")
        for name, (_, help_) in COMMANDS.items():
            print(f"  {name:14s} {help_}")
        return 0 if not argv or argv[0] in {"-h", "--help"} else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
