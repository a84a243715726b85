"""PyTorch idioms run unchanged on minidl (issue 11).

Each idiom is a function of the module namespace `torch` (minidl, or PyTorch itself), written
as PyTorch code; it returns plain values (lists, numbers, strings, dtype names). Every idiom is
checked against fixed expected values always, and against PyTorch 2.13 when it is installed
(skipped cleanly otherwise), so the expected values are known to be PyTorch's.
"""

from __future__ import annotations

import importlib
import math
import types

import numpy as np
import pytest

import minidl

try:
    import torch as real_torch
except ImportError:  # the comparison half is skipped
    real_torch = None


def minidl_namespace() -> types.SimpleNamespace:
    import minidl.nn.functional as F
    from minidl import nn, optim

    return types.SimpleNamespace(torch=minidl, nn=nn, F=F, optim=optim)


def torch_namespace() -> types.SimpleNamespace:
    F = importlib.import_module("torch.nn.functional")
    return types.SimpleNamespace(torch=real_torch, nn=real_torch.nn, F=F, optim=real_torch.optim)


def values(x):
    """A tensor (of either engine), tuple or number as plain Python values."""
    if hasattr(x, "tolist") and hasattr(x, "dtype") and not isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (tuple, list)):
        return [values(v) for v in x]
    return x


def dtype_name(dt) -> str:
    return str(dt).replace("torch.", "").replace("minidl.", "")


IDIOMS: dict = {}


def idiom(expected):
    """Register an idiom with the values it must return on both engines."""

    def register(fn):
        IDIOMS[fn.__name__] = (fn, expected)
        return fn

    return register


def close(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)
    return a == b


# -- silent wrong results: in-place updates ---------------------------------------------------
@idiom([0.5, 1.5, 2.5])
def manual_sgd_step_updates_in_place(ns):
    torch = ns.torch
    w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (w * 2).sum().backward()
    with torch.no_grad():
        for p in [w]:  # the loop variable: only an in-place update reaches w
            p -= 0.25 * p.grad
    return values(w)


@idiom([[2.0, 3.0], [0.0, 0.0], [6.0, 4.0], 3])
def inplace_methods_and_versions(ns):
    torch = ns.torch
    a = torch.ones(2)
    before = a._version
    a.add_(1).mul_(torch.tensor([1.0, 1.5]))
    b = torch.tensor([5.0, 6.0])
    b.zero_()
    c = torch.tensor([1.0, 2.0])
    c.copy_(torch.tensor([6.0, 4.0]))
    return [values(a), values(b), values(c), a._version - before + 1]


@idiom([[1.0, 0.0, 9.0], [0.0, 0.0]])
def inplace_clamp_fill_and_grad_zero(ns):
    torch = ns.torch
    x = torch.tensor([3.0, -1.0, 20.0])
    x.clamp_(0.0, 9.0)
    x[0] = 1.0
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    (w * w).sum().backward()
    w.grad.zero_()
    return [values(x), values(w.grad)]


@idiom("raises")
def inplace_on_leaf_requiring_grad_raises(ns):
    torch = ns.torch
    w = torch.tensor([1.0], requires_grad=True)
    try:
        w += 1
    except RuntimeError:
        return "raises"
    return "no error"


@idiom("raises")
def modified_saved_tensor_raises_at_backward(ns):
    torch = ns.torch
    a = torch.tensor([1.0, 2.0], requires_grad=True)
    y = a.exp()
    y.mul_(2)  # exp saved its output for backward
    try:
        y.sum().backward()
    except RuntimeError:
        return "raises"
    return "no error"


@idiom([[2.0, 0.0, 2.0], [2.0, 0.0, 6.0]])
def relu_inplace_on_a_non_leaf(ns):
    torch, nn, F = ns.torch, ns.nn, ns.F
    a = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    h = a * 2
    out = nn.ReLU(inplace=True)(h)
    out.sum().backward()
    g = a.grad.tolist()
    b = torch.tensor([1.0, -2.0, 3.0])
    F.relu(b, inplace=True)
    return [g, values(b * torch.tensor([2.0, 2.0, 2.0]))]


@idiom([4.0, 4.0])
def consumer_before_an_inplace_op_keeps_the_old_value(ns):
    torch = ns.torch
    a = torch.tensor([1.0, 2.0], requires_grad=True)
    y = a * 1
    z = y + 1  # uses y before it is tripled in place
    y.mul_(3)
    (z.sum() + y.sum()).backward()
    return values(a.grad)


# -- named tuples from max/min/sort/topk ---------------------------------------------------------
@idiom([[5.0, 7.0], [1, 0], [1, 0], [0, 1], [[1.0, 0.0], [1, 2]]])
def max_min_with_dim_return_values_and_indices(ns):
    torch = ns.torch
    x = torch.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 1.0]])
    v, i = torch.max(x, 1)
    m = x.max(dim=1)
    mn = x.min(1)
    return [values(v), values(i), values(m.indices), values(mn.indices),
            [values(mn.values), values(x.argmin(dim=1, keepdim=False) + 1)]]


@idiom(3)
def accuracy_counting_with_torch_max(ns):
    torch = ns.torch
    out = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    labels = torch.tensor([1, 0, 0, 0])
    _, predicted = torch.max(out.data if ns.torch is not minidl else out, 1)
    return (predicted == labels).sum().item()


