"""The work of element-wise, normalising, pooling and product layers and of the torch functions a forward calls.

:mod:`cimsim.mappers.profile` counts a network's work per module. Many networks do part of it in their own
``forward`` rather than in layers: ``F.relu(F.max_pool2d(self.conv1(x), 2))`` (the classic PyTorch MNIST net),
``torch.sigmoid`` gates, ``q @ k.transpose(-2, -1)`` and ``softmax`` in attention, ``F.layer_norm``. This module
says what each such call costs, in the profile's events, from the shapes of its tensors:

* ``add``, ``mul``, ``compare``: one per output element of an element-wise addition or subtraction, a
  multiplication or division (a division counted as a multiply, est.), a comparison or selection (ReLU, clamp,
  max); reductions take one per element folded in (a sum of ``n`` values into ``m`` is ``n - m`` adds);
* ``nonlinear``: one evaluation of a transcendental function per element (sigmoid, tanh, exp, log, sqrt, erf:
  the activation unit's lookup on an analog chip, a short polynomial on a digital one); a composite function
  counts its parts (SiLU ``x * sigmoid(x)``: one evaluation and one multiply);
* ``mac`` with ``act_read`` / ``weight_read`` and ``act_write``: products of two operands computed at run time
  (``x @ y``, ``bmm``, ``einsum``, ``F.linear`` / ``F.conv2d`` with a weight the network holds outside a layer):
  they run digitally, since only Linear / Conv layers called through their forward are programmed into arrays.

A function this module does not know returns None (the profile then lists the work as not costed, never as free);
reshapes, copies, indexing, type conversions and tensor creation are free (an empty dict). Element-wise work moves
no counted activations (as for the layers counted in closed form); products read their operands and write their
outputs, and the attention functions count the traffic of the same steps written out.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cimsim import events as ev

# reshapes, views, copies, indexing, conversions, tensor creation, metadata, inference-time dropout: no arithmetic
FREE = frozenset("""
view view_as reshape reshape_as flatten unflatten permute transpose t swapaxes swapdims movedim moveaxis contiguous
squeeze unsqueeze expand expand_as repeat tile cat concat concatenate stack hstack vstack dstack split tensor_split
chunk unbind narrow getitem setitem select index_select take gather roll flip fliplr flipud rot90 pad unfold
pixel_shuffle pixel_unshuffle channel_shuffle dropout dropout1d dropout2d dropout3d alpha_dropout
feature_alpha_dropout identity repeat_interleave one_hot view_as_real view_as_complex clone detach detach_ to type
type_as float double half bfloat16 int long short bool byte char cpu cuda numpy item tolist size dim numel shape get
element_size data_ptr is_floating_point is_complex
is_contiguous stride storage_offset get_device requires_grad_ zeros ones empty full arange linspace tensor as_tensor
zeros_like ones_like empty_like full_like rand randn randint rand_like randn_like randint_like new_zeros new_ones
new_empty new_full new_tensor fill_ zero_ copy_ len iter format repr bool hash nonzero masked_select diagonal
broadcast_to broadcast_tensors meshgrid atleast_1d atleast_2d atleast_3d
""".split())

_DROPOUTS = frozenset("dropout dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout".split())
# one per output element
_ADDS = frozenset("add sub subtract neg negative rsub round floor ceil trunc fix frac".split())   # (a rounding:
#   an add of a half and a truncation, est.; fake quantizers of quantization-aware networks round in their forward)
_MULS = frozenset("mul multiply div divide true_divide floor_divide square".split())
_SLOPES = frozenset("leaky_relu prelu rrelu".split())    # a compare and a multiply by the slope per value
_COMPARES = frozenset("""relu threshold abs sign sgn heaviside maximum minimum fmax fmin where
gt lt ge le eq ne greater less greater_equal less_equal not_equal masked_fill clamp_min clamp_max hardshrink
softshrink logical_and logical_or logical_not logical_xor bitwise_and bitwise_or bitwise_not bitwise_xor isnan
isinf isfinite tril triu""".split())
_TWO_COMPARES = frozenset("relu6 hardtanh".split())
# transcendental: evaluations per element, extra multiplies and adds per element
_NONLINEAR = {
    "sigmoid": (1, 0, 0), "tanh": (1, 0, 0), "exp": (1, 0, 0), "exp2": (1, 0, 0), "expm1": (1, 0, 0),
    "log": (1, 0, 0), "log2": (1, 0, 0), "log10": (1, 0, 0), "log1p": (1, 0, 0), "sqrt": (1, 0, 0),
    "rsqrt": (1, 0, 0), "reciprocal": (1, 0, 0), "erf": (1, 0, 0), "erfc": (1, 0, 0), "sin": (1, 0, 0),
    "cos": (1, 0, 0), "tan": (1, 0, 0), "atan": (1, 0, 0), "asin": (1, 0, 0), "acos": (1, 0, 0),
    "sinh": (1, 0, 0), "cosh": (1, 0, 0), "logsigmoid": (1, 0, 0), "softplus": (2, 0, 0), "rpow": (1, 0, 0),
    "silu": (1, 1, 0), "gelu": (1, 2, 1), "mish": (3, 1, 0), "tanhshrink": (1, 0, 1),
    "softsign": (0, 1, 1), "elu": (1, 1, 1), "selu": (1, 2, 1), "celu": (1, 2, 1),
}
_NONLINEAR_COMPARES = {"elu": 1, "selu": 1, "celu": 1, "softsign": 1}   # the branch on the sign (|x| for softsign)
_POOLS = {"max_pool1d": 1, "max_pool2d": 2, "max_pool3d": 3, "max_pool1d_with_indices": 1,
          "max_pool2d_with_indices": 2, "max_pool3d_with_indices": 3, "avg_pool1d": 1, "avg_pool2d": 2,
          "avg_pool3d": 3}
_ADAPTIVE = frozenset("adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool1d "
                      "adaptive_max_pool2d adaptive_max_pool3d adaptive_max_pool1d_with_indices "
                      "adaptive_max_pool2d_with_indices adaptive_max_pool3d_with_indices".split())
_PRODUCTS = frozenset("matmul mm bmm mv dot vdot inner outer ger addmm baddbmm addbmm addmv".split())
_DUNDER_SWAPPED = {"radd": "add", "rsub": "rsub", "rmul": "mul", "rtruediv": "div", "rdiv": "div",
                   "rmatmul": "matmul", "rpow": "rpow", "iadd": "add", "isub": "sub", "imul": "mul",
                   "itruediv": "div", "idiv": "div", "ipow": "pow", "truediv": "div", "floordiv": "floor_divide",
                   "rfloordiv": "floor_divide", "ifloordiv": "floor_divide", "and": "logical_and",
                   "or": "logical_or", "invert": "logical_not", "eq": "eq", "ne": "ne", "lt": "lt", "le": "le",
                   "gt": "gt", "ge": "ge", "abs": "abs", "neg": "neg"}


def canonical(func) -> str:
    """A torch function's name without in-place, private and operator decorations: ``Tensor.add_``,
    ``Tensor.__radd__`` and ``torch.add`` are all ``add``; ``F._max_pool2d`` is ``max_pool2d``."""
    name = getattr(func, "__name__", "") or ""
    if name.startswith("__") and name.endswith("__") and len(name) > 4:
        core = name[2:-2]
        return _DUNDER_SWAPPED.get(core, core)
    return name.strip("_")


def _numel(t) -> int:
    return int(t.numel()) if isinstance(t, torch.Tensor) else 0


def _arg(args, kwargs, index: int, key: str, default=None):
    if key in kwargs:
        return kwargs[key]
    return args[index] if len(args) > index else default


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]      # (values, indices) of max / max_pool with indices
    return None


def _reads(tensors) -> dict[str, float]:
    """Operand reads of a run-time product: a parameter's values are weight reads, the rest activation reads."""
    w = sum(_numel(t) for t in tensors if isinstance(t, nn.Parameter))
    a = sum(_numel(t) for t in tensors if not isinstance(t, nn.Parameter))
    return {ev.WEIGHT_READ: w, ev.ACT_READ: a}


