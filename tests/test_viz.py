"""minidl.viz: DOT text of eager graphs (parsed back, not grepped), escaping, rendering."""

import html
import re
import shutil

import numpy as np
import pytest

import minidl
from minidl import viz

NODE = re.compile(r'^\s*"((?:[^"\\]|\\.)*)" \[label="((?:[^"\\]|\\.)*)", (.*)\];$')
EDGE = re.compile(r'^\s*"((?:[^"\\]|\\.)*)" -> "((?:[^"\\]|\\.)*)" \[label=<(.*)>\];$')

needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz `dot` not installed (apt-get install graphviz)"
)


def unquote(text):
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def parse(source):
    """(nodes {id: (label, attrs)}, edges [(src, dst, {"shape", "value", "grad"})])."""
    nodes, edges = {}, []
    lines = source.splitlines()
    assert lines[0] == "digraph minidl {" and lines[-1] == "}"
    for line in lines[1:-1]:
        if m := EDGE.match(line):
            fields = {}
            rows = [
                html.unescape(re.sub(r"</?font[^>]*>", "", r)) for r in m.group(3).split("<br/>")
            ]
            fields["shape"] = rows[0]
            for row in rows[1:]:
                key, text = row.split(" ", 1)
                fields[key] = text
            src, dst = unquote(m.group(1)), unquote(m.group(2))
            assert src in nodes and dst in nodes
            edges.append((src, dst, fields))
        elif m := NODE.match(line):
            nodes[unquote(m.group(1))] = (unquote(m.group(2)), m.group(3))
        else:
            assert re.match(r"^\s*(rankdir|node|edge)\b", line), line
    return nodes, edges


def named(v, name, dtype=np.float64):
    t = minidl.tensor(v, dtype=dtype, requires_grad=True)
    t.name = name
    return t


def labelled_edges(source):
    """[(src label, dst label, fields)] in the order of the DOT text."""
    nodes, edges = parse(source)
    return [(nodes[s][0], nodes[d][0], f) for s, d, f in edges], nodes


def lecture_circuit():
    x, y, z = named(-2.0, "x"), named(5.0, "y"), named(-4.0, "z")
    f = (x + y) * z
    f.name = "f"
    return x, y, z, f


def test_lecture_circuit_values_and_gradients_on_edges():
    x, y, z, f = lecture_circuit()
    edges, nodes = labelled_edges(viz.graph(f).source)
    assert [(s, d) for s, d, _ in edges] == [
        ("x", "+"),
        ("y", "+"),
        ("+", "*"),
        ("z", "*"),
        ("*", "f"),
    ]
    assert [float(e["value"]) for _, _, e in edges] == [-2, 5, 3, -4, -12]
    assert [float(e["grad"]) for _, _, e in edges] == [-4, -4, -4, 3, 1]
    assert [e["value"] for _, _, e in edges][2] == "3.00"
    assert {e["shape"] for _, _, e in edges} == {"scalar"}
    kinds = {label: attrs for label, attrs in nodes.values()}
    assert kinds["+"].startswith("shape=box") and kinds["*"].startswith("shape=box")
    assert kinds["x"].startswith("shape=ellipse") and kinds["f"].startswith("shape=ellipse")
    # Drawing leaves .grad alone and keeps the graph for a later backward.
    assert x.grad is None and y.grad is None
    f.backward()
    assert (x.grad.item(), y.grad.item(), z.grad.item()) == (-4.0, -4.0, 3.0)


def test_branch_and_reuse_sum_gradients():
    a = named(3.0, "a")
    b = a + a
    c = b * b
    edges, _ = labelled_edges(viz.graph(c).source)
    assert [(s, d) for s, d, _ in edges] == [
        ("a", "+"),
        ("a", "+"),
        ("+", "*"),
        ("+", "*"),
        ("*", "output"),
    ]
    # b = 6, c = 36; dc/db = 2b = 12 on both uses of b, dc/da = 2 * 12 = 24.
    assert [float(e["value"]) for _, _, e in edges] == [3, 3, 6, 6, 36]
    assert [float(e["grad"]) for _, _, e in edges] == [24, 24, 12, 12, 1]


