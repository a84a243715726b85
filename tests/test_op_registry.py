"""The op registry: every op is found by its registered name, and no file of minidl,
benchmarks/ or examples/ but the op's own module names its class (tests are exempt), so a new
op is one class in one file."""

import importlib
import pkgutil
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import minidl
from minidl import graph
from minidl.graph import Function

PACKAGE = Path(minidl.__file__).parent
# Packages of minidl's optional extras (pyproject.toml), absent from the README's test venv.
OPTIONAL_EXTRAS = {"onnx", "onnxruntime", "mpi4py", "torch", "matplotlib", "tqdm", "graphviz"}


def minidl_op_classes() -> dict[str, str]:
    """Every Function subclass defined in minidl's source: class name -> defining module.
    Imports every minidl module first (the __main__ entry points run programs and define no
    op). Classes made at run time (the graph nodes of users' autograd.Functions) are not
    attributes of their module and are left out."""
    for info in pkgutil.walk_packages(minidl.__path__, "minidl."):
        if not info.name.endswith("__main__"):
            try:
                importlib.import_module(info.name)
            except ImportError as e:
                # A module of an optional extra that is not installed (minidl.onnx without
                # onnx): it must define no op, which its source shows without importing it.
                missing = e.__cause__ if isinstance(e.__cause__, ImportError) else e
                assert missing.name in OPTIONAL_EXTRAS, e
                source = Path(info.module_finder.path, info.name.rsplit(".", 1)[-1] + ".py")
                assert not re.search(r"^class \w+\(.*(Function|Op)\b", source.read_text(), re.M)
    found = {}
    pending = list(Function.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        module = sys.modules.get(cls.__module__)
        if cls.__module__.startswith("minidl.") and getattr(module, cls.__name__, None) is cls:
            found[cls.__name__] = cls.__module__
    return found


def module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def named_op_classes(source: str, module: str, classes: dict[str, str]) -> set[str]:
    """Op classes that `source` (the text of `module`) names, its own excepted; comments and
    docstrings count too (they go stale when the class moves)."""
    return {name for name, home in classes.items()
            if home != module and re.search(rf"\b{re.escape(name)}\b", source)}


def source_files() -> list[Path]:
    """minidl's Python files, and the benchmarks' and examples' of a source checkout."""
    files = sorted(PACKAGE.rglob("*.py"))
    for folder in ("benchmarks", "examples"):
        files += sorted((PACKAGE.parent / folder).rglob("*.py"))
    return files


def test_no_op_class_is_named_outside_its_own_module():
    classes = minidl_op_classes()
    assert {"AddOp", "Conv2dOp", "LinearOp", "ReLUOp", "InputGradHookOp"} <= set(classes)
    named = {}
    for path in source_files():
        found = named_op_classes(path.read_text(), module_of(path), classes)
        if found:
            named[str(path.relative_to(PACKAGE.parent))] = sorted(found)
    assert not named, f"modules naming op classes of other modules (use minidl.graph.op): {named}"


def test_the_check_catches_an_import_of_an_op_class():
    classes = minidl_op_classes()
    source = (PACKAGE / "tensor.py").read_text()
    assert named_op_classes(source, "minidl.tensor", classes) == set()
    source += "\nfrom minidl.ops.elementwise import AddOp\n"
    assert named_op_classes(source, "minidl.tensor", classes) == {"AddOp"}
    assert named_op_classes(source, "minidl.ops.elementwise", classes) == set()


def test_every_op_is_registered_under_its_own_name():
    classes = minidl_op_classes()
    registered = graph.registered_ops()
    for cls_name, module in classes.items():
        cls = getattr(importlib.import_module(module), cls_name)
        if cls_name.startswith("_"):  # abstract bases and the user-Function node
            assert cls.name is None, cls
            continue
        assert cls.__dict__.get("name"), f"{module}.{cls_name} declares no name"
        assert registered[cls.name] is cls
        assert graph.op(cls.name) is cls
    assert graph.op("add").display_name() == "Add" and graph.op("add").elementwise
    assert graph.op("conv2d").epilogues == ("relu",)


def test_tensor_methods_and_functional_apply_the_registered_ops():
    x = minidl.tensor(np.array([[-1.0, 2.0]], np.float32), requires_grad=True)
    w = minidl.tensor(np.ones((3, 2), np.float32), requires_grad=True)
    cases = [(x + x, "add"), (x * x, "mul"), (x @ w.T, "matmul"), (x.relu(), "relu"),
             (x.sum(), "sum"), (x.max(), "max"), (x.reshape(2), "reshape"),
             (minidl.nn.functional.linear(x, w), "linear"),
             (minidl.nn.functional.mse_loss(x, x.detach()), "mse_loss")]
    for out, name in cases:
        assert out._ctx.fn is graph.op(name), name


def test_a_taken_or_malformed_name_raises():
    with pytest.raises(TypeError, match=r"the op name 'add' is taken by minidl\.ops\.elementwise"):
        type("Plus", (Function,), {"name": "add"})
    with pytest.raises(TypeError, match="must be an identifier string"):
        type("Spaced", (Function,), {"name": "two words"})
    assert graph.op("add").__module__ == "minidl.ops.elementwise"


def test_a_name_is_not_inherited_and_unnamed_subclasses_are_not_registered():
    before = graph.registered_ops()
    relu = graph.op("relu")
    sub = type("MyRelu", (relu,), {})
    plain = type("Helper", (Function,), {})
    assert sub.name is None and plain.name is None and relu.name == "relu"
    assert graph.registered_ops() == before


def test_an_unknown_name_raises_a_key_error_listing_the_names():
    with pytest.raises(KeyError, match=r"no minidl op is named 'addd'; registered: .*\badd\b"):
        graph.op("addd")


def test_every_onnx_translation_is_keyed_by_a_registered_name():
    from minidl.onnx.export import TRANSLATIONS

    registered = graph.registered_ops()
    assert set(TRANSLATIONS) <= set(registered), set(TRANSLATIONS) - set(registered)
    assert {"conv2d", "linear", "relu", "add", "batch_norm"} <= set(TRANSLATIONS)