@idiom([[3, 2, 1], [0, 2, 1], [3.0, 2.0], [0, 2]])
def sort_and_topk(ns):
    torch = ns.torch
    s = torch.tensor([3, 1, 2]).sort(descending=True)
    t = torch.topk(torch.tensor([3.0, 1.0, 2.0]), 2)
    return [values(s.values), values(s.indices), values(t.values), values(t.indices)]


# -- dtype promotion ---------------------------------------------------------------------------
@idiom(["float32", "float32", "float32", "float32", "float32", "uint8", "int64", "float64",
        "float32"])
def dtype_promotion(ns):
    torch = ns.torch
    u8 = torch.tensor([0, 128, 255], dtype=torch.uint8)
    i64 = torch.tensor([1, 2, 3])
    f32 = torch.ones(3)
    return [dtype_name(d) for d in (
        (u8 / 255.0).dtype, (i64 * 0.5).dtype, (i64 * f32).dtype, torch.Tensor([1, 2]).dtype,
        (f32 ** i64).dtype, (u8 + 3).dtype, (i64 // 2).dtype,
        (f32.double() + f32).dtype, (f32 + torch.tensor(1.0, dtype=torch.float64)).dtype,
    )]


@idiom(["float64", "float64", "float32"])
def set_default_dtype(ns):
    torch = ns.torch
    torch.set_default_dtype(torch.float64)
    try:
        got = [torch.tensor([1.5]).dtype, torch.ones(2).dtype]
    finally:
        torch.set_default_dtype(torch.float32)
    got.append(torch.get_default_dtype())
    return [dtype_name(d) for d in got]


@idiom(["TypeError", "RuntimeError"])
def grad_assignment_is_checked(ns):
    torch = ns.torch
    p = torch.zeros(3, requires_grad=True)
    errors = []
    for value in (0.0, torch.zeros(2)):
        try:
            p.grad = value
        except (TypeError, RuntimeError) as e:
            errors.append(type(e).__name__)
    return errors


# -- the names people use ----------------------------------------------------------------------
@idiom([[2, 3], 3, 2, [3, 2], [[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]], [1, 2, 3], [2, 4],
        [[1.0, 2.0], [1.0, 2.0]], [1.0, 2.0, 1.0, 2.0], 6])
def tensor_shape_methods(ns):
    torch = ns.torch
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    return [list(x.size()), x.size(1), x.dim(), list(x.view(3, 2).shape), values(x.t()),
            list(x.unsqueeze(1).permute(0, 1, 2).transpose(0, 1).shape), list(x.view_as(
                torch.zeros(2, 3)).contiguous().clone().reshape(2, -1)[:, :2].repeat(1, 2)
                .shape), values(torch.tensor([1.0, 2.0]).expand(2, 2)),
            values(torch.tensor([1.0, 2.0]).repeat(2)), x.numel()]


@idiom([[True, False], [False, True], [True, True], [1.0, 4.0], [[5.0]], [2, 1, 2],
        5.0, [0.841471, 0.540302]])
def comparisons_products_and_math(ns):
    torch = ns.torch
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([1.0, 3.0])
    m = torch.tensor([[1.0, 2.0]])
    batch = torch.ones(2, 1, 2).bmm(torch.ones(2, 2, 2))
    return [values(a.eq(b)), values(a.lt(b)), values(a.le(b)), values(a.pow(2)),
            values(m.mm(m.t())), list(batch.shape), round(torch.tensor([3.0, 4.0]).norm()
                                                          .item(), 5),
            [round(v, 6) for v in values(torch.tensor([1.0, 1.0]).sin()[:1].tolist()
                                         + torch.tensor([1.0]).cos().tolist())]]


@idiom([[1, 0], [[1], [0]], "float64", "int64", "float32", "bool", "int32", 3.5, 2, [0, 1],
        [1, 2], True])
def argmax_conversions_and_dunders(ns):
    torch = ns.torch
    x = torch.tensor([[1.0, 5.0], [7.0, 0.0]])
    return [values(x.argmax(dim=1)), values(x.argmax(dim=1, keepdim=True)),
            dtype_name(x.double().dtype), dtype_name(x.long().dtype),
            dtype_name(torch.tensor([1, 2]).float().dtype), dtype_name(x.bool().dtype),
            dtype_name(x.to(torch.int32).dtype), float(torch.tensor(3.5)),
            int(torch.tensor(2)), list(range(torch.tensor(2))),
            torch.tensor([1, 2]).tolist(), torch.zeros(2).requires_grad_().requires_grad]


@idiom(["float32", "int64", "float64", [0.0, 2.0], 2, 0, [0, 1, 2, 3], True, True, False,
        [4, 3], [3, 2]])
def top_level_functions(ns):
    torch = ns.torch
    x = torch.tensor([[0.0, 3.0], [1.0, -1.0]])
    return [dtype_name(torch.FloatTensor([1, 2]).dtype),
            dtype_name(torch.LongTensor([1, 2]).dtype), dtype_name(torch.double),
            values(torch.relu(torch.tensor([-1.0, 1.0])) + torch.tensor([0.0, 1.0])),
            torch.numel(x) // 2, torch.argmax(torch.sigmoid(torch.tanh(x))).item() - 1,
            sorted(torch.randperm(4).tolist()),
            torch.allclose(x, x + 1e-9), torch.equal(x, x.clone()),
            torch.equal(x, x[:1]),
            list(torch.cat([x, x], dim=0).shape[:1]) + list(torch.randn(size=(3,)).shape),
            list(torch.stack([x, x, x], dim=0).shape[:1]) + [torch.randint(10, (2,)).numel()]]


@idiom(["cpu", "cpu", True, True, False, False, "float64", False])
def devices_on_the_cpu(ns):
    torch, nn = ns.torch, ns.nn
    torch.set_default_device("cpu")
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x = torch.ones(2, device=dev).to(dev).cpu()
    model = nn.Linear(2, 2).to(dev)
    model.to(torch.float64)
    return [str(dev), x.device.type, x.device == torch.device("cpu"),
            model.weight.device.type == "cpu", torch.cuda.is_available(),
            torch.accelerator.is_available(), dtype_name(model(x.double()).dtype),
            torch.backends.mps.is_available()]


# -- data ----------------------------------------------------------------------------------------
@idiom([[4, 3], [4], "int64", 3, [7, 3], [3, 3], [2, 0], 2])
def utils_data_idioms(ns):
    torch = ns.torch
    from importlib import import_module

    data = import_module(f"{torch.__name__}.utils.data")
    ds = data.TensorDataset(torch.arange(30.0).reshape(10, 3), torch.arange(10))
    x, y = next(iter(data.DataLoader(ds, batch_size=4, shuffle=True)))
    loader = data.DataLoader(ds, batch_size=4, drop_last=False, pin_memory=False)
    a, b = data.random_split(ds, [7, 3], generator=torch.Generator().manual_seed(0))
    sub = data.Subset(ds, [2, 0])
    sampler = data.BatchSampler(data.SequentialSampler(range(3)), batch_size=2, drop_last=False)
    return [list(x.shape), list(y.shape), dtype_name(y.dtype), len(loader), [len(a), len(b)],
            [len(ds[0][0]), len(ds[0][0])], [int(sub[0][1]), int(sub[1][1])], len(sampler)]


@idiom([[2, 1, 2, 2], [2], "int64", [[0.0, 0.5], [0.25, 1.0]]])
def per_sample_transform_dataset(ns):
    torch = ns.torch
    from importlib import import_module

    data = import_module(f"{torch.__name__}.utils.data")

    class Images(data.Dataset):
        def __init__(self, transform):
            self.images = np.array([[[0, 128], [64, 255]], [[1, 2], [3, 4]]], np.uint8)
            self.transform = transform

        def __len__(self):
            return len(self.images)

        def __getitem__(self, i):
            return self.transform(self.images[i]), i

    def to_tensor(img):
        return torch.tensor(img[None].astype(np.float32) / 255)

    x, y = next(iter(data.DataLoader(Images(to_tensor), batch_size=2)))
    return [list(x.shape), list(y.shape), dtype_name(y.dtype),
            [[round(v, 2) for v in row] for row in x[0, 0].tolist()]]


# -- nn, optim, autograd ---------------------------------------------------------------------------
@idiom([5.0, [0.6, 0.8], [-1.0, 1.0], 6, ["a", "b"], 2, [3, 4]])
def nn_utils_and_containers(ns):
    torch, nn = ns.torch, ns.nn
    p = nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([3.0, 4.0])
    total = nn.utils.clip_grad_norm_([p], max_norm=1.0)
    clipped = [round(v, 4) for v in p.grad.tolist()]
    q = nn.Parameter(torch.zeros(2))
    q.grad = torch.tensor([-5.0, 5.0])
    nn.utils.clip_grad_value_([q], 1.0)
    vec = nn.utils.parameters_to_vector(nn.Linear(2, 2).parameters())
    md = nn.ModuleDict({"a": nn.Linear(1, 1), "b": nn.ReLU()})
    pl = nn.ParameterList([nn.Parameter(torch.ones(1)) for _ in range(2)])
    hooked = []
    lin = nn.Linear(3, 4)
    lin.register_forward_hook(lambda m, args, out: hooked.append(list(out.shape)))
    lin(torch.ones(3, 3))
    return [round(total.item(), 4), clipped, values(q.grad), vec.numel(), list(md.keys()),
            len(list(pl.parameters())), hooked[0]]


@idiom([[[1.0, 1.0]], [[2.0, 2.0]], [[1, 0, 0], [0, 0, 1]], 1.5, 2.5, 0.0])
def backward_hooks_one_hot_and_losses(ns):
    torch, nn, F = ns.torch, ns.nn, ns.F
    lin = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    seen = {}

    def hook(module, grad_input, grad_output):
        seen["in"], seen["out"] = grad_input[0].tolist(), grad_output[0].tolist()
        return (grad_input[0] * 2,)

    lin.register_full_backward_hook(hook)
    x = torch.ones(1, 2, requires_grad=True)
    lin(x).sum().backward()
    logp = torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.75]]))
    nll = F.nll_loss(logp, torch.tensor([0, 0])).item()
    mse = nn.MSELoss()(torch.tensor([1.0, 2.0]), torch.tensor([2, 4])).item()
    probs = F.cross_entropy(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]])).item()
    return [seen["in"], values(x.grad), values(F.one_hot(torch.tensor([0, 2]), 3)),
            round(nll / math.log(2), 4), mse, round(probs - math.log(2), 6)]