def test_shapes_always_and_values_only_for_small_tensors():
    w = named(np.arange(6.0).reshape(2, 3), "w")
    x = named(np.ones((3, 4)), "x")
    loss = (w @ x).sum()
    edges, _ = labelled_edges(viz.graph(loss, max_elements=6).source)
    by_src = {s: e for s, _, e in edges}
    assert by_src["w"]["shape"] == "(2, 3)"
    assert by_src["w"]["value"] == "[[0.00, 1.00, 2.00], [3.00, 4.00, 5.00]]"
    assert by_src["w"]["grad"] == "[[4.00, 4.00, 4.00], [4.00, 4.00, 4.00]]"
    assert by_src["x"] == {"shape": "(3, 4)"}  # 12 elements > max_elements
    assert by_src["@"] == {"shape": "(2, 4)"}
    assert by_src["Sum"]["value"] == "60.00"


def test_values_and_grads_can_be_switched_off():
    *_, f = lecture_circuit()
    edges, _ = labelled_edges(viz.graph(f, values=False, grads=False).source)
    assert all(e == {"shape": "scalar"} for _, _, e in edges)
    edges, _ = labelled_edges(viz.graph(f, grads=False).source)
    assert all(set(e) == {"shape", "value"} for _, _, e in edges)


def test_non_scalar_root_draws_values_without_gradients():
    x = named([1.0, -2.0], "x")
    edges, _ = labelled_edges(viz.graph(x * 2.0).source)
    assert all("grad" not in e for _, _, e in edges)
    constant = [e for s, _, e in edges if s == "2.00"]
    assert constant == [{"shape": "scalar", "value": "2.00"}]


def test_after_backward_draws_values_and_the_known_gradients():
    x, y, z, f = lecture_circuit()
    s = x + y
    s.retain_grad()
    f = s * z
    f.backward()  # frees the graph: no sweep can run again, the .grad fields are what is known
    edges, _ = labelled_edges(viz.graph(f).source)
    assert [float(e["value"]) for _, _, e in edges] == [-2, 5, 3, -4, -12]
    # Leaves and the retained sum carry their .grad; the output keeps none (as in PyTorch).
    assert [e.get("grad") for _, _, e in edges] == ["-4.00", "-4.00", "-4.00", "3.00", None]
    assert x.grad.item() == -4.0  # drawing accumulated nothing
    edges, _ = labelled_edges(viz.graph(f, grads=False).source)
    assert all("grad" not in e for _, _, e in edges)


def test_retained_graph_can_be_drawn_after_backward():
    x, _, _, f = lecture_circuit()
    f.backward(retain_graph=True)
    edges, _ = labelled_edges(viz.graph(f).source)
    assert [float(e["grad"]) for _, _, e in edges] == [-4, -4, -4, 3, 1]
    assert x.grad.item() == -4.0  # untouched by drawing: not accumulated a second time


def test_labels_are_escaped():
    name = 'say "hi" \\l <b>&\nnext'
    x = named(1.0, name)
    y = x * 3.0
    nodes, _ = parse(viz.graph(y).source)
    assert name in [label for label, _ in nodes.values()]


def test_compiled_graph_protocol_shares_the_builder():
    class Fake:
        def _viz_graph(self):
            nodes = [("x", "x", "input"), ("conv", 'conv+relu "fused"', "op"), ("y", "y", "output")]
            edges = [
                ("x", "conv", viz.edge_label((1, 1, 28, 28))),
                ("conv", "y", viz.edge_label((2,), value=np.array([0.5, 1e-5]))),
            ]
            return nodes, edges

    nodes, edges = parse(viz.graph(Fake()).source)
    assert nodes["conv"][0] == 'conv+relu "fused"' and nodes["conv"][1].startswith("shape=box")
    assert edges == [
        ("x", "conv", {"shape": "(1, 1, 28, 28)"}),
        ("conv", "y", {"shape": "(2,)", "value": "[0.50, 1.00e-05]"}),
    ]


def test_bad_graphs_and_objects_are_rejected():
    with pytest.raises(ValueError, match="kind 'box'"):
        viz.dot_source([("a", "a", "box")], [])
    with pytest.raises(ValueError, match="unknown node 'b'"):
        viz.dot_source([("a", "a", "op")], [("a", "b", "")])
    with pytest.raises(ValueError, match="appears twice"):
        viz.dot_source([("a", "a", "op"), ("a", "b", "input")], [])
    with pytest.raises(TypeError, match="Tensor or an object with _viz_graph"):
        viz.graph(np.ones(3))


def test_number_formatting():
    assert viz.format_array(np.float32(3)) == "3.00"
    assert viz.format_array(-0.5) == "-0.50"
    assert viz.format_array(1e-5) == "1.00e-05"
    assert viz.format_array(0.0) == "0.00"
    assert viz.format_array(np.array([1, 2], dtype=np.int64)) == "[1, 2]"
    assert viz.format_shape(()) == "scalar" and viz.format_shape((3,)) == "(3,)"