def _product(name: str, args, kwargs, y: torch.Tensor) -> dict[str, float] | None:
    a = _arg(args, kwargs, 0, "input")
    b = _arg(args, kwargs, 1, "other" if name not in ("mm", "bmm", "mv") else "mat2")
    if name in ("addmm", "baddbmm", "addbmm", "addmv"):    # bias + a @ b
        a, b = _arg(args, kwargs, 1, "mat1"), _arg(args, kwargs, 2, "mat2")
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.dim() == 0:
        return None
    k = a.shape[-1] if name not in ("outer", "ger") else 1
    macs = y.numel() * k
    if name == "addbmm":   # sums the batch of products into one matrix
        macs = a.shape[0] * y.numel() * k
    out = {ev.MAC: macs, **_reads((a, b)), ev.ACT_WRITE: y.numel()}
    if name in ("addmm", "baddbmm", "addbmm", "addmv"):
        out[ev.ADD] = y.numel()
    return out


def _einsum(args, y: torch.Tensor) -> dict[str, float] | None:
    if not args or not isinstance(args[0], str):
        return None
    eq = args[0].replace(" ", "")
    ops = list(args[1]) if len(args) == 2 and isinstance(args[1], (list, tuple)) else list(args[1:])
    lhs, _, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ops) or not all(isinstance(t, torch.Tensor) for t in ops):
        return None
    sizes: dict[str, int] = {}
    for term, t in zip(terms, ops):
        letters = [c for c in term.replace("...", "") if c.isalpha()]
        if "..." in term and not term.startswith("..."):
            return None        # an ellipsis after a term's first index: not parsed here, so left uncosted
        explicit = t.shape[t.dim() - len(letters):] if term.startswith("...") else t.shape[:len(letters)]
        sizes.update(zip(letters, (int(s) for s in explicit)))
    if not rhs and "->" not in eq:
        counts = {c: lhs.count(c) for c in sizes}
        rhs = "".join(sorted(c for c, n in counts.items() if n == 1))
    contracted = math.prod(s for c, s in sizes.items() if c not in rhs)
    if len(ops) == 1:
        return {ev.ADD: max(ops[0].numel() - y.numel(), 0)}
    return {ev.MAC: y.numel() * contracted * (len(ops) - 1), **_reads(ops), ev.ACT_WRITE: y.numel()}


