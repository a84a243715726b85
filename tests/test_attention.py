"""scaled_dot_product_attention, MultiheadAttention and the Transformer encoder: NumPy
reference, float64 gradchecks, and PyTorch's values, weights and gradients (parameters loaded
from PyTorch's state_dict) when torch is installed."""

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.autograd import gradcheck
from minidl.nn import functional as F

RNG = np.random.default_rng(7)


def sdpa_reference(q, k, v, allowed=None, scale=None):
    scores = q @ np.swapaxes(k, -1, -2) * (1 / np.sqrt(q.shape[-1]) if scale is None else scale)
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)) @ v


def t64(a, grad=True):
    return minidl.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_matches_numpy_and_gradchecks(causal):
    q, k, v = (RNG.standard_normal(s) for s in [(2, 4, 3), (2, 4, 3), (2, 4, 5)])
    allowed = np.tril(np.ones((4, 4), bool)) if causal else None
    got = F.scaled_dot_product_attention(t64(q, False), t64(k, False), t64(v, False),
                                         is_causal=causal)
    np.testing.assert_allclose(got.numpy(), sdpa_reference(q, k, v, allowed), rtol=1e-12)
    assert gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=causal),
                     [t64(q), t64(k), t64(v)])


def test_sdpa_masks_scale_and_fully_masked_rows_match_torch():
    torch = pytest.importorskip("torch")
    q, k, v = (RNG.standard_normal(s) for s in [(2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 6)])
    dead = np.ones((4, 5), bool)
    dead[1] = False  # row 1 attends to nothing: weights 0, output 0, as PyTorch
    for kw in [{}, {"is_causal": True}, {"attn_mask": RNG.standard_normal((4, 5))},
               {"attn_mask": RNG.random((2, 1, 4, 5)) > 0.3}, {"scale": 0.3},
               {"attn_mask": dead}]:
        ours = [t64(a) for a in (q, k, v)]
        theirs = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
        mk = {n: (minidl.tensor(x) if isinstance(x, np.ndarray) else x) for n, x in kw.items()}
        tk = {n: (torch.tensor(x) if isinstance(x, np.ndarray) else x) for n, x in kw.items()}
        a = F.scaled_dot_product_attention(*ours, **mk)
        b = torch.nn.functional.scaled_dot_product_attention(*theirs, **tk)
        g = RNG.standard_normal(tuple(a.shape))
        a.backward(minidl.tensor(g))
        b.backward(torch.tensor(g))
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), atol=1e-13)
        for x, y in zip(ours, theirs):
            np.testing.assert_allclose(x.grad.numpy(), y.grad.numpy(), atol=1e-13)


MHA_OPTIONS = [{}, {"batch_first": True}, {"kdim": 6, "vdim": 5}, {"bias": False},
               {"add_bias_kv": True}, {"add_zero_attn": True}]
MHA_CALLS = ["plain", "key_padding_mask", "attn_mask", "bool_attn_mask_per_head",
             "no_weights"]