def test_render_without_dot_says_which_package(monkeypatch, tmp_path):
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    *_, f = lecture_circuit()
    g = viz.graph(f)
    with pytest.raises(RuntimeError, match="graphviz"):
        g.render(tmp_path / "f.svg")
    assert g._repr_svg_() is None
    assert list(tmp_path.iterdir()) == []


def test_render_rejects_unknown_formats(tmp_path):
    *_, f = lecture_circuit()
    with pytest.raises(ValueError, match="'jpeg'"):
        viz.graph(f).render(tmp_path / "f.jpeg")


@needs_dot
@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG\r\n\x1a\n"), (".svg", b"<svg")])
def test_render_writes_the_format_of_the_extension(tmp_path, suffix, magic):
    *_, f = lecture_circuit()
    path = viz.graph(f).render(tmp_path / f"circuit{suffix}")
    data = path.read_bytes()
    if suffix == ".svg":
        data = data[data.index(b"<svg") :]
    assert data.startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [f"circuit{suffix}"]  # no temp file left


@needs_dot
def test_repr_svg_for_notebooks():
    *_, f = lecture_circuit()
    svg = viz.graph(f)._repr_svg_()
    assert "<svg" in svg and "grad 3.00" in svg


def lenet_loss(batch=2):
    from minidl.models import LeNet5
    from minidl.nn import functional as F

    minidl.manual_seed(0)
    model = LeNet5()
    for name, p in model.named_parameters():
        p.name = name
    images = minidl.randn(batch, 1, 28, 28)
    images.name = "images"
    loss = F.cross_entropy(model(images), minidl.tensor([3, 7][:batch]))
    return loss


def test_lenet_graph_dot_text():
    edges, nodes = labelled_edges(viz.graph(lenet_loss()).source)
    ops = [label for label, attrs in nodes.values() if attrs.startswith("shape=box")]
    assert ops == [
        "Conv2d",
        "ReLU",
        "MaxPool2d",
        "Conv2d",
        "ReLU",
        "MaxPool2d",
        "Reshape",
        "Linear",
        "ReLU",
        "Linear",
        "ReLU",
        "Linear",
        "CrossEntropy",
    ]
    shapes = {(s, d): e["shape"] for s, d, e in edges}
    assert shapes[("images", "Conv2d")] == "(2, 1, 28, 28)"
    assert shapes[("conv1.weight", "Conv2d")] == "(6, 1, 5, 5)"
    assert shapes[("conv2.weight", "Conv2d")] == "(16, 6, 5, 5)"
    assert shapes[("Reshape", "Linear")] == "(2, 400)"
    assert shapes[("fc3.weight", "Linear")] == "(10, 84)"
    assert shapes[("CrossEntropy", "output")] == "scalar"
    # Small tensors carry values and gradients (conv1.bias: 6 elements), large ones only shapes.
    bias = next(e for s, _, e in edges if s == "conv1.bias")
    assert len(bias["value"].split(",")) == 6 and len(bias["grad"].split(",")) == 6
    weight = next(e for s, _, e in edges if s == "fc1.weight")
    assert weight == {"shape": "(120, 400)"}
    loss = next(e for _, d, e in edges if d == "output")
    assert float(loss["grad"]) == 1.0 and float(loss["value"]) > 0


@needs_dot
def test_lenet_graph_renders_to_png(tmp_path):
    path = viz.graph(lenet_loss()).render(tmp_path / "lenet.png")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.skipif(not hasattr(minidl, "compile"), reason="no minidl.compile")
def test_compiled_lenet_graph_draws_through_the_same_builder():
    from minidl.models import LeNet5
    from minidl.nn import functional as F

    model = LeNet5()
    x, y = minidl.randn(2, 1, 28, 28), minidl.tensor([3, 7])
    compiled = minidl.compile(model, F.cross_entropy, example_inputs=(x, y))
    nodes, edges = parse(viz.graph(compiled).source)
    kinds = [attrs.split(",")[0] for _, attrs in nodes.values()]
    assert kinds.count("shape=box") >= 8  # fused ops make fewer boxes than eager's 13
    labels = {label for label, _ in nodes.values()}
    assert {"conv1.weight", "fc3.bias"} <= labels
    assert all(s in nodes and d in nodes for s, d, _ in edges)