def _layer_product(name: str, args, kwargs, y: torch.Tensor) -> dict[str, float] | None:
    """F.linear / F.conv*d / F.conv_transpose*d with weights held outside a layer."""
    x, w = _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "weight")
    bias = _arg(args, kwargs, 2, "bias")
    if not (isinstance(x, torch.Tensor) and isinstance(w, torch.Tensor)):
        return None
    if name == "linear":
        macs = y.numel() * w.shape[-1]
    elif name.startswith("conv_transpose"):
        macs = x.numel() * math.prod(w.shape[1:])
    else:
        macs = y.numel() * math.prod(w.shape[1:])
    out = {ev.MAC: macs, **_reads((x, w)), ev.ACT_WRITE: y.numel()}
    if isinstance(bias, torch.Tensor):
        out[ev.ADD] = y.numel()
        out[ev.WEIGHT_READ if isinstance(bias, nn.Parameter) else ev.ACT_READ] += bias.numel()
    return out


def adaptive_pool_events(x: torch.Tensor, y: torch.Tensor, dims: int, is_max: bool) -> dict[str, float]:
    """Adaptive pooling over the last ``dims`` dimensions of ``x`` to ``y``'s sizes: output ``j`` of a dimension of
    ``I`` inputs pools inputs ``floor(j I / O)`` to ``ceil((j + 1) I / O)`` (torch's windows, which overlap where ``O``
    does not divide ``I``); each output folds its window, one add (or compare) per value but the first, and an
    average divides once."""
    covered = 1      # inputs read by the windows of one channel, counted once per window
    for d in range(1, dims + 1):
        i, o = int(x.shape[-d]), int(y.shape[-d])
        covered *= sum(-((-(j + 1) * i) // o) - (j * i) // o for j in range(o))
    outputs = math.prod(int(y.shape[-d]) for d in range(1, dims + 1))
    folded = max(y.numel() // max(outputs, 1) * covered - y.numel(), 0)
    return {ev.COMPARE: folded} if is_max else {ev.ADD: folded, ev.MUL: y.numel()}


def softmax_events(n: int, length: int, log: bool = False) -> dict[str, float]:
    """Softmax over ``length`` values, ``n`` values in all: an exp and a divide per value, the row's sum; the
    log-softmax subtracts the row's log instead of dividing."""
    rows = n // max(length, 1)
    if log:
        return {ev.NONLINEAR: n + rows, ev.ADD: (n - rows) + n}
    return {ev.NONLINEAR: n, ev.ADD: n - rows, ev.MUL: n}


def norm_events(n: int, groups: int, weight: bool, bias: bool | None = None, rms: bool = False) -> dict[str, float]:
    """Normalisation over ``groups`` sets of ``n / groups`` values (layer, group, instance norm): the mean and the
    variance (a subtract, a square and a sum per value, a divide per group each), one reciprocal square root per
    group, the scaling of every value and, with an affine transform, a multiply (``weight``) and an add (``bias``,
    default: as ``weight``) per value. RMS norm has no mean: a square and a sum per value, a divide per group."""
    bias = weight if bias is None else bias
    if rms:
        return {ev.ADD: n, ev.MUL: 2 * n + groups + (n if weight else 0), ev.NONLINEAR: groups}
    return {ev.ADD: 3 * n + (n if bias else 0), ev.MUL: 2 * n + 2 * groups + (n if weight else 0),
            ev.NONLINEAR: groups}


def _dim_length(x: torch.Tensor, dim, softmax: bool = False) -> int:
    if dim is None and softmax:    # torch's implicit softmax dimension: 0 for 0-, 1- and 3-d inputs, else 1
        dim = 0 if x.dim() in (0, 1, 3) else 1
    if dim is None:
        return x.numel()
    return int(x.shape[dim]) if x.dim() else 1


def _window(kernel, dims: int) -> int:
    if isinstance(kernel, (tuple, list)):
        return math.prod(int(k) for k in kernel)
    return int(kernel) ** dims


def function_events(func, args, kwargs, out) -> dict[str, float] | None:
    """Events of one call of the torch function ``func`` computing ``out``; {} when it does no arithmetic, None when
    its work is not known here."""
    name = canonical(func)
    if name in _DROPOUTS and _arg(args, kwargs, 2, "training", True) is True:   # applied (F.dropout's default):
        y = _first_tensor(out)                                                  # a mask draw and a multiply a value
        return {ev.COMPARE: y.numel(), ev.MUL: y.numel()} if y is not None else {}
    if name in FREE:
        return {}
    y = _first_tensor(out)
    if y is None:          # no tensor made (an in-place store, a Python number): no work the network passes on
        return {}
    n = y.numel()
    x = _arg(args, kwargs, 0, "input")
    if name in _ADDS:
        return {ev.ADD: n}
    if name in _MULS:
        return {ev.MUL: n}
    if name == "pow":
        e = _arg(args, kwargs, 1, "exponent")
        return {ev.MUL: n} if isinstance(e, (int, float)) and e == 2 else {ev.NONLINEAR: n}
    if name in _COMPARES:
        return {ev.COMPARE: n}
    if name in _SLOPES:
        return {ev.COMPARE: n, ev.MUL: n}
    if name in _TWO_COMPARES:
        return {ev.COMPARE: 2 * n}
    if name in ("clamp", "clip"):
        lo, hi = _arg(args, kwargs, 1, "min"), _arg(args, kwargs, 2, "max")
        return {ev.COMPARE: n * ((lo is not None) + (hi is not None))}
    if name in ("hardsigmoid", "hardswish"):     # relu6(x + 3) / 6 (times x for hardswish)
        return {ev.ADD: n, ev.MUL: n * (2 if name == "hardswish" else 1), ev.COMPARE: 2 * n}
    if name in _NONLINEAR:
        f, m, a = _NONLINEAR[name]
        events = {ev.NONLINEAR: f * n, ev.MUL: m * n, ev.ADD: a * n, ev.COMPARE: _NONLINEAR_COMPARES.get(name, 0) * n}
        return {k: v for k, v in events.items() if v}
    if name in ("softmax", "log_softmax", "softmin") and isinstance(x, torch.Tensor):
        return softmax_events(n, _dim_length(x, _arg(args, kwargs, 1, "dim"), softmax=True), log=name == "log_softmax")
    if name in ("layer_norm", "group_norm", "instance_norm", "rms_norm") and isinstance(x, torch.Tensor):
        if name == "group_norm":
            groups = x.shape[0] * int(_arg(args, kwargs, 1, "num_groups"))
            weight, bias = _arg(args, kwargs, 2, "weight"), _arg(args, kwargs, 3, "bias")
        elif name == "instance_norm":
            groups = x.shape[0] * x.shape[1]
            weight, bias = _arg(args, kwargs, 3, "weight"), _arg(args, kwargs, 4, "bias")
        else:
            shape = _arg(args, kwargs, 1, "normalized_shape")
            shape = (shape,) if isinstance(shape, int) else tuple(shape)
            groups = n // max(math.prod(shape), 1)
            weight = _arg(args, kwargs, 2, "weight")
            bias = None if name == "rms_norm" else _arg(args, kwargs, 3, "bias")
        return norm_events(n, groups, weight is not None, bias is not None, rms=name == "rms_norm")
    if name == "batch_norm":     # inference: one multiply and one add per value
        return {ev.MUL: n, ev.ADD: n}
    if name == "normalize" and isinstance(x, torch.Tensor):    # x / ||x|| over a dim (p = 2)
        rows = n // max(_dim_length(x, _arg(args, kwargs, 2, "dim", 1)), 1)
        return {ev.MUL: 2 * n, ev.ADD: n - rows, ev.NONLINEAR: rows}
    if name in _POOLS:
        window = _window(_arg(args, kwargs, 1, "kernel_size"), _POOLS[name])
        if name.startswith("max"):
            return {ev.COMPARE: n * (window - 1)}
        return {ev.ADD: n * (window - 1), ev.MUL: n}
    if name in _ADAPTIVE and isinstance(x, torch.Tensor):
        return adaptive_pool_events(x, y, int(name.partition("pool")[2][0]), "max" in name)
    if name in ("sum", "nansum", "mean", "nanmean", "amax", "amin", "max", "min", "argmax", "argmin", "prod",
                "logsumexp", "var", "std", "norm") and isinstance(x, torch.Tensor):
        other = _arg(args, kwargs, 1, "other")
        if isinstance(other, torch.Tensor):            # torch.max(a, b): element-wise
            return {ev.COMPARE: n}
        folded = max(x.numel() - n, 0)
        if name in ("sum", "nansum"):
            return {ev.ADD: folded}
        if name in ("mean", "nanmean"):
            return {ev.ADD: folded, ev.MUL: n}
        if name == "prod":
            return {ev.MUL: folded}
        if name == "logsumexp":
            return {ev.NONLINEAR: x.numel() + n, ev.ADD: folded}
        if name in ("var", "std"):
            return {ev.ADD: folded + x.numel() + folded, ev.MUL: x.numel() + 2 * n,
                    **({ev.NONLINEAR: n} if name == "std" else {})}
        if name == "norm":
            return {ev.MUL: x.numel(), ev.ADD: folded, ev.NONLINEAR: n}
        return {ev.COMPARE: folded}
    if name in ("cumsum", "cumulative_sum"):
        return {ev.ADD: n}
    if name in _PRODUCTS:
        return _product(name, args, kwargs, y)
    if name == "einsum":
        return _einsum(args, y)
    if name in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                "conv_transpose3d"):
        return _layer_product(name, args, kwargs, y)
    if name == "embedding":
        return {ev.WEIGHT_READ: n, ev.ACT_WRITE: n}
    if name == "scaled_dot_product_attention":
        q, k, v = (_arg(args, kwargs, i, key) for i, key in enumerate(("query", "key", "value")))
        if not all(isinstance(t, torch.Tensor) for t in (q, k, v)):
            return None
        scores = q.numel() // q.shape[-1] * k.shape[-2]        # batch x L x S
        soft = softmax_events(scores, k.shape[-2])
        return {**soft, ev.MAC: scores * (q.shape[-1] + v.shape[-1]), ev.MUL: soft[ev.MUL] + scores,   # + 1/sqrt(E)
                ev.ACT_READ: q.numel() + k.numel() + v.numel() + scores, ev.ACT_WRITE: scores + n}   # as written out
    if name == "multi_head_attention_forward":
        return _multi_head_attention(args, kwargs, y)
    more = _more_functions(name, args, kwargs, x, y)
    if more is not None:
        return more
    if name in ("interpolate", "upsample", "upsample_nearest", "upsample_bilinear") and isinstance(x, torch.Tensor):
        mode = _arg(args, kwargs, 3, "mode", "nearest") if name in ("interpolate", "upsample") else name[9:]
        spatial = max(x.dim() - 2, 1)
        if mode in ("nearest", "nearest-exact"):
            return {ev.ACT_READ: x.numel(), ev.ACT_WRITE: n}
        if mode == "area":       # an adaptive average pool
            return {ev.ADD: max(x.numel() - n, 0), ev.MUL: n}
        taps = (4 if mode == "bicubic" else 2) ** (2 if mode in ("bilinear", "bicubic") else spatial)
        return {ev.MUL: taps * n, ev.ADD: (taps - 1) * n}
    return None


def _more_functions(name: str, args, kwargs, x, y: torch.Tensor) -> dict[str, float] | None:
    """Rules of less common functions (None: not one of them)."""
    n = y.numel()
    if name == "glu":                                    # a * sigmoid(b) over the two halves
        return {ev.NONLINEAR: n, ev.MUL: n}
    if name == "lerp":                                   # a + w (b - a)
        return {ev.ADD: 2 * n, ev.MUL: n}
    if name in ("addcmul", "addcdiv"):                   # a + v * t1 * t2 (or / t2)
        return {ev.ADD: n, ev.MUL: 2 * n}
    if name == "cumprod":
        return {ev.MUL: n}
    if not isinstance(x, torch.Tensor):
        return None
    if name in ("sort", "argsort", "msort"):             # a comparison sort: L log2 L comparisons per row (est.)
        length = _dim_length(x, _arg(args, kwargs, 1, "dim", -1))
        return {ev.COMPARE: x.numel() * max(math.ceil(math.log2(max(length, 1))), 1)}
    if name == "topk":                                   # a running heap of k: log2 k comparisons a value (est.)
        k = int(_arg(args, kwargs, 1, "k", 1))
        return {ev.COMPARE: x.numel() * max(math.ceil(math.log2(k + 1)), 1)}
    if name in ("var_mean", "std_mean"):
        folded = max(x.numel() - n, 0)
        return {ev.ADD: 2 * folded + x.numel(), ev.MUL: x.numel() + 2 * n,
                **({ev.NONLINEAR: n} if name == "std_mean" else {})}
    if name in ("linalg_vector_norm", "vector_norm"):
        return {ev.MUL: x.numel(), ev.ADD: max(x.numel() - n, 0), ev.NONLINEAR: n}
    if name == "cosine_similarity":                      # x.y / (|x| |y|) over a dimension
        return {ev.MUL: 3 * x.numel() + n, ev.ADD: 3 * max(x.numel() - n, 0), ev.NONLINEAR: n}
    if name == "cdist":                                  # Euclidean distances between rows
        depth = int(x.shape[-1])
        return {ev.ADD: 2 * n * depth, ev.MUL: n * depth, ev.NONLINEAR: n}
    if name == "tensordot":                              # free dims of a times free dims of b, summed over the rest
        b = _arg(args, kwargs, 1, "b")
        if not isinstance(b, torch.Tensor) or not n:
            return None
        contracted = round(math.sqrt(x.numel() * b.numel() / n))
        return {ev.MAC: n * contracted, **_reads((x, b)), ev.ACT_WRITE: n}
    if name == "fold":                                   # col2im: overlapping patches summed
        return {ev.ADD: max(x.numel() - n, 0)}
    if name == "grid_sample":                            # bilinear: four taps a value (est.: nearest reads one)
        mode = _arg(args, kwargs, 2, "mode", "bilinear")
        return {ev.ACT_READ: n, ev.ACT_WRITE: n} if mode == "nearest" else {ev.MUL: 4 * n, ev.ADD: 3 * n}
    return None


def _multi_head_attention(args, kwargs, y: torch.Tensor) -> dict[str, float] | None:
    """``nn.MultiheadAttention``'s functional form (inputs (L, N, E) or (L, E)): the query, key and value
    projections, the heads' scaled scores and their softmax, the weighted sum of the values, the output projection;
    biases one add per output. (Dropout is off in inference; a bias_k / bias_v row and the averaged attention weights
    are not counted.)"""
    q, k, v = (_arg(args, kwargs, i, key) for i, key in enumerate(("query", "key", "value")))
    heads = _arg(args, kwargs, 4, "num_heads")
    if not all(isinstance(t, torch.Tensor) for t in (q, k, v)) or not isinstance(heads, int):
        return None
    length, source, e = q.shape[0], k.shape[0], q.shape[-1]
    batch = q.shape[1] if q.dim() == 3 else 1
    in_w, out_w = _arg(args, kwargs, 5, "in_proj_weight"), _arg(args, kwargs, 11, "out_proj_weight")
    in_b, out_b = _arg(args, kwargs, 6, "in_proj_bias"), _arg(args, kwargs, 12, "out_proj_bias")
    separate = [_arg(args, kwargs, 18 + i, f"{c}_proj_weight") for i, c in enumerate("qkv")]
    weights = [t for t in (in_w, out_w, in_b, out_b, *separate) if isinstance(t, torch.Tensor)]
    scores = batch * heads * length * source
    projections = batch * (length * e * e + source * e * k.shape[-1] + source * e * v.shape[-1] + length * e * e)
    soft = softmax_events(scores, source)
    adds = soft[ev.ADD] + (batch * (2 * length + 2 * source) * e if isinstance(in_b, torch.Tensor) else 0)
    return {**soft, ev.MAC: projections + 2 * batch * length * source * e, ev.ADD: adds,
            ev.MUL: soft[ev.MUL] + batch * length * e,           # the queries scaled by 1/sqrt(E/heads)
            ev.WEIGHT_READ: sum(t.numel() for t in weights),
            # as the same steps written out read and write them: the projections' inputs and outputs, the scores,
            # the weighted values (the output projection's input) and the output
            ev.ACT_READ: q.numel() + k.numel() + v.numel() + 2 * batch * (length + source) * e + scores,
            ev.ACT_WRITE: batch * (2 * length + 2 * source) * e + scores + y.numel()}


# layers counted in closed form, with the functions' rules: the module types and their events
_NONLINEAR_MODULES = {nn.LeakyReLU: "leaky_relu", nn.PReLU: "prelu", nn.ELU: "elu", nn.Sigmoid: "sigmoid",
                      nn.Tanh: "tanh", nn.SiLU: "silu", nn.GELU: "gelu",
                      nn.Mish: "mish",
                      nn.Softplus: "softplus", nn.LogSigmoid: "logsigmoid", nn.Softsign: "softsign",
                      nn.Tanhshrink: "tanhshrink", nn.SELU: "selu", nn.CELU: "celu", nn.Hardswish: "hardswish",
                      nn.Hardsigmoid: "hardsigmoid", nn.Threshold: "threshold"}
MODULE_TYPES = (*_NONLINEAR_MODULES, nn.RNNBase, nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.LayerNorm, nn.RMSNorm,
                nn.GroupNorm,
                nn.modules.instancenorm._InstanceNorm, nn.Embedding)


# per hidden unit and time step of a recurrent cell: (gates, transcendental evaluations, multiplies, adds) of the
# element-wise update after the gates' products (PyTorch's nn.LSTM / nn.GRU / nn.RNN equations): LSTM 3 sigmoids
# and 2 tanh, c = f c + i g and h = o tanh(c); GRU 2 sigmoids and a tanh, r (W h + b), (1 - z) n + z h
_RECURRENT = {"LSTM": (4, 5, 3, 1), "GRU": (3, 3, 3, 2), "RNN_TANH": (1, 1, 0, 0), "RNN_RELU": (1, 0, 0, 0)}


def recurrent_events(mod: nn.RNNBase, x: torch.Tensor) -> dict[str, float] | None:
    """One call of ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` on ``x`` (a padded tensor, batched or not): every layer and
    direction, every time step, the gates' products of the input and the hidden state (MACs), the two biases and
    the sum of the two products (adds), the cell's element-wise update; every weight read once a step. None for a
    packed sequence or an LSTM with projections (not counted here, so not costed)."""
    if not isinstance(x, torch.Tensor) or mod.mode not in _RECURRENT or getattr(mod, "proj_size", 0):
        return None
    gates, nonlinear, muls, adds = _RECURRENT[mod.mode]
    steps = x.shape[1 if mod.batch_first else 0] if x.dim() == 3 else x.shape[0]
    batch = (x.shape[0 if mod.batch_first else 1] if x.dim() == 3 else 1) * steps
    h, dirs = mod.hidden_size, 2 if mod.bidirectional else 1
    out: dict[str, float] = {}
    for layer in range(mod.num_layers):
        width = mod.input_size if layer == 0 else h * dirs
        per = {ev.MAC: gates * h * (width + h), ev.ADD: gates * h * (1 + 2 * mod.bias) + adds * h,
               ev.MUL: muls * h, ev.NONLINEAR: nonlinear * h, ev.COMPARE: h if mod.mode == "RNN_RELU" else 0,
               ev.ACT_READ: width + h, ev.ACT_WRITE: h}
        for k, v in per.items():
            out[k] = out.get(k, 0) + dirs * batch * v
    out[ev.WEIGHT_READ] = steps * sum(p.numel() for p in mod.parameters())
    return {k: v for k, v in out.items() if v}


def module_events(mod: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float] | None:
    """Events of one call of an activation, softmax, normalisation, embedding or recurrent layer (None for other
    layers)."""
    n = y.numel()
    if isinstance(mod, nn.RNNBase):
        return recurrent_events(mod, x)
    for cls, fname in _NONLINEAR_MODULES.items():
        if isinstance(mod, cls):
            return function_events(_Named(fname), (x,), {}, y)
    if isinstance(mod, (nn.Softmax, nn.LogSoftmax, nn.Softmin)):
        return softmax_events(n, _dim_length(x, mod.dim, softmax=True), log=isinstance(mod, nn.LogSoftmax))
    if isinstance(mod, (nn.LayerNorm, nn.RMSNorm)):
        return norm_events(n, n // max(math.prod(mod.normalized_shape), 1), mod.weight is not None,
                           getattr(mod, "bias", None) is not None, rms=isinstance(mod, nn.RMSNorm))
    if isinstance(mod, nn.GroupNorm):
        return norm_events(n, x.shape[0] * mod.num_groups, mod.affine)
    if isinstance(mod, nn.modules.instancenorm._InstanceNorm):
        return norm_events(n, x.shape[0] * x.shape[1] if x.dim() > 2 else x.shape[0], mod.affine)
    if isinstance(mod, nn.Embedding):      # a table look-up per output value
        return {ev.WEIGHT_READ: n, ev.ACT_WRITE: n}
    return None


class _Named:
    """A stand-in carrying a function name, so a layer's events come from the same table as its function's."""

    def __init__(self, name: str):
        self.__name__ = name