@pytest.mark.parametrize("options", MHA_OPTIONS, ids=lambda o: "-".join(o) or "default")
@pytest.mark.parametrize("call", MHA_CALLS)
def test_multihead_attention_matches_torch(options, call):
    torch = pytest.importorskip("torch")
    theirs = torch.nn.MultiheadAttention(8, 2, **options).double()
    ours = nn.MultiheadAttention(8, 2, **options).double()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict({k: minidl.tensor(v.detach().numpy())
                          for k, v in theirs.state_dict().items()})
    length, source, batch = 4, 5, 3
    order = (lambda a, b, c: (b, a, c)) if options.get("batch_first") else (lambda *s: s)
    q = RNG.standard_normal(order(length, batch, 8))
    k = RNG.standard_normal(order(source, batch, options.get("kdim", 8)))
    v = RNG.standard_normal(order(source, batch, options.get("vdim", 8)))
    padding = RNG.random((batch, source)) < 0.3
    padding[:, 0] = False
    extra = {"plain": {}, "key_padding_mask": {"key_padding_mask": padding},
             "attn_mask": {"attn_mask": RNG.standard_normal((length, source))},
             "bool_attn_mask_per_head": {"attn_mask": RNG.standard_normal((length, source)) > 1,
                                         "average_attn_weights": False},
             "no_weights": {"need_weights": False}}[call]
    mine = [t64(a) for a in (q, k, v)]
    torchs = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    a, aw = ours(*mine, **{n: (minidl.tensor(x) if isinstance(x, np.ndarray) else x)
                           for n, x in extra.items()})
    b, bw = theirs(*torchs, **{n: (torch.tensor(x) if isinstance(x, np.ndarray) else x)
                               for n, x in extra.items()})
    g = RNG.standard_normal(tuple(a.shape))
    a.backward(minidl.tensor(g))
    b.backward(torch.tensor(g))
    np.testing.assert_allclose(a.numpy(), b.detach().numpy(), atol=1e-13)
    assert (aw is None) == (bw is None)
    if aw is not None:
        np.testing.assert_allclose(aw.numpy(), bw.detach().numpy(), atol=1e-13)
    for x, y in zip(mine, torchs):
        np.testing.assert_allclose(x.grad.numpy(), y.grad.numpy(), atol=1e-13)
    params = dict(ours.named_parameters())
    for name, p in theirs.named_parameters():
        np.testing.assert_allclose(params[name].grad.numpy(), p.grad.numpy(), atol=1e-12)


def test_multihead_attention_gradcheck_unbatched_and_errors():
    minidl.manual_seed(0)
    mha = nn.MultiheadAttention(4, 2).double()
    x = t64(RNG.standard_normal((3, 4)))
    out, weights = mha(x, x, x)
    assert tuple(out.shape) == (3, 4) and tuple(weights.shape) == (3, 3)
    np.testing.assert_allclose(weights.numpy().sum(-1), 1.0, rtol=1e-12)
    assert gradcheck(lambda t: mha(t, t, t)[0], [x])
    with pytest.raises(AssertionError, match="divisible by num_heads"):
        nn.MultiheadAttention(5, 2)
    with pytest.raises(RuntimeError, match="Need attn_mask"):
        mha(x, x, x, is_causal=True)
    with pytest.raises(RuntimeError, match="shape of the attn_mask"):
        mha(x, x, x, attn_mask=minidl.zeros(2, 2, dtype=np.float64))


@pytest.mark.parametrize("options", [{}, {"norm_first": True, "activation": "gelu"},
                                     {"batch_first": True, "bias": False}],
                         ids=["post-norm", "pre-norm-gelu", "batch-first-no-bias"])
def test_transformer_encoder_matches_torch(options):
    torch = pytest.importorskip("torch")
    theirs = torch.nn.TransformerEncoder(
        torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, **options), 2,
        norm=torch.nn.LayerNorm(8)).double()
    ours = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, **options),
                                 2, norm=nn.LayerNorm(8)).double()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict({k: minidl.tensor(v.detach().numpy())
                          for k, v in theirs.state_dict().items()})
    shape = (3, 4, 8) if options.get("batch_first") else (4, 3, 8)
    x = RNG.standard_normal(shape)
    padding = np.zeros((3, 4), bool)
    padding[1, -1] = True
    mx, tx = t64(x), torch.tensor(x, requires_grad=True)
    a = ours(mx, src_key_padding_mask=minidl.tensor(padding))
    b = theirs(tx, src_key_padding_mask=torch.tensor(padding))
    a.sum().backward()
    b.sum().backward()
    np.testing.assert_allclose(a.numpy(), b.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), atol=1e-12)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(4, dtype=torch.float64)
    a = ours(mx, mask=minidl.tensor(causal.numpy()), is_causal=True)
    b = theirs(tx, mask=causal, is_causal=True)
    np.testing.assert_allclose(a.numpy(), b.detach().numpy(), atol=1e-12)