@idiom([[0.996838, 1.996838], [0.993598, 1.993596]])
def adadelta_matches(ns):
    torch = ns.torch
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    frozen = torch.zeros(1)
    opt = ns.optim.Adadelta([w, frozen], lr=1.0)
    out = []
    for _ in range(2):
        opt.zero_grad()
        (w * w).sum().backward()
        opt.step()
        out.append([round(v, 6) for v in w.tolist()])
    return out


@idiom([[1.0, 1.0, 0.1, 0.1, 0.01, 0.01]])
def reduce_lr_on_plateau(ns):
    torch = ns.torch
    opt = ns.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = ns.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=1)
    lrs = []
    for loss in (1.0, 1.0, 1.0, 1.0, 1.0, 1.0):
        sched.step(loss)
        lrs.append(round(opt.param_groups[0]["lr"], 6))
    return [lrs]


@idiom([[2.0, 4.0], False, True, False, [3.0, 3.0], "MulBackward0",
        ["torch::autograd::AccumulateGrad", None], [6.0, 6.0]])
def autograd_api(ns):
    torch = ns.torch
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    (g,) = torch.autograd.grad((x * x).sum(), x)
    with torch.set_grad_enabled(False):
        off = (x * 2).requires_grad
    with torch.inference_mode():
        inf = (x * 2).requires_grad

    @torch.no_grad
    def bare(t):
        return (t * 2).requires_grad

    y = torch.tensor([1.0, 1.0], requires_grad=True)
    (y * 3).backward(gradient=torch.ones(2))
    node = (x * 2).grad_fn
    nexts = [None if f is None else f.name() for f, _ in node.next_functions]
    z = torch.tensor([1.0, 1.0], requires_grad=True)
    (z * 3).backward(torch.full((2,), 2.0))
    return [values(g), off, torch.is_grad_enabled(), inf or bare(x), values(y.grad),
            node.name(), nexts, values(z.grad)]


