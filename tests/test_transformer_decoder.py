"""TransformerDecoderLayer, TransformerDecoder and Transformer against PyTorch 2.13: the same
state_dict keys, PyTorch's parameters loaded, outputs and the gradients of the inputs and of
every parameter in float64 (eval mode, so dropout is off), over post/pre-norm, batch_first,
gelu, bool/float/causal masks and key padding masks; the error cases."""

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.autograd import gradcheck

# PyTorch's warnings on mixed bool/float masks and on nested tensors say nothing about values.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
RNG = np.random.default_rng(11)
D_MODEL, NHEAD, FF = 8, 2, 16
TGT, SRC, BATCH = 4, 5, 3


def load_from(ours, theirs):
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict({k: minidl.tensor(v.detach().numpy())
                          for k, v in theirs.state_dict().items()})
    ours.eval()
    theirs.eval()


def masks(kind):
    """The keyword arguments (numpy masks and hints) of the case `kind`."""
    padding_t = np.zeros((BATCH, TGT), bool)
    padding_t[1, -1] = True
    padding_s = np.zeros((BATCH, SRC), bool)
    padding_s[0, -2:] = True
    causal = np.triu(np.full((TGT, TGT), -np.inf), 1)
    cases = {
        "none": {},
        "causal": {"tgt_mask": causal, "tgt_is_causal": True},
        "bool_masks": {"tgt_mask": np.triu(np.ones((TGT, TGT), bool), 1),
                       "memory_mask": RNG.random((TGT, SRC)) > 0.7},
        "float_memory_mask": {"memory_mask": RNG.standard_normal((TGT, SRC))},
        "per_head_tgt_mask": {"tgt_mask": RNG.standard_normal((BATCH * NHEAD, TGT, TGT))},
        "key_padding": {"tgt_key_padding_mask": padding_t,
                        "memory_key_padding_mask": padding_s},
        "causal_and_padding": {"tgt_mask": causal, "tgt_key_padding_mask": padding_t,
                               "memory_key_padding_mask": padding_s},
    }
    return cases[kind]


def convert(kw, module):
    return {n: (module.tensor(x) if isinstance(x, np.ndarray) else x) for n, x in kw.items()}


def inputs(batch_first, d_model=D_MODEL):
    order = (lambda a, b: (b, a, d_model)) if batch_first else (lambda a, b: (a, b, d_model))
    return RNG.standard_normal(order(TGT, BATCH)), RNG.standard_normal(order(SRC, BATCH))


def compare(ours, theirs, our_inputs, their_inputs, our_kw, their_kw, torch):
    a = ours(*our_inputs, **our_kw)
    b = theirs(*their_inputs, **their_kw)
    assert tuple(a.shape) == tuple(b.shape)
    g = RNG.standard_normal(tuple(a.shape))
    a.backward(minidl.tensor(g))
    b.backward(torch.tensor(g))
    np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=0, atol=1e-12)
    for x, y in zip(our_inputs, their_inputs):
        np.testing.assert_allclose(x.grad.numpy(), y.grad.numpy(), rtol=0, atol=1e-12)
    params = dict(ours.named_parameters())
    assert set(params) == {n for n, _ in theirs.named_parameters()}
    for name, p in theirs.named_parameters():
        assert p.grad is not None and np.abs(p.grad.numpy()).max() > 0, name
        np.testing.assert_allclose(params[name].grad.numpy(), p.grad.numpy(), rtol=0,
                                   atol=1e-12, err_msg=name)


def pair(tgt, memory, torch):
    ours = [minidl.tensor(a, requires_grad=True) for a in (tgt, memory)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (tgt, memory)]
    return ours, theirs


OPTIONS = [{}, {"norm_first": True}, {"batch_first": True}, {"activation": "gelu"},
           {"bias": False, "norm_first": True, "batch_first": True}]
MASKS = ["none", "causal", "bool_masks", "float_memory_mask", "per_head_tgt_mask",
         "key_padding", "causal_and_padding"]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(o) or "default")
@pytest.mark.parametrize("kind", MASKS)
def test_decoder_layer_matches_torch(options, kind):
    torch = pytest.importorskip("torch")
    theirs = torch.nn.TransformerDecoderLayer(D_MODEL, NHEAD, FF, **options).double()
    ours = nn.TransformerDecoderLayer(D_MODEL, NHEAD, FF, **options).double()
    load_from(ours, theirs)
    mine, torchs = pair(*inputs(options.get("batch_first", False)), torch)
    kw = masks(kind)
    compare(ours, theirs, mine, torchs, convert(kw, minidl), convert(kw, torch), torch)


