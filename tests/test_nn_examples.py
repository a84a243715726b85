"""The nn examples train to the accuracy they promise, deterministically from their seed."""

import importlib.util
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name, monkeypatch, *args):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *args])
    return module.main()


def test_mlp_spiral_reaches_high_accuracy_deterministically(monkeypatch, capsys):
    first = run_example("mlp_spiral", monkeypatch)
    assert first > 0.95
    assert "held-out" in capsys.readouterr().out
    assert run_example("mlp_spiral", monkeypatch) == first


def test_small_cnn_reaches_high_accuracy(monkeypatch, capsys):
    # One run only: its cost is the conv kernels' (about 2 s on an idle machine).
    assert run_example("small_cnn", monkeypatch) > 0.97
    assert "final test accuracy" in capsys.readouterr().out
