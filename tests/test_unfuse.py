"""SplitAttention is nn.MultiheadAttention's function with separate projection layers (cimsim.mappers.unfuse)."""

import itertools

import pytest
import torch
from torch import nn

from cimsim.mappers.unfuse import SplitAttention, fuse, unfuse

E, H = 16, 4


def _pair(dtype=torch.float64, **kw):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(E, H, **kw).to(dtype).eval()
    with torch.no_grad():   # torch initialises the biases to zero: make them count
        for p in mha.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return mha, SplitAttention.from_torch(mha)


def _inputs(batch_first, n=3, tgt=5, src=7, kdim=E, vdim=E, dtype=torch.float64, cross=True):
    g = torch.Generator().manual_seed(1)
    shape = (lambda L, d: (n, L, d)) if batch_first else (lambda L, d: (L, n, d))
    q = torch.randn(*shape(tgt, E), generator=g, dtype=dtype)
    if not cross:
        return q, q, q
    return (q, torch.randn(*shape(src, kdim), generator=g, dtype=dtype),
            torch.randn(*shape(src, vdim), generator=g, dtype=dtype))


def _masks(kind, n, tgt, src, dtype=torch.float64):
    g = torch.Generator().manual_seed(2)
    if kind is None:
        return None, None
    pad = torch.zeros(n, src, dtype=torch.bool)
    pad[0, -2:] = True
    pad[2, -1] = True
    causal = torch.ones(tgt, src, dtype=torch.bool).triu(1)
    if kind == "bool2d":
        return causal, None
    if kind == "float3d":
        return torch.randn(n * H, tgt, src, generator=g, dtype=dtype), None
    if kind == "pad":
        return None, pad
    if kind == "both":
        return causal, pad
    if kind == "floatpad":
        return None, torch.zeros(n, src, dtype=dtype).masked_fill(pad, -1e4)
    raise ValueError(kind)


@pytest.mark.parametrize("batch_first,bias,need,avg,mask", [
    (bf, b, nw, av, m) for bf, b, nw, av, m in itertools.product(
        (False, True), (True, False), (True, False), (True, False), (None, "bool2d", "float3d", "pad", "both",
                                                                      "floatpad"))
    if nw or av])   # average_attn_weights only matters with need_weights
def test_split_attention_is_torch_attention(batch_first, bias, need, avg, mask):
    mha, split = _pair(batch_first=batch_first, bias=bias)
    q, k, v = _inputs(batch_first)
    am, kpm = _masks(mask, 3, 5, 7)
    kw = dict(key_padding_mask=kpm, need_weights=need, attn_mask=am, average_attn_weights=avg)
    with torch.no_grad():
        want, want_w = mha(q, k, v, **kw)
        got, got_w = split(q, k, v, **kw)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    if need:
        torch.testing.assert_close(got_w, want_w, rtol=0, atol=1e-12)
    else:
        assert got_w is None and want_w is None


@pytest.mark.parametrize("batch_first", [False, True])
def test_kdim_vdim_self_attention_unbatched_and_causal(batch_first):
    mha, split = _pair(batch_first=batch_first, kdim=6, vdim=9)
    assert split.k_proj.in_features == 6 and split.v_proj.in_features == 9
    q, k, v = _inputs(batch_first, kdim=6, vdim=9)
    with torch.no_grad():
        torch.testing.assert_close(split(q, k, v)[0], mha(q, k, v)[0], rtol=0, atol=1e-12)
    mha, split = _pair(batch_first=batch_first)
    x = _inputs(batch_first, tgt=6, cross=False)[0]
    causal = nn.Transformer.generate_square_subsequent_mask(6, dtype=torch.float64)
    for need in (True, False):
        kw = dict(attn_mask=causal, is_causal=True, need_weights=need)
        with torch.no_grad():
            torch.testing.assert_close(split(x, x, x, **kw)[0], mha(x, x, x, **kw)[0], rtol=0, atol=1e-12)
    one = x[0] if batch_first else x[:, 0]     # (L, E): unbatched
    pad = torch.tensor([False] * 5 + [True])
    with torch.no_grad():
        want, want_w = mha(one, one, one, key_padding_mask=pad)
        got, got_w = split(one, one, one, key_padding_mask=pad)
    assert got.shape == want.shape == (6, E) and got_w.shape == want_w.shape == (6, 6)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(got_w, want_w, rtol=0, atol=1e-12)


def test_split_attention_refuses_what_torch_refuses():
    mha, split = _pair()
    x = torch.randn(5, 2, E, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="is_causal"):
        split(x, x, x, is_causal=True)
    with pytest.raises(RuntimeError, match="2D attn_mask"):
        split(x, x, x, attn_mask=torch.zeros(4, 5, dtype=torch.bool))
    with pytest.raises(RuntimeError, match="key_padding_mask"):
        split(x, x, x, key_padding_mask=torch.zeros(5, 2, dtype=torch.bool))


