"""The nn examples train to the accuracy they promise, deterministically from their seed."""

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name, monkeypatch, *args):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *args])
    return module.main()


@pytest.mark.parametrize("name,threshold", [("mlp_spiral", 0.95), ("small_cnn", 0.97)])
def test_example_reaches_high_accuracy_deterministically(name, threshold, monkeypatch, capsys):
    first = run_example(name, monkeypatch)
    assert first > threshold
    assert "accuracy" in capsys.readouterr().out
    assert run_example(name, monkeypatch) == first