@idiom([[0.0, 0.0, 1.0], [1.5, 1.5, 9.0]])
def custom_autograd_function(ns):
    torch = ns.torch

    class Cube(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return 0.5 * (5 * x**3 - 3 * x)  # the tutorial's Legendre P3

        @staticmethod
        def backward(ctx, grad_output):
            (x,) = ctx.saved_tensors
            return grad_output * 1.5 * (5 * x**2 - 1)

    x = torch.tensor([0.0, 0.0, 1.0], requires_grad=True)
    y = Cube.apply(x)
    y.sum().backward()
    return [[round(v, 4) for v in y.tolist()], [round(v, 4) for v in (x.grad + 3).tolist()]]


@idiom(["Sequential(\n  (0): Linear(in_features=2, out_features=3, bias=True)\n"
        "  (1): ReLU(inplace=True)\n  (2): Dropout(p=0.25, inplace=False)\n"
        "  (3): Linear(in_features=3, out_features=1, bias=False)\n)", True])
def model_and_tensor_repr(ns):
    torch, nn = ns.torch, ns.nn
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(inplace=True), nn.Dropout(0.25),
                          nn.Linear(3, 1, bias=False))
    a = torch.ones(1, requires_grad=True)
    return [repr(model), "grad_fn=<MulBackward0>" in repr(a * 2)]


@idiom([[2.0, 2.0], [1.0, 1.0]])
def tensor_register_hook(ns):
    torch = ns.torch
    x = torch.tensor([1.0, 1.0], requires_grad=True)
    handle = x.register_hook(lambda g: g * 2)  # replaces the gradient
    (x * 1).sum().backward()
    doubled = values(x.grad)
    handle.remove()
    x.grad = None
    (x * 1).sum().backward()
    return [doubled, values(x.grad)]


# -- the patterns of PyTorch's MNIST example (mnist/main.py) -----------------------------------
@idiom([0.7, 2, 8, 115.5094])
def mnist_example_patterns(ns):
    torch, nn, F = ns.torch, ns.nn, ns.F
    from importlib import import_module

    data = import_module(f"{torch.__name__}.utils.data")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 2, 3, 1)
            self.dropout1 = nn.Dropout(0.25)
            self.fc1 = nn.Linear(2 * 3 * 3, 3)

        def forward(self, x):
            x = F.relu(self.conv1(x))
            x = F.max_pool2d(x, 2)
            x = self.dropout1(x)
            x = torch.flatten(x, 1)
            return F.log_softmax(self.fc1(x), dim=1)

    device = torch.device("cpu")
    model = Net().to(device)
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.copy_(torch.linspace(-0.3, 0.4, p.numel()).reshape(p.shape) * (i + 1))
    images = torch.linspace(0.0, 1.0, 8 * 64).reshape(8, 1, 8, 8)
    targets = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    loader = data.DataLoader(data.TensorDataset(images, targets), batch_size=4)
    optimizer = ns.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = ns.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    model.eval()  # dropout off: both engines see the same network
    for data_, target in loader:
        data_, target = data_.to(device), target.to(device)
        optimizer.zero_grad()
        loss = F.nll_loss(model(data_), target)
        loss.backward()
        optimizer.step()
    scheduler.step()
    test_loss, correct = 0.0, 0
    with torch.no_grad():
        for data_, target in loader:
            output = model(data_)
            test_loss += F.nll_loss(output, target, reduction="sum").item()
            pred = output.argmax(dim=1, keepdim=True)
            correct += pred.eq(target.view_as(pred)).sum().item()
    return [round(scheduler.get_last_lr()[0], 6), correct, len(loader.dataset),
            round(test_loss, 4)]