def _encoder(dtype=torch.float64, **kw):
    torch.manual_seed(3)
    layer = nn.TransformerEncoderLayer(E, H, dim_feedforward=32, dropout=0.1, **kw)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).to(dtype).eval()


@pytest.mark.parametrize("batch_first,norm_first,activation", [
    (True, False, "relu"), (True, True, "gelu"), (False, False, "gelu"), (False, True, "relu")])
def test_unfused_encoder_is_the_encoder_and_runs_its_layers(batch_first, norm_first, activation):
    enc = _encoder(batch_first=batch_first, norm_first=norm_first, activation=activation)
    x = _inputs(batch_first, tgt=6, cross=False)[0]
    with torch.no_grad():
        want = enc(x)        # eval, batch first: torch's fused fast path
    assert unfuse(enc) == ["layers.0.self_attn", "layers.1.self_attn"]
    called = []
    for name, m in enc.named_modules():
        if isinstance(m, nn.Linear):
            m.register_forward_pre_hook(lambda mod, inp, name=name: called.append(name))
    with torch.no_grad():
        got = enc(x)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert sorted(called) == sorted(f"layers.{i}.{n}" for i in range(2) for n in (
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "linear1", "linear2"))


def test_unfused_encoder_with_padding_keeps_unpadded_positions():
    torch.manual_seed(3)
    layer = nn.TransformerEncoderLayer(E, H, dim_feedforward=32, batch_first=True)
    enc = nn.TransformerEncoder(layer, 2).double().eval()      # nested tensors on by default
    x = torch.randn(3, 6, E, dtype=torch.float64)
    pad = torch.zeros(3, 6, dtype=torch.bool)
    pad[1, 4:] = True
    with torch.no_grad():
        want = enc(x, src_key_padding_mask=pad)
        unfuse(enc)
        got = enc(x, src_key_padding_mask=pad)
    keep = ~pad
    torch.testing.assert_close(got[keep], want[keep], rtol=0, atol=1e-12)


def test_unfused_decoder_and_transformer():
    torch.manual_seed(4)
    model = nn.Transformer(E, H, num_encoder_layers=1, num_decoder_layers=2, dim_feedforward=32,
                           batch_first=True).double().eval()
    src, tgt = torch.randn(2, 7, E, dtype=torch.float64), torch.randn(2, 5, E, dtype=torch.float64)
    mask = nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64)
    with torch.no_grad():
        want = model(src, tgt, tgt_mask=mask, tgt_is_causal=True)
        names = unfuse(model)
        got = model(src, tgt, tgt_mask=mask, tgt_is_causal=True)
    assert len(names) == 5 and not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_attention_with_bias_kv_or_zero_attn_is_left_packed():
    torch.manual_seed(5)
    model = nn.ModuleDict({"a": nn.MultiheadAttention(E, H, add_bias_kv=True),
                           "b": nn.MultiheadAttention(E, H, add_zero_attn=True),
                           "c": nn.MultiheadAttention(E, H)})
    assert unfuse(model) == ["c"]
    assert isinstance(model["a"], nn.MultiheadAttention) and isinstance(model["c"], SplitAttention)


def test_float32_and_training_mode_follow_the_source():
    mha, split = _pair(dtype=torch.float32, batch_first=True, dropout=0.2)
    assert split.q_proj.weight.dtype == torch.float32 and not split.training
    x = _inputs(True, cross=False, dtype=torch.float32)[0]
    with torch.no_grad():
        torch.testing.assert_close(split(x, x, x)[0], mha(x, x, x)[0], rtol=1e-5, atol=1e-6)
    mha.train()
    assert SplitAttention.from_torch(mha).training


@pytest.mark.parametrize("kw", [{}, {"bias": False}, {"kdim": 6, "vdim": 9}])
def test_refuse_gives_torchs_attention_back_with_the_same_weights(kw):
    torch.manual_seed(6)
    model = nn.ModuleDict({"attn": nn.MultiheadAttention(E, H, batch_first=True, **kw)})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    unfuse(model)
    with torch.no_grad():
        model["attn"].q_proj.weight[0, 0] = 7.0          # a change made while split (pruning, fine-tuning) is kept
    assert fuse(model) == ["attn"] and isinstance(model["attn"], nn.MultiheadAttention)
    after = model.state_dict()
    assert after.keys() == before.keys()
    first = "in_proj_weight" if not kw.get("kdim") else "q_proj_weight"
    for k, v in before.items():
        if k != f"attn.{first}":
            assert torch.equal(after[k], v), k
    assert after[f"attn.{first}"][0, 0] == 7.0
    assert torch.equal(after[f"attn.{first}"][1:], before[f"attn.{first}"][1:])
