"""The low-precision matrix products of the torch backend (:mod:`cimsim.crossbar_torch`) and their exactness.

A level matrix is multiplied by one of: int8 x int8 -> int32 (``torch._int_mm``; integer levels, exact), a split bf16
product (:func:`bf16_split`: two parts stacked along the rows, one product with float32 accumulation), a split TF32
product (:func:`tf32_split`, inside :func:`tf32_products`) or a plain float32/float64 one; :func:`product_mode` picks
it, :func:`product_parts` builds what it multiplies and :func:`bf16_bmm` runs the bf16 one. :func:`fp16_split` cuts
real-valued levels into the two fp16 parts of the one-kernel path (:func:`cimsim.kernels_triton.planes_gemm_adc`),
:func:`int8_parts` levels on a grid into its exact int8 parts.
Each split's error bound is in its docstring and tested (tests/test_crossbar_torch.py,
tests/test_crossbar_gpu_paths.py, tests/test_kernels_triton.py).
"""

from __future__ import annotations

import contextlib

import torch

# whether torch.bmm gives bf16 x bf16 -> float32 here (``out_dtype``; probed once per process by bf16_bmm)
_BF16_OUT: dict = {"ok": None}


def tf32_split(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``t`` (float32) as ``hi + lo`` with ``hi`` exactly representable in TF32 (10 mantissa bits: the low 13
    bits cleared) and ``lo = t - hi`` (exact in float32; ``None`` where it is zero everywhere, e.g. integer
    levels). A product ``x @ hi + x @ lo`` on TF32 tensor cores, with ``x`` small integers (exact in TF32), is
    exact for integer ``t`` and within ``2**-21`` of ``|t|`` per term otherwise."""
    hi = (t.contiguous().view(torch.int32) & ~0x1FFF).view(torch.float32)
    lo = t - hi
    return hi, (lo if bool(torch.any(lo != 0)) else None)


def bf16_split(t: torch.Tensor) -> torch.Tensor:
    """``t`` (float32, (..., R, C)) as two bf16 parts stacked along the rows, (..., 2R, C): ``hi = bf16(t)`` and
    ``lo = bf16(t - hi)`` (``t - hi`` is exact in float32). bf16 keeps 8 significant bits, so
    ``|t - hi| <= 2**-8 |t|`` and ``|t - hi - lo| <= 2**-8 |t - hi| <= 2**-16 |t|`` per element. A product
    ``[x, x] @ [hi; lo]`` with integer digits ``|x| <= 256`` (exact in bf16; every bf16 x bf16 product exact in
    float32) and float32 accumulation is then within ``2**-16 sum_k |x_k t_k|`` of ``x @ t`` plus the float32
    accumulation error that a float32 product has too (tests/test_crossbar_gpu_paths.py)."""
    hi = t.to(torch.bfloat16)
    lo = (t - hi.to(torch.float32)).to(torch.bfloat16)
    return torch.cat([hi, lo], dim=-2)


def fp16_split(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``t`` (float32, |t| <= 2**15) as two fp16 parts ``hi = fp16(t)``, ``lo = fp16(t - hi)`` (``t - hi`` exact in
    float32; ``lo`` None where it is zero everywhere, e.g. integer levels). fp16 keeps 11 significant bits, so
    ``|t - hi| <= 2**-11 |t|`` and ``|t - hi - lo| <= 2**-22 |t| + 2**-25`` (the last term: fp16's subnormal step
    over two). Digits below 2**11 are exact in fp16 and every fp16 x fp16 product is exact in float32 (22
    significant bits), so a product ``d @ hi + d @ lo`` accumulated in float32 is within
    ``(2**-22 + k 2**-24) sum_k |d_k t_k|`` (+ 2**-25 per digit unit) of ``d @ t`` over ``k`` rows: the one-kernel
    path's product for real-valued levels (:func:`cimsim.kernels_triton.planes_gemm_adc`)."""
    hi = t.to(torch.float16)
    lo = (t - hi.to(torch.float32)).to(torch.float16)
    return hi, (lo if bool(torch.any(lo != 0)) else None)


def int8_parts(t: torch.Tensor, digit_max: int) -> tuple[torch.Tensor, float] | None:
    """Levels ``t`` (float32, (G, R, C)) on a grid ``2**-m`` as int8 parts for the one-kernel path's exact integer
    product (:func:`cimsim.kernels_triton.planes_gemm_adc`, PARTS -2/-3): ``t * 2**m = sum_p part_p * 2**(7 (P - 1 -
    p))``, the most significant part first and signed, the others in 0 .. 127; returns ``(parts (G, P, R, C) int8,
    2**-m)`` with P = 2 or 3, or None where that product would not be exact: ``m`` is the smallest that puts every
    level on the grid (none above 24), and every column's sum ``digit_max * sum_r |t_r| * 2**m`` must stay below
    2**24, so the int32 sums, their Horner combination and their float32 conversion are all exact: the same numbers
    as the float32 sum of the exact products (which the grid of exact sums, :func:`cimsim.crossbar.exact_grid`,
    makes exact too). Three int8 products cost the tensor cores less than the two fp16 ones of :func:`fp16_split`,
    and hold the levels in fewer registers (BENCHMARKS.md, issue 19)."""
    a = t.detach().to(torch.float64)
    if a.numel() == 0 or not bool(torch.isfinite(a).all()):
        return None

    def on_grid(m: int) -> bool:
        s = a * 2.0 ** m
        return bool(torch.equal(s, s.round()))

    if not on_grid(24):
        return None
    lo_m, hi_m = -1, 24                    # on the grid 2**-m for every m >= the smallest: bisect it
    while hi_m - lo_m > 1:
        mid = (lo_m + hi_m) // 2
        lo_m, hi_m = (lo_m, mid) if on_grid(max(mid, 0)) else (mid, hi_m)
    m = max(hi_m, 0)
    ints = (a * 2.0 ** m).to(torch.int64)
    rows = ints.shape[-2]
    if int(digit_max) * float(ints.abs().sum(dim=-2).max()) >= 2 ** 24 or int(digit_max) * rows * 2 ** 14 >= 2 ** 30:
        return None          # (the second: Horner's partial sums, the lower parts' at most 2**14 a row, in int32)
    top = int(ints.abs().max())
    P = 2 if top < 2 ** 13 else 3 if top < 2 ** 20 else None
    if P is None:
        return None
    parts = []
    rest = ints
    for p in range(P - 1):
        low = rest & 127                     # 0 .. 127 (two's complement: rest - low is a multiple of 128)
        parts.append(low)
        rest = (rest - low) >> 7
    parts.append(rest)                       # signed: |rest| < 2**(bits - 7 (P - 1)) <= 64
    return torch.stack(parts[::-1], dim=1).to(torch.int8), 2.0 ** -m


@contextlib.contextmanager
def tf32_products():
    """Let float32 matrix products use TF32 tensor cores inside the block (the global setting is restored)."""
    m = torch.backends.cuda.matmul
    key, value = ("fp32_precision", "tf32") if hasattr(m, "fp32_precision") else ("allow_tf32", True)
    prev = getattr(m, key)
    setattr(m, key, value)
    try:
        yield
    finally:
        setattr(m, key, prev)


def product_mode(allowed, dt, int8_ok: bool, bf16_ok: bool, tf32_ok: bool) -> str:
    """The product of a level (or variance) matrix: "int8" (integer levels: exact on int8 tensor cores),
    "bf16" (real levels: the split bf16 product), "tf32" (the split TF32 product) or "plain"; the first of
    ``allowed`` (modes in order of preference) whose flag is set, and only in float32 (float64 products stay plain)."""
    if dt != torch.float32:
        return "plain"
    ok = {"int8": int8_ok, "bf16": bf16_ok, "tf32": tf32_ok}
    return next((mode for mode in allowed if ok[mode]), "plain")


def product_parts(m: torch.Tensor, mode: str, integer: bool = False):
    """What the product of ``mode`` multiplies: int8 levels (columns padded to a multiple of 8, torch._int_mm's
    shape rule), the bf16 parts (one part for integer levels: |a| <= 127 is exact in bf16, and so is the
    product: float32 sums of integers below 2**24), the TF32 parts, or None (plain)."""
    if mode == "int8":
        C = m.shape[-1]
        return torch.nn.functional.pad(m, (0, -C % 8)).to(torch.int8).contiguous()
    if mode == "bf16":
        return (m.to(torch.bfloat16) if integer else bf16_split(m)).contiguous()
    if mode == "tf32":
        return tf32_split(m)
    return None


def bf16_bmm(xx: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
    """``[x, x] @ [hi; lo]`` accumulated in float32: bf16 tensor cores where torch gives a float32 result
    (``out_dtype``, CUDA), else the same bf16 values multiplied in float32: on a GPU on TF32 tensor cores (bf16
    values and the digits are exact in TF32), on a CPU plainly (no speed-up there; the same bound)."""
    cuda = xx.device.type == "cuda"
    if cuda and _BF16_OUT["ok"] is not False:
        try:
            out = torch.bmm(xx, parts, out_dtype=torch.float32)
            _BF16_OUT["ok"] = True
            return out
        except TypeError:   # this torch has no out_dtype: the TF32 product from now on
            _BF16_OUT["ok"] = False
        except (RuntimeError, NotImplementedError):
            pass            # a shape it refuses (e.g. one column): this call through TF32
    with tf32_products() if cuda else contextlib.nullcontext():
        return torch.bmm(xx.to(torch.float32), parts.to(torch.float32))


def check_device_input(xt, in_features: int, device: torch.device):
    """``xt`` if it is a 2-D torch tensor ``in_features`` wide on ``device``'s kind of device, else one ConfigError
    (a device call's input: a wrong width would return numbers, a numpy array fail deep in the engine)."""
    if not (isinstance(xt, torch.Tensor) and xt.dim() == 2 and xt.shape[1] == in_features
            and xt.device.type == device.type):
        from cimsim.errors import ConfigError

        shape, on = tuple(getattr(xt, "shape", ())), getattr(xt, "device", None)
        raise ConfigError(f"call_device takes a 2-D torch tensor (batch, {in_features}) on {device}, got "
                          f"{type(xt).__name__} of shape {shape} on {on}")
    return xt
