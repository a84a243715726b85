"""Module, Parameter, Sequential, ModuleList: registration, traversal, modes, state dicts."""

import numpy as np
import pytest

import minidl
from minidl import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)
        self.scale = nn.Parameter(np.ones(4, dtype=np.float32))
        self.register_buffer("steps", minidl.zeros(1))
        self.register_buffer("cache", minidl.zeros(2), persistent=False)
        self.note = "not registered"

    def forward(self, x):
        return self.bn(self.fc(x)) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(4, 2))

    def forward(self, x):
        return self.head(self.block(x))


def test_parameter_is_a_tensor_that_requires_grad():
    p = nn.Parameter(np.zeros((2, 3), dtype=np.float32))
    assert isinstance(p, minidl.Tensor) and p.requires_grad and p.is_leaf
    assert not nn.Parameter(minidl.zeros(2), requires_grad=False).requires_grad
    assert repr(p).startswith("Parameter containing:")
    # The result of an op on a Parameter is a plain Tensor.
    assert type(p * 2) is minidl.Tensor


def test_named_parameters_buffers_children_and_modules():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["block.scale", "block.fc.weight", "block.fc.bias", "block.bn.weight",
                     "block.bn.bias", "head.1.weight", "head.1.bias"]
    assert [n for n, _ in net.named_buffers()] == [
        "block.steps", "block.cache", "block.bn.running_mean", "block.bn.running_var",
        "block.bn.num_batches_tracked"]
    assert [type(m).__name__ for m in net.children()] == ["Block", "Sequential"]
    assert [n for n, _ in net.named_modules()] == ["", "block", "block.fc", "block.bn", "head",
                                                   "head.0", "head.1"]
    assert len(list(net.parameters(recurse=False))) == 0


def test_shared_parameter_is_listed_once():
    shared = nn.Linear(2, 2)
    seq = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(seq.parameters())) == 2
    assert len(list(seq.modules())) == 3  # Sequential, Linear (once), ReLU


def test_reassignment_and_none_slots():
    m = nn.Linear(2, 3, bias=False)
    assert m.bias is None and [n for n, _ in m.named_parameters()] == ["weight"]
    m.bias = nn.Parameter(np.zeros(3, dtype=np.float32))
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"]
    with pytest.raises(TypeError, match="parameter 'weight'"):
        m.weight = np.zeros((3, 2))
    m.weight = None
    assert [n for n, _ in m.named_parameters()] == ["bias"]
    del m.bias
    assert list(m.named_parameters()) == []


def test_setattr_before_init_is_a_clear_error():
    class Bad(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Bad()


def test_train_eval_propagate():
    net = Net()
    assert net.training and net.block.bn.training
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_zero_grad_both_ways():
    net = Net()
    net(minidl.randn(5, 3)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_state_dict_keys_share_memory_and_skip_non_persistent_buffers():
    net = Net()
    sd = net.state_dict()
    assert list(sd) == ["block.scale", "block.steps", "block.fc.weight", "block.fc.bias",
                        "block.bn.weight", "block.bn.bias", "block.bn.running_mean",
                        "block.bn.running_var", "block.bn.num_batches_tracked",
                        "head.1.weight", "head.1.bias"]
    assert not sd["block.fc.weight"].requires_grad
    assert np.shares_memory(sd["block.fc.weight"].numpy(), net.block.fc.weight.numpy())


def test_load_state_dict_round_trip_copies_values():
    minidl.manual_seed(0)
    a, b = Net(), Net()
    snapshot = {k: v.numpy().copy() for k, v in a.state_dict().items()}
    result = b.load_state_dict(snapshot)
    assert result.missing_keys == [] and result.unexpected_keys == []
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), snapshot[k])
    snapshot["block.fc.weight"][0, 0] += 1
    assert b.block.fc.weight.numpy()[0, 0] != snapshot["block.fc.weight"][0, 0]


def test_load_state_dict_strict_errors_name_the_keys():
    net = Net()
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    del sd["head.1.bias"]
    sd["extra.weight"] = np.zeros(1)
    with pytest.raises(RuntimeError, match=r"missing key\(s\): head.1.bias.*unexpected key\(s\): "
                                           r"extra.weight"):
        net.load_state_dict(sd)
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["head.1.bias"] and result.unexpected_keys == ["extra.weight"]


def test_load_state_dict_shape_mismatch_raises_and_modifies_nothing():
    net = Net()
    before = net.block.fc.bias.numpy().copy()
    sd = {k: v.numpy().copy() + 1 for k, v in net.state_dict().items()}
    sd["head.1.weight"] = np.zeros((3, 4), np.float32)
    with pytest.raises(RuntimeError, match=r"size mismatch for head.1.weight: the checkpoint "
                                           r"has shape \(3, 4\), this model has shape \(2, 4\)"):
        net.load_state_dict(sd, strict=False)
    np.testing.assert_array_equal(net.block.fc.bias.numpy(), before)