@pytest.mark.parametrize("options", OPTIONS[:3], ids=lambda o: "-".join(o) or "default")
@pytest.mark.parametrize("kind", ["none", "causal", "causal_and_padding"])
def test_decoder_stack_with_norm_matches_torch(options, kind):
    torch = pytest.importorskip("torch")
    theirs = torch.nn.TransformerDecoder(
        torch.nn.TransformerDecoderLayer(D_MODEL, NHEAD, FF, **options), 2,
        norm=torch.nn.LayerNorm(D_MODEL)).double()
    ours = nn.TransformerDecoder(nn.TransformerDecoderLayer(D_MODEL, NHEAD, FF, **options), 2,
                                 norm=nn.LayerNorm(D_MODEL)).double()
    load_from(ours, theirs)
    mine, torchs = pair(*inputs(options.get("batch_first", False)), torch)
    kw = masks(kind)
    compare(ours, theirs, mine, torchs, convert(kw, minidl), convert(kw, torch), torch)


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(o) or "default")
def test_transformer_matches_torch(options):
    torch = pytest.importorskip("torch")
    theirs = torch.nn.Transformer(D_MODEL, NHEAD, 2, 2, FF, **options).double()
    ours = nn.Transformer(D_MODEL, NHEAD, 2, 2, FF, **options).double()
    load_from(ours, theirs)
    src_pad = np.zeros((BATCH, SRC), bool)
    src_pad[2, -1] = True
    tgt_pad = np.zeros((BATCH, TGT), bool)
    tgt_pad[0, -1] = True
    causal = np.triu(np.full((TGT, TGT), -np.inf), 1)
    for kw in [{}, {"tgt_mask": causal, "src_key_padding_mask": src_pad,
                    "tgt_key_padding_mask": tgt_pad, "memory_key_padding_mask": src_pad},
               {"src_mask": RNG.standard_normal((SRC, SRC)), "tgt_mask": causal,
                "tgt_is_causal": True, "memory_mask": RNG.random((TGT, SRC)) > 0.8}]:
        tgt, src = inputs(options.get("batch_first", False))
        (ms, mt), (ts, tt) = pair(src, tgt, torch)
        compare(ours, theirs, [ms, mt], [ts, tt], convert(kw, minidl), convert(kw, torch),
                torch)
        ours.zero_grad()
        theirs.zero_grad()


def test_unbatched_and_batch_one_match_torch():
    torch = pytest.importorskip("torch")
    theirs = torch.nn.Transformer(D_MODEL, NHEAD, 1, 1, FF).double()
    ours = nn.Transformer(D_MODEL, NHEAD, 1, 1, FF).double()
    load_from(ours, theirs)
    src, tgt = RNG.standard_normal((SRC, D_MODEL)), RNG.standard_normal((TGT, D_MODEL))
    (ms, mt), (ts, tt) = pair(src, tgt, torch)
    pad = np.array([False, False, False, True, False])
    compare(ours, theirs, [ms, mt], [ts, tt], {"memory_key_padding_mask": minidl.tensor(pad)},
            {"memory_key_padding_mask": torch.tensor(pad)}, torch)
    ours.zero_grad()
    theirs.zero_grad()
    src, tgt = RNG.standard_normal((SRC, 1, D_MODEL)), RNG.standard_normal((1, 1, D_MODEL))
    (ms, mt), (ts, tt) = pair(src, tgt, torch)
    compare(ours, theirs, [ms, mt], [ts, tt], {}, {}, torch)