# -- the beginner tutorials' patterns --------------------------------------------------------------
@idiom(0.2161)
def polynomial_fit_with_manual_sgd(ns):
    torch = ns.torch
    x = torch.linspace(-math.pi, math.pi, 200)
    y = torch.sin(x)
    coeffs = [torch.tensor(v, requires_grad=True) for v in (0.1, 0.2, -0.1, 0.05)]
    lr = 1e-6
    for _ in range(300):
        a, b, c, d = coeffs
        pred = a + b * x + c * x**2 + d * x**3
        loss = (pred - y).pow(2).sum()
        loss.backward()
        with torch.no_grad():
            for p in coeffs:
                p -= lr * p.grad
                p.grad = None
    return round(((coeffs[0] + coeffs[1] * x + coeffs[2] * x**2 + coeffs[3] * x**3 - y) ** 2)
                 .mean().item(), 4)


@idiom([1.0, True])
def train_loop_with_accuracy_counting(ns):
    torch, nn, F = ns.torch, ns.nn, ns.F
    torch.manual_seed(0)
    x = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.2], [0.1, 2.0]] * 4)
    labels = torch.tensor([0, 1, 0, 1] * 4)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    with torch.no_grad():  # the same start on both engines
        for i, p in enumerate(model.parameters()):
            p.copy_(torch.linspace(-0.5, 0.5, p.numel()).reshape(p.shape) * (-1) ** i)
    opt = ns.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    first = None
    for _ in range(20):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), labels)
        first = loss.item() if first is None else first
        loss.backward()
        opt.step()
    correct = 0
    with torch.no_grad():
        _, predicted = torch.max(model(x), 1)
        correct += (predicted == labels).sum().item()
    return [correct / len(labels), loss.item() < first]


# -- in-place changes to values that backward does not need ----------------------------------
# An op saves an operand only for a gradient that needs it (PyTorch's rule), so changing the
# other one in place before backward is allowed.
def _changed_after_use(torch, use, change_output=False):
    a = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = a * 1
    z = use(y)
    (z if change_output else y).mul_(3)
    (z.sum() + y.sum()).backward()
    return a.grad.tolist()


@idiom([5.0, 5.0, 5.0])
def inplace_after_multiplying_by_a_scalar(ns):
    return _changed_after_use(ns.torch, lambda y: y * 2)


@idiom([3.5, 3.5, 3.5])
def inplace_after_dividing_by_a_scalar(ns):
    return _changed_after_use(ns.torch, lambda y: y / 2)


@idiom([7.0, 13.0, 19.0])
def inplace_on_a_power_by_a_scalar(ns):
    return _changed_after_use(ns.torch, lambda y: y ** 2, change_output=True)


@idiom([1.0, 2.5, 2.7777777])
def inplace_after_dividing_a_scalar(ns):
    return _changed_after_use(ns.torch, lambda y: 2 / y)


@idiom([[2.0, 1.0, 0.5], [-2.0, -0.5, -0.125], "float32"])
def reciprocal_and_its_gradient(ns):
    torch = ns.torch
    x = torch.tensor([1, 2, 4]).float().requires_grad_()
    y = 2 / x
    y.sum().backward()
    return [y.tolist(), x.grad.tolist(), dtype_name(torch.reciprocal(torch.tensor([1, 2])).dtype)]


# -- signs of zeros and NaN ------------------------------------------------------------------------
@idiom([[0.0, 0.0, -1.0, 1.0], [0.0, 0.0, -1.0, 1.0], [0.0, 0.0, -1.0, 1.0]])
def sign_of_nan_is_zero_and_so_are_the_abs_and_l1_gradients(ns):
    torch, F = ns.torch, ns.F
    x = torch.tensor([float("nan"), 0.0, -2.0, 3.0], requires_grad=True)
    x.abs().sum().backward()
    abs_grad = x.grad.tolist()
    x.grad = None
    F.l1_loss(x, torch.zeros(4), reduction="sum").backward()
    return [x.detach().sign().tolist(), abs_grad, x.grad.tolist()]


@idiom([-1.0, 1.0, -1.0])
def relu_keeps_the_sign_of_a_negative_zero(ns):
    torch, F = ns.torch, ns.F
    z = torch.tensor([-0.0, 0.0])
    fused = F.relu(z + torch.tensor([-0.0, -0.0]))  # -0.0 + -0.0 = -0.0: the add + ReLU pair
    return [math.copysign(1.0, F.relu(z)[0].item()), math.copysign(1.0, F.relu(z)[1].item()),
            math.copysign(1.0, fused[0].item())]


@idiom([[0.5, 0.5, 3.0], "float32", "int32", "float32"])
def clamp_of_an_integer_tensor_promotes_like_an_operator(ns):
    torch = ns.torch
    i = torch.tensor([0, -2, 3], dtype=torch.int32)
    low = i.clamp(min=0.5)
    return [low.tolist(), dtype_name(low.dtype), dtype_name(i.clamp(0, 2).dtype),
            dtype_name(torch.clamp(torch.tensor([True]), max=0.5).dtype)]


# -- gradients at ties and at zero ---------------------------------------------------------------
@idiom([[0.0, 0.5, 0.5], [[0.0, 0.5, 0.5]], [[0.0, 1.0, 0.0]], [0.5, 0.0, 1.0, 1.0],
        [0.5, 1.0, 1.0, 1.0], [0.5, 1.0, 1.0, 1.0], [0.5, 0.0, 1.0, 1.0]])
