"""The package's dependency rule: the codec needs neither training nor evaluation, training needs no demo
libraries, and nothing in cwic imports the demo."""

import subprocess
import sys

import pytest


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("statement", ["from cwic import Codec; Codec", "import cwic.cli, cwic.codec"])
def test_the_codec_imports_nothing_from_training_evaluation_or_the_demo(statement: str) -> None:
    mods = _imported_after(statement)
    assert "cwic.codec" in mods
    assert not {m for m in mods if m.startswith(("cwic.training", "cwic.evaluation", "demo", "gradio"))}


def test_training_imports_neither_gradio_nor_the_entropy_coder() -> None:
    mods = _imported_after("import cwic.training.train")
    assert not {m for m in mods if m.split(".")[0] in {"gradio", "constriction", "demo", "matplotlib"}}