def test_custom_encoder_and_decoder_and_initialization():
    torch = pytest.importorskip("torch")
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(D_MODEL, NHEAD, FF), 1)
    decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(D_MODEL, NHEAD, FF), 1)
    model = nn.Transformer(D_MODEL, NHEAD, custom_encoder=encoder, custom_decoder=decoder)
    assert model.encoder is encoder and model.decoder is decoder
    assert list(model.state_dict()) == list(torch.nn.Transformer(
        D_MODEL, NHEAD, custom_encoder=torch.nn.TransformerEncoder(
            torch.nn.TransformerEncoderLayer(D_MODEL, NHEAD, FF), 1),
        custom_decoder=torch.nn.TransformerDecoder(
            torch.nn.TransformerDecoderLayer(D_MODEL, NHEAD, FF), 1)).state_dict())
    # Xavier-uniform re-initialization of every matrix: linear1's bound is sqrt(6 / (8 + 16)).
    weight = model.decoder.layers[0].linear1.weight.numpy()
    bound = np.sqrt(6 / (D_MODEL + FF))
    assert np.abs(weight).max() <= bound and np.abs(weight).max() > 0.8 * bound
    default = nn.Transformer(16, 4, 1, 1, 32)
    assert len(default.encoder.layers) == 1 and len(default.decoder.layers) == 1
    assert default.d_model == 16 and default.nhead == 4 and not default.batch_first
    assert default.encoder.norm is not None and default.decoder.norm is not None
    layer = nn.TransformerDecoderLayer(D_MODEL, NHEAD)
    assert layer.linear1.out_features == 2048 and layer.dropout.p == 0.1
    assert layer.norm1.eps == 1e-5 and not layer.norm_first


def test_generate_square_subsequent_mask_matches_torch():
    torch = pytest.importorskip("torch")
    for size, dtype, tdtype in [(4, None, None), (1, minidl.float64, torch.float64),
                                (0, None, None)]:
        ours = nn.Transformer.generate_square_subsequent_mask(size, dtype=dtype)
        theirs = torch.nn.Transformer.generate_square_subsequent_mask(size, dtype=tdtype)
        assert str(ours.dtype) == str(theirs.dtype).replace("torch.", "")
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_decoder_layer_gradcheck():
    minidl.manual_seed(3)
    layer = nn.TransformerDecoderLayer(4, 2, 6, dropout=0.0, activation="gelu").double()
    tgt = minidl.tensor(RNG.standard_normal((3, 2, 4)), requires_grad=True)
    memory = minidl.tensor(RNG.standard_normal((2, 2, 4)), requires_grad=True)
    mask = nn.Transformer.generate_square_subsequent_mask(3, dtype=minidl.float64)
    assert gradcheck(lambda t, m: layer(t, m, tgt_mask=mask), [tgt, memory])


def test_activation_callable_and_errors():
    torch = pytest.importorskip("torch")
    theirs = torch.nn.TransformerDecoderLayer(D_MODEL, NHEAD, FF,
                                              activation=torch.nn.functional.silu).double()
    ours = nn.TransformerDecoderLayer(D_MODEL, NHEAD, FF, activation=nn.functional.silu)
    ours = ours.double()
    load_from(ours, theirs)
    mine, torchs = pair(*inputs(False), torch)
    compare(ours, theirs, mine, torchs, {}, {}, torch)
    with pytest.raises(RuntimeError, match="activation should be relu/gelu, not tanh"):
        nn.TransformerDecoderLayer(D_MODEL, NHEAD, activation="tanh")
    with pytest.raises(AssertionError, match="divisible by num_heads"):
        nn.TransformerDecoderLayer(6, 4)
    layer = nn.TransformerDecoderLayer(D_MODEL, NHEAD, FF).eval()
    tgt, memory = (minidl.tensor(a.astype(np.float32)) for a in inputs(False))
    with pytest.raises(RuntimeError, match="Need attn_mask"):
        layer(tgt, memory, tgt_is_causal=True)
    with pytest.raises(RuntimeError, match="Need attn_mask"):
        layer(tgt, memory, memory_is_causal=True)
    with pytest.raises(RuntimeError, match="shape of the attn_mask"):
        layer(tgt, memory, memory_mask=minidl.zeros(TGT, TGT))
    with pytest.raises(AssertionError, match="key_padding_mask shape"):
        layer(tgt, memory, memory_key_padding_mask=minidl.zeros(BATCH, TGT, dtype=minidl.bool))
    with pytest.raises(AssertionError, match="embedding dimension of 8"):
        layer(tgt[..., :4], memory)
    model = nn.Transformer(D_MODEL, NHEAD, 1, 1, FF)
    with pytest.raises(RuntimeError, match="batch number of src and tgt must be equal"):
        model(memory, tgt[:, :2])
    with pytest.raises(RuntimeError, match="feature number of src and tgt"):
        model(memory[..., :4], tgt[..., :4])
    for bad in ([memory, tgt[:, :2]], [memory[..., :4], tgt[..., :4]]):
        with pytest.raises(RuntimeError):
            torch.nn.Transformer(D_MODEL, NHEAD, 1, 1, FF)(
                *(torch.tensor(t.numpy()) for t in bad))