def gradients_at_ties_are_shared(ns):
    torch = ns.torch
    x = torch.tensor([1.0, 3.0, 3.0], requires_grad=True)
    x.max().backward()  # max() and amax share the gradient among equal maxima
    r = torch.tensor([[1.0, 3.0, 3.0]], requires_grad=True)
    r.amax(dim=1).sum().backward()
    d = torch.tensor([[1.0, 3.0, 3.0]], requires_grad=True)
    d.max(dim=1).values.sum().backward()  # max(dim): to the element its index names
    a = torch.tensor([1.0, 2.0, float("nan"), 5.0], requires_grad=True)
    b = torch.tensor([1.0, 3.0, 1.0, float("nan")], requires_grad=True)
    torch.maximum(a, b).sum().backward()  # a tie: half each; a NaN: both
    grads = [a.grad.tolist(), b.grad.tolist()]
    a.grad, b.grad = None, None
    torch.minimum(a, b).sum().backward()
    return [x.grad.tolist(), r.grad.tolist(), d.grad.tolist(), grads[0], grads[1],
            a.grad.tolist(), b.grad.tolist()]


@idiom([[0.0, 0.0], [[0.0, 0.0]], [0.0, 0.0], [0.0, 0.0], [0.6, 0.8], [[], [], []]])
def zero_gradients_where_the_formula_divides_by_zero(ns):
    torch = ns.torch
    out = []
    for x, make in ((torch.zeros(2), lambda x: x.norm()),
                    (torch.zeros(1, 2), lambda x: x.norm(dim=1).sum()),
                    (torch.ones(2), lambda x: x.std()),
                    (torch.zeros(2), lambda x: (x**0).sum()),
                    (torch.tensor([3.0, 4.0]), lambda x: x.norm())):
        x.requires_grad_(True)
        make(x).backward()
        out.append(x.grad.tolist())
    y = torch.ones(2, 3)  # an empty dim list reduces every dim
    out.append([list(y.sum(dim=()).shape), list(y.mean([]).shape), list(y.amax(()).shape)])
    return out


@idiom([["float64", "float64", "float32", "int32", "float32"], ["float64", "float64", "float64"],
        [[1, 5, 3, 2, 6, 4, 0], [1, 5, 3]], 10000.0, "int64"])
def dtypes_nan_order_and_cumsum_accuracy(ns):
    torch, F = ns.torch, ns.F
    made = [torch.tensor([np.float64(1.0)]), torch.tensor([1, np.float64(2.0)]),
            torch.tensor([np.float32(1.0), 2.0]), torch.tensor([np.int32(1)]),
            torch.tensor([[1.0], [2.0]])]
    a, b = torch.ones(2, requires_grad=True), torch.ones(2, dtype=torch.float64)
    losses = [F.mse_loss(a, b), F.l1_loss(a, b), F.binary_cross_entropy_with_logits(a, b)]
    x = torch.tensor([1.0, float("nan"), 3.0, float("inf"), 2.0, float("nan"), 3.0])
    order = [x.sort(descending=True, stable=True).indices.tolist(), x.topk(3).indices.tolist()]
    return [[dtype_name(t.dtype) for t in made], [dtype_name(t.dtype) for t in losses], order,
            torch.full((10**5,), 0.1).cumsum(0)[-1].item(),
            dtype_name(torch.tensor([1, 2], dtype=torch.int32).cumsum(0).dtype)]


@idiom([["0.weight", "0.bias", "1.weight", "1.bias", "2.1.weight", "2.1.bias"],
        ["Linear", "ReLU", "Linear", "Sequential", "Sequential"]])
def shared_modules_in_state_dict_and_apply_order(ns):
    nn = ns.nn
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, shared, nn.Sequential(nn.ReLU(), shared))
    order = []
    model.apply(lambda m: order.append(type(m).__name__))
    return [list(model.state_dict()), order]