def test_load_state_dict_casts_dtype():
    m = nn.Linear(2, 2)
    m.load_state_dict({"weight": np.ones((2, 2)), "bias": np.zeros(2)})
    assert m.weight.dtype == np.float32 and m.weight.numpy().sum() == 4


def test_repr_is_pytorch_layout_and_summary_adds_counts():
    plain = repr(Net())
    assert "(fc): Linear(in_features=3, out_features=4, bias=True)" in plain
    assert "params" not in plain and plain.splitlines()[-1] == ")"
    text = Net().summary()
    assert "(fc): Linear(in_features=3, out_features=4, bias=True)" in text
    assert "weight (4, 3), bias (4,): 16 params" in text
    assert "(head): Sequential(" in text and "(0): ReLU()" in text
    assert text.splitlines()[-1] == "Total parameters: 38 (trainable: 38)"


def test_sequential_indexing_iteration_and_append():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    seq.append(nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[-1], nn.Linear)
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear"]
    head = seq[1:]
    assert isinstance(head, nn.Sequential) and len(head) == 2
    x = minidl.randn(4, 2)
    np.testing.assert_array_equal(seq(x).numpy(), seq[2](seq[1](seq[0](x))).numpy())
    with pytest.raises(IndexError, match="out of range"):
        seq[3]


def test_module_list_registers_and_mutates():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(2)])
    layers.append(nn.Linear(2, 1))
    layers.insert(0, nn.ReLU())
    assert [type(m).__name__ for m in layers] == ["ReLU", "Linear", "Linear", "Linear"]
    assert len(list(layers.parameters())) == 6
    layers[0] = nn.Tanh()
    assert isinstance(layers[0], nn.Tanh)
    assert next(layers.named_parameters())[0] == "1.weight"


def test_apply_visits_every_module():
    visited = []
    Net().apply(lambda m: visited.append(type(m).__name__))
    assert visited[-1] == "Net" and visited.count("Linear") == 2


def test_identity_and_flatten():
    x = minidl.randn(2, 3, 4, 5)
    assert nn.Identity(7, foo=1)(x) is x
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(0, 1)(x).shape == (6, 4, 5)


def test_sequential_and_module_list_delete_insert_pop_renumber_like_pytorch():
    seq = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 3), nn.Tanh())
    del seq[1]
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert not hasattr(seq, "3") and len(seq) == 3
    del seq[0:2]
    seq.insert(0, nn.ReLU())
    seq.append(nn.Linear(3, 3))
    assert [type(m).__name__ for m in seq] == ["ReLU", "Tanh", "Linear"]
    assert isinstance(seq.pop(0), nn.ReLU) and list(seq._modules) == ["0", "1"]
    seq[0] = nn.Sigmoid()
    assert isinstance(seq[0], nn.Sigmoid)
    with pytest.raises(IndexError, match="out of range for length 2"):
        del seq[9]
    layers = nn.ModuleList([nn.ReLU(), nn.Tanh(), nn.Sigmoid()])
    del layers[0]
    assert list(layers._modules) == ["0", "1"] and isinstance(layers.pop(0), nn.Tanh)


def test_get_submodule_follows_dotted_paths_like_pytorch():
    net = nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.ReLU(), nn.Linear(3, 1)))
    assert net.get_submodule("") is net
    assert net.get_submodule("1.1") is net[1][1]
    with pytest.raises(AttributeError, match="Sequential has no attribute `7`"):
        net.get_submodule("1.7")
    with pytest.raises(AttributeError, match="`weight` is not an nn.Module"):
        net.get_submodule("0.weight")


# -- state_dict options, state-dict hooks, extra state, backward pre-hooks (vs torch 2.13) ----
def _twin_models():
    torch = pytest.importorskip("torch")
    ours = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    return torch, ours, theirs


def test_state_dict_prefix_keep_vars_destination_and_positional_args_as_torch():
    torch, ours, theirs = _twin_models()
    assert list(ours.state_dict(prefix="m")) == list(theirs.state_dict(prefix="m"))
    kept = ours.state_dict(keep_vars=True)
    assert kept["0.weight"] is ours[0].weight
    assert ours.state_dict()["0.weight"] is not ours[0].weight
    dest = {"x": 1}
    assert ours.state_dict(destination=dest) is dest and list(dest)[0] == "x"
    with pytest.warns(FutureWarning, match="Positional args"):
        assert list(ours.state_dict(None, "p.")) == list(theirs.state_dict(prefix="p."))


def test_state_dict_and_load_hooks_run_as_torchs():
    torch, ours, theirs = _twin_models()
    for model in (ours, theirs):
        calls = []
        model[0].register_state_dict_pre_hook(lambda m, prefix, keep, calls=calls:
                                              calls.append(("pre", prefix)))

        def post(m, sd, prefix, meta, calls=calls):
            calls.append(("post", prefix))
            sd[prefix + "note"] = 1

        model[0].register_state_dict_post_hook(post)
        sd = model.state_dict()
        assert calls == [("pre", "0."), ("post", "0.")] and sd["0.note"] == 1
    # A pre-hook renaming an old key; a post-hook clearing an unexpected key.
    torch, ours, theirs = _twin_models()
    for model, lib in ((ours, None), (theirs, torch)):
        old = {k.replace("0.weight", "0.w_old"): v.numpy() for k, v in theirs.state_dict().items()}
        if lib is not None:
            old = {k: torch.tensor(v) for k, v in old.items()}
        old["junk"] = old["0.bias"]

        def rename(m, sd, prefix, meta, strict, missing, unexpected, errors):
            sd[prefix + "weight"] = sd.pop(prefix + "w_old")

        def forgive(m, keys):
            keys.unexpected_keys.remove("junk")

        model[0].register_load_state_dict_pre_hook(rename)
        model.register_load_state_dict_post_hook(forgive)
        result = model.load_state_dict(old)
        assert result.missing_keys == [] and result.unexpected_keys == []
        assert "0.w_old" in old   # the caller's dict is left alone
    fresh = nn.Linear(2, 2)
    fresh.register_load_state_dict_post_hook(lambda m, keys: keys)
    with pytest.raises(AssertionError, match="inplace"):
        fresh.load_state_dict(fresh.state_dict())


def test_extra_state_round_trip_and_missing_key():
    torch = pytest.importorskip("torch")

    def with_extra(base):
        class Counter(base.Module):
            def __init__(self):
                super().__init__()
                self.count = 3

            def get_extra_state(self):
                return {"count": self.count}

            def set_extra_state(self, state):
                self.count = state["count"]

        return Counter

    ours, theirs = with_extra(nn)(), with_extra(torch.nn)()
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["_extra_state"]
    fresh = with_extra(nn)()
    fresh.count = 0
    fresh.load_state_dict(ours.state_dict())
    assert fresh.count == 3
    with pytest.raises(RuntimeError, match="missing key.*_extra_state"):
        fresh.load_state_dict({})
    assert fresh.load_state_dict({}, strict=False).missing_keys == \
        theirs.load_state_dict({}, strict=False).missing_keys == ["_extra_state"]
    with pytest.raises(TypeError, match="dict-like"):
        fresh.load_state_dict([1])


def test_full_backward_pre_hook_replaces_grad_output_as_torch():
    torch = pytest.importorskip("torch")
    results = []
    for lib, new in ((minidl, minidl.tensor), (torch, torch.tensor)):
        lib.manual_seed(0)
        layer = (nn if lib is minidl else torch.nn).Linear(2, 2, dtype=lib.float64)
        with lib.no_grad():
            layer.weight.copy_(new([[1.0, 2.0], [3.0, -1.0]], dtype=lib.float64))
        seen = []

        def pre(m, grad_output, seen=seen):
            seen.append(grad_output[0].detach().clone())
            return (grad_output[0] * 3,)

        layer.register_full_backward_pre_hook(pre)
        layer.register_full_backward_hook(lambda m, gi, go, seen=seen: seen.append(go[0].clone()))
        x = new([[0.5, -1.0]], dtype=lib.float64, requires_grad=True)
        (layer(x) * new([[1.0, 2.0]], dtype=lib.float64)).sum().backward()
        results.append([np.asarray(t.numpy()) for t in seen] + [x.grad.numpy()])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_module_type_set_submodule_to_empty_share_memory():
    torch = pytest.importorskip("torch")
    ours, theirs = nn.BatchNorm1d(2).type(minidl.float64), torch.nn.BatchNorm1d(2).type(
        torch.float64)
    assert {k: str(v.dtype).split(".")[-1] for k, v in ours.state_dict().items()} == \
        {k: str(v.dtype).split(".")[-1] for k, v in theirs.state_dict().items()}
    seq = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU()))
    seq.set_submodule("1.0", nn.Tanh())
    assert isinstance(seq[1][0], nn.Tanh)
    seq.set_submodule("1.extra", nn.ReLU())
    with pytest.raises(AttributeError, match="has no attribute `nope`"):
        seq.set_submodule("1.nope", nn.ReLU(), strict=True)
    with pytest.raises(AttributeError, match="is not an nn.Module"):
        seq.set_submodule("0.weight", nn.ReLU())
    with pytest.raises(ValueError, match="without a target"):
        seq.set_submodule("", nn.ReLU())
    assert seq.to_empty(device="cpu") is seq and seq.share_memory() is seq
    with pytest.raises(RuntimeError):
        seq.to_empty(device="cuda")
    with pytest.raises(NotImplementedError, match="register_full_backward_hook"):
        seq.register_backward_hook(lambda *a: None)