@idiom([[3, 2], [2, 4], [1, 3, 2], [3, 2], [0, 2], [[4.0, 0.0, 2.0]]])
def integers_beside_array_indices_select_first(ns):
    torch = ns.torch
    x = torch.arange(24.0).reshape(2, 3, 4)
    shapes = [list(x[0, :, [1, 2]].shape), list(x[1, [0, 2]].shape),
              list(x[None, 0, :, [1, 2]].shape)]
    y = x.clone()
    y[0, :, [1, 2]] = torch.zeros(3, 2)  # the same rule when assigning
    shapes.append(list(y[0, :, [1, 2]].shape) if y[0, :, [1, 2]].abs().sum() == 0 else None)
    picked = torch.arange(3)[torch.tensor([1, 0, 1], dtype=torch.uint8)].tolist()  # a mask
    w = torch.zeros(1, 3, requires_grad=True)
    index = torch.tensor([0, 2, 0])
    (w[0, index] * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    return shapes + [picked, w.grad.tolist()]


@idiom([[2, 2], "int64", "float32", "int64", "float32", "float64"])
def masked_fill_keeps_the_dtype_and_where_of_numbers_takes_the_defaults(ns):
    torch = ns.torch
    m = torch.tensor([True, False])
    filled = torch.tensor([1, 2]).masked_fill(m, 2.7)
    return [filled.tolist(), dtype_name(filled.dtype), dtype_name(torch.where(m, 1.0, 0.0).dtype),
            dtype_name(torch.where(m, 1, 0).dtype), dtype_name(torch.where(m, 1, 0.5).dtype),
            dtype_name(torch.ones(2, dtype=torch.float64).masked_fill(m, 3).dtype)]


# -- functions PyTorch code reaches for ------------------------------------------------------------
@idiom([[0.0, 0.0, 3.0, 6.0, 6.0], [0.0, 0.0, 1.0, 0.0, 0.0], [-1.0, 0.5, 1.0], [0.0, 1.0, 0.0],
        "ReLU6()"])
def relu6_and_hardtanh_stop_the_gradient_at_their_bounds(ns):
    torch, nn, F = ns.torch, ns.nn, ns.F
    x = torch.tensor([-1.0, 0.0, 3.0, 6.0, 7.0], requires_grad=True)
    y = F.relu6(x)
    y.sum().backward()
    h = torch.tensor([-1.0, 0.5, 1.0], requires_grad=True)
    F.hardtanh(h).sum().backward()  # at a bound: 0, where clamp's gradient would pass
    return [y.tolist(), x.grad.tolist(), nn.Hardtanh()(torch.tensor([-3.0, 0.5, 3.0])).tolist(),
            h.grad.tolist(), repr(nn.ReLU6())]


@idiom([[[3.0, 2.0, 1.0], [6.0, 5.0, 4.0]], [[4.0, 5.0, 6.0], [1.0, 2.0, 3.0]],
        [3.4076059, 6.4076059], [0.09003057, 0.24472847, 0.66524096], float("-inf"),
        [[0, 1], [1, 0]], [[0, 1], [1, 0]], "int64"])
def flip_logsumexp_and_nonzero(ns):
    torch = ns.torch
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    lse = torch.logsumexp(x, dim=1)
    lse[0].backward()
    m = torch.tensor([[0, 1], [2, 0]])
    rows, cols = m.nonzero(as_tuple=True)
    return [x.flip(1).tolist(), torch.flip(x, [0]).tolist(), lse.tolist(), x.grad[0].tolist(),
            torch.tensor([float("-inf")] * 2).logsumexp(0).item(), torch.nonzero(m).tolist(),
            [rows.tolist(), cols.tolist()], dtype_name(m.nonzero().dtype)]


@idiom([[1, 4, 6], [[0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 2.0, 0.0], [0.0, 5.0, 6.0, 0.0]],
        [[0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0]], [[9.0, 0.0, 1.0], [9.0, 4.0, 5.0]]])
def functional_pad_pads_the_last_dims_first_and_crops_on_negative_amounts(ns):
    torch, F = ns.torch, ns.F
    x = torch.arange(8.0).reshape(2, 4).requires_grad_()
    y = F.pad(x, (-1, 0, 1, 0))[:, :3]  # crop one column on the left, one zero row on top
    y = F.pad(y[:, :2], (1, 1))
    y.sum().backward()
    z = F.pad(torch.arange(8.0).reshape(2, 4)[:, :3], (1, -1), value=9.0)
    return [list(F.pad(torch.zeros(1, 2, 3), (1, 2, 0, 2)).shape), y.tolist(), x.grad.tolist(),
            z.tolist()]


# -- the checks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(IDIOMS))
def test_idiom_gives_the_expected_values(name):
    fn, expected = IDIOMS[name]
    got = fn(minidl_namespace())
    assert close(got, expected), f"{name}: minidl gave {got!r}, expected {expected!r}"


@pytest.mark.skipif(real_torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("name", sorted(IDIOMS))
def test_idiom_matches_pytorch(name):
    fn, expected = IDIOMS[name]
    got = fn(torch_namespace())
    assert close(got, expected), f"{name}: PyTorch gave {got!r}, the table says {expected!r}"


# -- where minidl differs it raises clearly (README "Differences from PyTorch") ----------------
@pytest.mark.parametrize("make", [
    lambda: minidl.device("cuda"),
    lambda: minidl.ones(2, device="cuda"),
    lambda: minidl.ones(2).to("mps"),
    lambda: minidl.ones(2).cuda(),
    lambda: minidl.nn.Linear(2, 2).to("cuda:0"),
    lambda: minidl.nn.Linear(2, 2).cuda(),
])
def test_accelerator_devices_raise_naming_the_cpu_only_engine(make):
    with pytest.raises(RuntimeError, match="CPU-only"):
        make()


@pytest.mark.parametrize("make, error, match", [
    (lambda: minidl.ones(2).half(), TypeError, "float16"),
    (lambda: minidl.nn.Linear(2, 2).half(), TypeError, "float16"),
    (lambda: minidl.float16, AttributeError, "float16"),
    (lambda: minidl.ones(2, requires_grad=True).sum().backward(create_graph=True),
     NotImplementedError, "create_graph"),
    (lambda: minidl.save(minidl.nn.ReLU(), "unused.ckpt"), TypeError, "state_dict"),
    (lambda: minidl.utils.data.DataLoader([1, 2], batch_size=None), NotImplementedError,
     "batch_size=None"),
])
def test_unsupported_features_raise_clearly(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_inplace_change_to_an_operand_saved_by_mul_raises_at_backward():
    a = minidl.tensor([1.0, 2.0], requires_grad=True)
    b = minidl.tensor([3.0, 4.0], requires_grad=True)
    y = a * 1
    w = y * b  # Mul saves y for b's gradient
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        w.sum().backward()


def test_int_tensor_inplace_with_float_result_raises():
    x = minidl.tensor([1, 2])
    with pytest.raises(RuntimeError, match="can't be cast"):
        x += 0.5
    with pytest.raises(RuntimeError, match="does not match this tensor's shape"):
        minidl.zeros(2).add_(minidl.ones(2, 2))


# -- what PyTorch refuses, minidl refuses with the same exception type -------------------------
REFUSED = {
    "int_floordiv_by_zero": (lambda t: t.torch.tensor([3, 4]) // t.torch.tensor([0, 1]),
                             RuntimeError, "ZeroDivisionError"),
    "int_mod_by_zero": (lambda t: t.torch.tensor([3, 4]) % 0, RuntimeError, "ZeroDivisionError"),
    "float_minus_bool": (lambda t: 1.0 - t.torch.tensor([True]), RuntimeError,
                         "Subtraction.*bool tensor"),
    "bool_minus_bool": (lambda t: t.torch.tensor([True]) - t.torch.tensor([False]), RuntimeError,
                        "two bool tensors"),
    "neg_bool": (lambda t: -t.torch.tensor([True]), RuntimeError, "Negation.*bool tensor"),
    "split_sizes_not_summing": (lambda t: t.torch.arange(10).split([2, 3]), RuntimeError,
                                "split_with_sizes expects split_sizes to sum exactly to 10"),
    "std_of_ints": (lambda t: t.torch.tensor([1, 2, 3]).std(), RuntimeError, "std"),
    "var_of_ints": (lambda t: t.torch.tensor([1, 2, 3]).var(), RuntimeError, "var"),
    "softmax_of_ints": (lambda t: t.F.softmax(t.torch.tensor([1, 2]), dim=0),
                        NotImplementedError, "softmax"),
    "where_int_condition": (lambda t: t.torch.where(t.torch.tensor([1, 0]),
                                                    t.torch.ones(2), t.torch.zeros(2)),
                            RuntimeError, "where expected condition to be a boolean tensor"),
    "masked_fill_int_mask": (lambda t: t.torch.ones(2).masked_fill(t.torch.tensor([1, 0]), 0.0),
                             RuntimeError, "masked_fill_ only supports boolean masks"),
    "index_put_other_dtype": (lambda t: t.torch.zeros(3, dtype=t.torch.float64).__setitem__(
        t.torch.tensor([True, False, True]), t.torch.ones(2)), RuntimeError,
        "Index put requires the source and destination dtypes match"),
    "int_to_negative_int_power": (lambda t: t.torch.tensor([2, 3]) ** -1, RuntimeError,
                                  "Integers to negative integer powers are not allowed"),
}


def test_softmax_module_without_dim_and_view_as_another_dtype():
    """nn.Softmax() picks PyTorch's implicit dim (with its warning); view(dtype) reinterprets
    the bytes, the last dim scaled by the element sizes."""
    with pytest.warns(UserWarning, match="Implicit dimension choice"):
        out = minidl.nn.Softmax()(minidl.tensor([[1.0, 1.0], [2.0, 2.0]]))
    np.testing.assert_allclose(out.numpy(), [[0.5, 0.5], [0.5, 0.5]])
    x = minidl.tensor([1.0, -2.0], dtype=minidl.float32)
    bits = x.view(minidl.int32)
    assert bits.tolist() == np.array([1.0, -2.0], np.float32).view(np.int32).tolist()
    assert tuple(x.view(minidl.uint8).shape) == (8,)


@pytest.mark.parametrize("engine", ["minidl", "torch"])
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_like_pytorch(name, engine):
    if engine == "torch" and real_torch is None:
        pytest.skip("PyTorch is not installed")
    fn, error, match = REFUSED[name]
    with pytest.raises(error, match=match):
        fn(minidl_namespace() if engine == "minidl" else torch_namespace())


def test_float_division_by_zero_stays_inf_and_nan():
    x = minidl.tensor([3.0, -1.0, 0.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        quotient, remainder = values(x // 0), values(x % 0.0)
    assert quotient[:2] == [math.inf, -math.inf] and math.isnan(quotient[2])
    assert all(math.isnan(r) for r in remainder)


@pytest.mark.parametrize("call", [
    lambda m, a, b: a + b, lambda m, a, b: a * b, lambda m, a, b: m.where(a > 0, a, b),
    lambda m, a, b: m.atan2(a, b), lambda m, a, b: a.add_(b)])
@pytest.mark.parametrize("shapes", [((2, 3), (3, 2)), ((2,), (3, 1, 4)), ((5, 2, 1), (3, 1))])
def test_shapes_that_do_not_broadcast_raise_torchs_runtime_error(call, shapes):
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError) as theirs:
        call(torch, torch.ones(shapes[0]), torch.ones(shapes[1]))
    with pytest.raises(RuntimeError) as ours:
        call(minidl, minidl.ones(*shapes[0]), minidl.ones(*shapes[1]))
    assert str(theirs.value).splitlines()[0] in str(ours.value)


def test_matmul_batch_shapes_that_do_not_broadcast_raise_runtime_error():
    with pytest.raises(RuntimeError, match=r"size of tensor a \(2\) must match the size of "
                       r"tensor b \(3\) at non-singleton dimension 0"):
        minidl.ones(2, 2, 3) @ minidl.ones(3, 3, 1)
