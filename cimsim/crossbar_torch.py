"""The torch backend of the crossbar engine (CPU or CUDA).

The same arithmetic as the numba backend (:mod:`cimsim.crossbar`): exact bit-plane matrix products (float32 while
every integer column sum stays below 2**24, float64 beyond; on a GPU float32 products run on TF32 tensor cores with
the level matrices split into an exact TF32 part and a remainder, see :func:`cimsim.torch_products.tf32_split`; so
both backends agree bit for bit on integer paths), one Gaussian per column value for read noise with a variance from
a second product, the same readout operations (:mod:`cimsim.readouts`), pair readout, column scales and conversion
scopes. All row blocks go through one batched product. On a GPU with Triton, quantizing readouts (ADCs without
offset noise) run noise, quantization and the shift-and-add over cycles in one kernel
(:func:`cimsim.kernels_triton.adc_epilogue`, Philox normals seeded per call from the tile's seeded host generator);
otherwise random numbers come from a ``torch.Generator`` on the device seeded from the crossbar's seed. Either way:
same seed, same numbers on the same backend and device; in distribution equal to the numba backend.

Products on a GPU (:attr:`TorchTile.PRODUCTS` lists those allowed per device type): integer level matrices (ideal
cells) multiply as int8 x int8 -> int32 on tensor cores (``torch._int_mm``: exact, so bit for bit equal to the numba
backend); real-valued levels (programming noise) as a split bf16 product (:func:`cimsim.torch_products.bf16_split`:
``a = hi + lo + r`` with ``|r| <= 2**-16 |a|``, both parts in one product with float32 accumulation); where neither
applies, the split TF32 product (:func:`cimsim.torch_products.tf32_split`) or plain float32/float64. Activations
stay on the device: :meth:`TorchTile.forward_device` takes the integer inputs as a device tensor and returns the
outputs and the tally as device tensors, so a mapped network (:mod:`cimsim.mappers.mapped`) runs layer after layer
without a host round trip. On CUDA (:attr:`TorchTile.GEMM_DEVICES`) a quantizing per-cycle readout runs digits,
products, read noise (one variance per row) and the ADC in one Triton kernel
(:func:`cimsim.kernels_triton.planes_gemm_adc`): integer levels as int8 (bit for bit the eager path), real-valued
ones on the grid of exact sums as two or three int8 parts (:func:`cimsim.torch_products.int8_parts`: exact, so bit
for bit the eager path too), others as two fp16 parts (:func:`cimsim.torch_products.fp16_split`), with the eager
epilogue's Philox normals. The
eager path: the digit cutter (:meth:`TorchTile.planes`) writes the planes once, in the product's dtype and layout
(row blocks, cycles x batch, rows), row blocks are views of them, and the fused epilogue reads an int8 product's
int32 sums in place; opt-in, ``TorchTile.CUT_DEVICES = ("cuda",)`` cuts them in one Triton kernel
(:func:`cimsim.kernels_triton.cut_planes`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cimsim.crossbar_layout import Tally
from cimsim.encoding import source_bits
from cimsim.errors import ConfigError

from cimsim import kernels_triton
from cimsim.torch_products import (bf16_bmm, bf16_split, check_device_input, fp16_split, int8_parts, product_mode,
                                   product_parts, tf32_products, tf32_split)

# the splits (cimsim.torch_products) also here, where callers find them (cimsim.crossbar_torch.bf16_split, ...)
__all__ = ["TorchTile", "bf16_split", "fp16_split", "tf32_split"]


class TorchTile:
    """Device-resident copies of a crossbar's level matrices and the torch forward pass."""

    # column values per batched product (float32: 64 MB on a CPU, 1 GB on a GPU): bounds the working memory (on a
    # GPU a few such buffers, about 5 GB at the most; our choice: few, large kernels)
    ELEMENTS = {"cpu": 1 << 24, "cuda": 1 << 28}
    # the low-precision products allowed per device type, in order of preference (see _mode); the CPU runs exact
    # float32/float64 BLAS. Tests allow them on the CPU too, where they run the same arithmetic without tensor cores.
    # On an H200 (2026-12-03, BENCHMARKS.md) torch's dense bf16 GEMM ran at 417 T MAC/s and torch._int_mm at 63 T
    # (an sm80 WMMA kernel): ("bf16", "int8", "tf32") puts integer levels on the exact one-part bf16 product. Not the
    # default: timed on the H200 at ResNet-20's shapes, 709 images/s against int8's 989-1,015 (BENCHMARKS.md, issue 19).
    PRODUCTS = {"cpu": (), "cuda": ("int8", "bf16", "tf32")}
    # device types whose planes are cut by the Triton kernel (cimsim.kernels_triton.cut_planes: the same digits, tested
    # through Triton's interpreter and on the H200); opt-in (("cuda",)): slower there together with bf16 (BENCHMARKS.md)
    CUT_DEVICES: tuple = ()
    # device types whose quantizing readouts run the fused Triton epilogue (cimsim.kernels_triton.adc_epilogue); tests
    # add "cpu" under Triton's interpreter (TRITON_INTERPRET=1)
    FUSED_DEVICES: tuple = ("cuda",)
    # device types where a quantizing per-cycle readout runs digits, products, read noise and the ADC in one Triton
    # kernel (cimsim.kernels_triton.planes_gemm_adc: neither planes nor products in memory); () for the eager path.
    # On an H200 (BENCHMARKS.md, "The one kernel by default"): its CUDA tests pass, ResNet-20 on ISAAC runs at 2.7x
    # the eager path's images/s clean and 2.3x with both noises, the same accuracy to the image.
    # GEMM_PRODUCTS: the tiles it takes, by their eager product (_mode): "int8" (integer levels: exact, bit
    # for bit the eager path's numbers) and "bf16" (integer levels: exact, and levels with programming noise, which
    # the kernel multiplies exactly as int8 parts on the grid of exact sums, int8_parts, and elsewhere as two fp16
    # parts, fp16_split: within 2**-22 of each term, far below the read noise; on the grid both are bit for bit the
    # eager path's numbers; tests/test_kernels_triton.py tests them)
    GEMM_DEVICES: tuple = ("cuda",)
    GEMM_PRODUCTS: tuple = ("int8", "bf16")

    def __init__(self, xb, device: str):
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("device='cuda' asked for, but torch sees no CUDA GPU: use device='cpu'")
        self.xb = xb
        self.device = torch.device(device)
        seed = int(xb.seed_sequence.generate_state(1, dtype=np.uint64)[0] & 0x7FFF_FFFF_FFFF_FFFF)
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        self.host_rng = np.random.default_rng(seed)   # seeds of the fused GPU epilogue's Philox streams
        self.load()

    def load(self) -> None:
        """Copy what the readout converts to the device, stacked over row blocks (zero rows pad the last block),
        so one batched product serves every row block: the readout's level matrices (physical columns, or G+
        minus G- pairs), their read-noise variances, the conductance row sums (read energy), the column
        weights and scales."""
        xb, dev = self.xb, self.device
        dt = self._exact_dtype()
        R, C, nblk = xb.spec.rows, xb.readout_columns, len(xb.row_blocks)
        a = np.zeros((nblk, R, C))
        rowsum = np.zeros((nblk, R))
        var = None
        if any(v is not None for v in xb.ro_var):
            per_row = all(v is None or v.ndim == 1 for v in xb.ro_var)
            var = np.zeros((nblk, R, 1 if per_row else C))
        ro_a = xb.ro_a   # float64 per row block (a property: built once here)
        for i, (k0, k1) in enumerate(xb.row_blocks):
            a[i, :k1 - k0] = ro_a[i]
            rowsum[i, :k1 - k0] = xb.g_rowsum[i]
            v = xb.ro_var[i]
            if v is not None:
                v = v.astype(np.float64)
                var[i, :k1 - k0] = v[:, None] if v.ndim == 1 else v
        self.a = torch.as_tensor(a, dtype=dt, device=dev)
        self.var = None if var is None else torch.as_tensor(var, dtype=dt, device=dev)
        self.rowsum = torch.as_tensor(rowsum.reshape(-1), dtype=torch.float64, device=dev)
        d = xb.spec.dac_bits
        integer = bool(np.all(a == np.round(a))) and float(np.abs(a).max(initial=0)) <= 127
        # digits: int8 up to 7 bits, exact in bf16 up to 8 bits (|d| <= 256) and in TF32 up to 11; their squares
        # (the read-noise variance product) exact in bf16 up to 4 bits (15**2 = 225) and in TF32 up to 5
        self.integer = integer
        self.mode = self._mode(dt, integer and d <= 7 and R % 8 == 0, d <= 8, d <= 5)
        self.var_mode = None if self.var is None else self._mode(dt, False, d <= 4, d <= 5)
        self.a_parts = product_parts(self.a, self.mode, integer)
        self.var_parts = None if self.var is None else product_parts(self.var, self.var_mode)
        # a readout with an error relative to each value written: its lines' sums, a second product (a variance:
        # the split products' rounding is far below it)
        self.line = self.line_parts = self.line_mode = None
        self.slice_a = self.slice_parts = self.group2 = None
        if xb.readout_op.relative_sigma:
            Cb = xb.buffered_columns    # each slice's buffered value (the conversions may sum slices)
            line = np.zeros((nblk, R, Cb))
            for i, (k0, k1) in enumerate(xb.row_blocks):
                line[i, :k1 - k0] = xb.line_sum(i)
            self.line = torch.as_tensor(line, dtype=dt, device=dev)
            self.line_mode = self._mode(dt, False, d <= 8, d <= 5)
            self.line_parts = product_parts(self.line, self.line_mode)
            if xb.spec.conversion.slices != 1:   # the slices' own values, and their place values squared
                sa = np.zeros((nblk, R, Cb))
                for i, (k0, k1) in enumerate(xb.row_blocks):
                    sa[i, :k1 - k0] = xb.slice_values(i)
                self.slice_a = torch.as_tensor(sa, dtype=dt, device=dev)
                self.slice_parts = product_parts(self.slice_a, self.line_mode)
                self.group2 = torch.as_tensor(xb.slice_group_matrix() ** 2, dtype=torch.float64, device=dev)
        self._consts = self._gemm_cache = None
        self.weight = torch.as_tensor(xb.readout_weight, dtype=torch.float64, device=dev)
        self.scales = (None if xb.column_scales is None
                       else torch.as_tensor(xb.column_scales, dtype=torch.float64, device=dev))
        self.thresholds = (None if xb.column_thresholds is None
                           else torch.as_tensor(xb.column_thresholds, dtype=torch.float64, device=dev))

    def _mode(self, dt, int8_ok: bool, bf16_ok: bool, tf32_ok: bool) -> str:
        """The product of a level (or variance) matrix (:func:`cimsim.torch_products.product_mode`) among those
        :attr:`PRODUCTS` allows on this device type."""
        return product_mode(self.PRODUCTS.get(self.device.type, ()), dt, int8_ok, bf16_ok, tf32_ok)

    def _bmm(self, x: torch.Tensor, m: torch.Tensor, parts, g0: int, g1: int, mode: str = "plain",
             raw: bool = False) -> torch.Tensor:
        """``x @ m[g0:g1]`` per row block, float32/float64 (blocks, rows of x, columns); ``x``: integer digits (or
        their squares) as integers or floats. int8 tensor cores, the split bf16 or TF32 product, or a plain one.
        ``raw``: an int8 product comes back as its int32 sums, columns padded to a multiple of 8."""
        if mode == "int8" and x.shape[1] > 16:
            out = self._int8_bmm(x, parts, g0, g1, m.shape[-1], raw)
            if out is not None:
                return out
        xf = x.to(m.dtype)
        if mode == "bf16":
            xb = x.to(torch.bfloat16)
            if parts.shape[-2] != x.shape[-1]:   # hi and lo: [x, x] @ [hi; lo]
                xb = torch.cat([xb, xb], dim=-1)
            return bf16_bmm(xb, parts[g0:g1])
        if mode != "tf32":
            return torch.bmm(xf, m[g0:g1])
        hi, lo = parts
        with tf32_products():
            out = torch.bmm(xf, hi[g0:g1])
            if lo is not None:
                out.baddbmm_(xf, lo[g0:g1])
        return out

    def _int8_bmm(self, x, a8, g0: int, g1: int, C: int, raw: bool = False):
        """int8 digits x int8 levels -> int32 per row block (``torch._int_mm``), as float32 (exact: every column
        sum is below 2**24 where float32 is chosen), or ``raw``: the int32 sums with a8's padded columns; None
        where torch refuses the shapes (then float32 runs)."""
        x8 = x.to(torch.int8)
        if raw:
            out = torch.empty((g1 - g0, x.shape[1], a8.shape[-1]), dtype=torch.int32, device=x.device)
        else:
            out = torch.empty((g1 - g0, x.shape[1], C), dtype=torch.float32, device=x.device)
        try:
            for i in range(g1 - g0):
                if raw:
                    torch._int_mm(x8[i], a8[g0 + i], out=out[i])
                else:
                    out[i] = torch._int_mm(x8[i], a8[g0 + i])[:, :C]
        except (RuntimeError, NotImplementedError):
            # this torch build or shape has no int8 product: the exact bf16 one from now on
            d = self.xb.spec.dac_bits
            self.mode = self._mode(torch.float32, False, d <= 8, d <= 5)
            self.a_parts = product_parts(self.a, self.mode, True)
            return None
        return out

    def _gemm_levels(self):
        """What :func:`cimsim.kernels_triton.planes_gemm_adc` multiplies for this tile, (levels, per-row variances or
        None, each row block's one variance or None: :meth:`_uniform_var`), or None where the one-kernel path does
        not apply: level products other than :attr:`GEMM_PRODUCTS`, read-noise variances that differ between
        columns, or a readout with an error relative to the values written (the eager path serves those).
        Real-valued levels on a grid go as its exact int8 parts (:func:`int8_parts`: the same sums, on int8 tensor
        cores), others as the float32 values of their fp16 parts (:func:`fp16_split`; levels beyond fp16's range: the
        eager path). Returns (levels, variances, uniform variances, the int8 parts' grid scale or 1.0)."""
        if self.mode not in self.GEMM_PRODUCTS or self.line is not None:
            return None
        if self.var is not None and self.var.shape[-1] != 1:
            return None
        cache = getattr(self, "_gemm_cache", None)
        if cache is None or cache[0] is not self.a_parts:   # built once per programming (one host sync)
            a, ok, iscale = self.a_parts, True, 1.0
            if self.mode != "int8":
                lo_d, hi_d = self.xb.digit_range()
                parts = int8_parts(self.a, max(-lo_d, hi_d, 1)) if -128 <= lo_d and hi_d <= 127 else None
                if parts is not None:
                    a, iscale = parts                                                 # (G, parts, R, C) int8
                else:
                    ok = float(self.a.abs().max()) <= 2 ** 15
                    hi, lo = fp16_split(self.a)
                    a = torch.stack([hi] if lo is None else [hi, lo], dim=1).to(torch.float32)   # (G, parts, R, C)
            var = None if self.var is None else self.var.reshape(self.var.shape[0], -1).to(torch.float32)
            cache = self._gemm_cache = (self.a_parts, (a, var, self._uniform_var(var), iscale) if ok else None)
        return cache[1]

    def _uniform_var(self, var: torch.Tensor | None) -> torch.Tensor | None:
        """Each row block's one read-noise variance (G,) float32, where every row of each block has the same one
        (a cell model whose read noise does not depend on the level) and any count of the block's rows times it is
        exact in float32 (the grid of exact sums puts it there): the one kernel then takes the noise's sum over rows
        as that count times it, the same number as the sum (:func:`cimsim.kernels_triton.planes_gemm_adc`). Else
        None."""
        if var is None:
            return None
        v = var.cpu().numpy()
        out = []
        for g, (k0, k1) in enumerate(self.xb.row_blocks):
            row = v[g, :k1 - k0]                 # rows beyond the layer's inputs carry no digits
            if not np.all(row == row[0]) or not np.isfinite(row[0]) or row[0] < 0:
                return None
            mant = int(np.frexp(row[0])[0] * 2 ** 24)               # 24-bit significand (0 for 0.0)
            bits = mant.bit_length() - ((mant & -mant).bit_length() - 1) if mant else 0
            if bits + (k1 - k0).bit_length() > 24:
                return None
            out.append(row[0])
        return torch.as_tensor(np.array(out, dtype=np.float32), device=self.device)

    def _fused_epilogue(self, v, std, lo, lsb, w_t, T: int, nb: int, C: int, pow2: bool = False):
        """:func:`cimsim.kernels_triton.adc_epilogue` with this tile's next Philox seed."""
        seed = int(self.host_rng.integers(0, 2 ** 31 - 1))
        return kernels_triton.adc_epilogue(v, std, lo, lsb, w_t, T, nb, C, self.xb.readout_op.n_codes, seed,
                                           lsb_pow2=pow2)

    def _randn(self, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=self.gen, device=self.device, dtype=torch.float32).to(like.dtype)

    def _upload(self, x: np.ndarray, small) -> torch.Tensor:
        """``x`` narrowed to ``small`` on the device. On a GPU through a reused pinned host buffer (one pass to
        narrow and copy, then an asynchronous transfer); the buffer is rewritten only by the next call, after
        this one has synchronised."""
        if self.device.type != "cuda":
            return torch.as_tensor(x.astype(small), device=self.device)
        dtype = torch.from_numpy(np.zeros(0, small)).dtype
        buf = getattr(self, "_pinned", None)
        if buf is None or buf.dtype != dtype or buf.numel() < x.size:
            buf = self._pinned = torch.empty(max(x.size, 1), dtype=dtype, pin_memory=True)
        host = buf[:x.size].view(x.shape)
        np.copyto(host.numpy(), x, casting="unsafe")
        return host.to(self.device, non_blocking=True)

    def _value_bound(self) -> float:
        """Largest |value| one conversion can see (the analog sums of the scope included)."""
        return max(max(abs(lo), abs(hi)) for lo, hi in map(self.xb.full_range, self.xb.conversion_domains))

    def _exact_dtype(self) -> torch.dtype:
        """The GEMM precision rule of :meth:`cimsim.crossbar.Crossbar.gemm_dtype`."""
        return torch.float32 if self.xb.gemm_dtype() == np.float32 else torch.float64

    def constants(self, ranges) -> dict:
        """The per-call constants on the device, built once per set of ranges (an upload from pageable host
        memory waits for the device: none happens in the steady state)."""
        key = tuple((float(lo), float(lsb)) for lo, lsb in ranges)
        if self._consts is not None and self._consts["key"] == key:
            return self._consts
        xb, dev = self.xb, self.device
        spec, op = xb.spec, xb.readout_op
        shifts, widths, pw = xb.input_layout()   # the sign cycle of signed inputs: a negative place value
        T = len(shifts)
        a = source_bits(spec.input_bits, spec.input_signed, spec.input_encoding)   # the digit source's bits
        idt = torch.int32 if a <= 30 else torch.int64   # the Triton digit cutter's integers
        cdt = torch.int32 if a <= 31 else torch.int64   # the eager cutter's inputs (the shift computes in them)
        masks = [(1 << int(w)) - 1 for w in widths]
        groups = xb.cycle_groups()
        place = np.array([pw[t0] for t0, _ in groups])               # digital weight of each conversion
        bound = op.code_bound(self._value_bound()) * float(np.abs(place).sum())
        rd = torch.float32 if bound < 2 ** 24 else torch.float64
        # analog accumulation: W[g, t] = place_t / place_t0 for the cycles t of conversion g
        W = np.zeros((len(groups), T))
        for g, (t0, t1) in enumerate(groups):
            W[g, t0:t1] = pw[t0:t1] / pw[t0]
        self._consts = {
            "key": key, "T": T, "groups": groups, "place": place, "rd": rd,
            # every LSB a power of two (quantizer_lo_lsb's rule): the Triton kernels multiply by its inverse, exactly
            "pow2": all(math.frexp(lsb)[0] == 0.5 for _, lsb in key),
            "lo": torch.as_tensor([r[0] for r in key], dtype=torch.float64, device=dev),
            "lsb": torch.as_tensor([r[1] for r in key], dtype=torch.float64, device=dev),
            "W_t": torch.as_tensor(W, dtype=torch.float64, device=dev),
            "w_place": torch.as_tensor(place, dtype=rd, device=dev),
            "idt": idt,
            # the eager cutter's integers (see planes), its shifts and masks
            "cdt": cdt, "sh_c": torch.as_tensor(shifts, dtype=cdt, device=dev)[None, :, None, None],
            "mask_c": torch.as_tensor(masks, dtype=cdt, device=dev)[None, :, None, None],
            "mask32c": torch.as_tensor(masks, dtype=torch.int32, device=dev),
            "sh32": torch.as_tensor(shifts, dtype=torch.int32, device=dev),
            "mask32": torch.as_tensor((1 << widths) - 1, dtype=torch.int32, device=dev)}
        self._consts["fold"] = self._fold_terms(key, place, self._consts["lo"], self._consts["lsb"])
        return self._consts

    def planes(self, xt: torch.Tensor, k: dict, nblk: int) -> torch.Tensor:
        """Bit planes of the integers ``xt`` (batch, in; on the device) laid out for the batched product: (row blocks,
        cycles x batch, rows), zero beyond the inputs, in :meth:`_plane_dtype`: the same digits as
        :func:`cimsim.encoding.input_planes`. Two passes over the planes (a shift of the inputs broadcast over the
        cycles, then the mask, in the inputs' integers) and one cast; padding and the row blocks' layout are applied
        to the inputs, a cycle count smaller. Each
        digit is bits ``[shift, shift + width)`` of the input's two's complement (the sign bit's cycle too: unsigned
        digits)."""
        nb, R = xt.shape[0], self.xb.spec.rows
        x = self.block_inputs(xt, k, nblk)
        # shift and mask in the inputs' integers, then one cast to the product's dtype. Never ``out=`` a narrower
        # tensor: CUDA computes a bitwise op in the output's dtype (the inputs cast first, their high bits lost;
        # bf16 has no bitwise kernel), the CPU in the inputs' (the H200 A/B of branch gpu4 failed on exactly that)
        d = torch.bitwise_right_shift(x[:, None], k["sh_c"])
        d &= k["mask_c"]
        p = d if d.dtype == self._plane_dtype() else d.to(self._plane_dtype())
        return p.view(nblk, k["T"] * nb, R)

    def _fold_terms(self, key, place: np.ndarray, lo: torch.Tensor, lsb: torch.Tensor):
        """What the one kernel needs to add its column values to the outputs itself
        (:func:`cimsim.kernels_triton.planes_gemm_adc`'s ``fold``): each column's digital weight, each row block's
        ``lo * sum(place)`` and ``lsb`` (from the constants' ``lo``, ``lsb``), on the device; or None where that
        sum would not be exact in any order, i.e. unless every term is an integer (``lo`` integers, LSBs, place
        values and column weights powers of two of at least 1) and the sum of their magnitudes stays below 2**53."""
        op = self.xb.readout_op
        w = np.asarray(self.xb.readout_weight, dtype=np.float64)
        whole = lambda v: bool(np.all((np.abs(v) >= 1) & (np.frexp(v)[0] == np.copysign(0.5, v))))  # noqa: E731
        if not (op.quantizes and whole(w) and whole(np.asarray(place, dtype=np.float64))
                and all(float(lo_g).is_integer() and whole(np.array([lsb_g])) for lo_g, lsb_g in key)):
            return None
        per_output = np.abs(w).reshape(-1, self.xb.out_features).sum(axis=0).max()
        bound = sum(abs(lo_g) + lsb_g * (op.n_codes - 1) for lo_g, lsb_g in key) * float(place.sum()) * per_output
        if bound >= 2.0 ** 53:
            return None
        return self.weight, lo * float(place.sum()), lsb

    def block_inputs(self, xt: torch.Tensor, k: dict, nblk: int) -> torch.Tensor:
        """The integers ``xt`` (batch, in) laid out per row block, (row blocks, batch, rows), zero beyond the inputs,
        in the digit cutter's integers ``k["cdt"]`` (int32, int64 beyond 31 bits): one pass over the inputs."""
        R = self.xb.spec.rows
        nb, K = xt.shape
        x = torch.empty((nblk, nb, R), dtype=k["cdt"], device=xt.device)
        full = K // R                                      # whole row blocks, then the ragged one (zero rows)
        if full:
            x[:full].copy_(xt[:, :full * R].unflatten(1, (full, R)).permute(1, 0, 2))
        if full < nblk:
            x[full, :, :K - full * R].copy_(xt[:, full * R:])
            x[full, :, K - full * R:].zero_()
            x[full + 1:].zero_()
        return x

    def _plane_dtype(self) -> torch.dtype:
        """The dtype the level product takes its digits in (so the cut planes need no further cast); int8 (int32
        beyond 7-bit digits) for the float32/float64 products, which cast them per row-block range."""
        wide = torch.int8 if self.xb.spec.dac_bits <= 7 else torch.int32
        return {"int8": torch.int8, "bf16": torch.bfloat16}.get(self.mode, wide)

    def chunk_rows(self, T: int) -> int:
        """Examples per streamed chunk: the spec's ``batch_chunk`` on a CPU (where it bounds the memory); on a
        GPU as many as :attr:`ELEMENTS` column values of all row blocks allow, so a layer is a few large kernels
        (ResNet-20 at batch 1024 streams 800 000 patch rows per layer)."""
        chunk = self.xb.spec.batch_chunk
        if self.device.type != "cuda":
            return chunk
        xb = self.xb
        nblk = len(xb.row_blocks)
        per_row = T * max(xb.readout_columns * nblk, nblk * xb.spec.rows)   # column values; int32 digits
        return max(chunk, self.ELEMENTS["cuda"] // max(per_row, 1))

    @torch.no_grad()
    def forward(self, x: np.ndarray, ranges, validate=None) -> tuple[np.ndarray, Tally]:
        """y (batch, out) as float64 numpy (offset-corrected) and the tally (non-zero digits, conductance-seconds,
        non-zero decisions, clipped conversions) of the integers ``x`` (numpy); ``ranges``: (lo, lsb) per
        conversion domain. ``validate``, if given, checks the inputs on the host while the device computes (it
        raises before anything is returned or counted). See :meth:`forward_device`."""
        a = self.xb.spec.input_bits
        small = np.int16 if a <= 15 else np.int32 if a <= 31 else np.int64   # fewer bytes to copy
        y, tally = self.forward_device(self._upload(x, small), ranges)
        if validate is not None:
            validate()
        return y.cpu().numpy(), Tally(*(float(t) for t in tally.cpu().numpy()))

    def forward_checked(self, xt, ranges) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward_device` on a caller's tensor (Crossbar.call_device), checked cheaply first."""
        return self.forward_device(check_device_input(xt, self.xb.in_features, self.device), ranges)

    @torch.no_grad()
    def forward_device(self, xt: torch.Tensor, ranges) -> tuple[torch.Tensor, torch.Tensor]:
        """y (batch, out) float64 on the device (offset-corrected) and the tally as a float64 device tensor of 4
        (non-zero digits, conductance-seconds, non-zero decisions, clipped conversions), from integer inputs
        ``xt`` (batch, in) on the device (integers of any dtype, floats holding integers included), in range
        (the caller's duty: :meth:`cimsim.crossbar.Crossbar.__call__` checks them). Nothing waits for the device.

        All input cycles of all row blocks go through one batched matrix product (row blocks x
        (cycles x batch) rows), as many row blocks at a time as :attr:`ELEMENTS` allows, so a GPU sees few,
        large kernels. The readout returns codes; the shift-and-add over conversions is exact (float32 while
        ``max |code| x sum |place value| < 2**24``, float64 beyond), and each domain's ``lo`` and ``lsb`` are
        applied after it: ``sum_t w_t (lo + c_t lsb) = lo sum_t w_t + lsb sum_t w_t c_t``. Analog sums of a
        conversion scope are formed in float64 from the exact per-cycle products.
        """
        xb, dev = self.xb, self.device
        spec, op = xb.spec, xb.readout_op
        dt = self._exact_dtype()
        k = self.constants(ranges)
        T, groups, place, rd = k["T"], k["groups"], k["place"], k["rd"]
        lo, lsb, W_t, w_place = k["lo"], k["lsb"], k["W_t"], k["w_place"]
        B, K = xt.shape
        R, C, N, nblk = spec.rows, xb.readout_columns, xb.out_features, len(xb.row_blocks)
        scope = spec.conversion
        binary = spec.dac_bits == 1 and not spec.input_signed      # digits 0/1: x^2 = x
        sq_rows = torch.zeros(nblk * R, dtype=torch.float64, device=dev)
        nonzero = torch.zeros((), dtype=torch.float64, device=dev)
        clipped = torch.zeros((), dtype=torch.float64, device=dev)
        decisions = torch.zeros((), dtype=torch.float64, device=dev)
        fused = (kernels_triton.triton is not None and dev.type in self.FUSED_DEVICES and op.fused and scope.per_cycle
                 and xb.column_scales is None and dt == torch.float32 and rd == torch.float32)
        y = torch.empty((B, N), dtype=torch.float64, device=dev)
        chunk = self.chunk_rows(T)
        cut = (kernels_triton.triton is not None and dev.type in self.CUT_DEVICES and k["idt"] == torch.int32)
        gemm = self._gemm_levels() if (fused and dev.type in self.GEMM_DEVICES and k["cdt"] != torch.int64) else None
        # the offset encoding's correction needs each example's sum of inputs: the one kernel's companion takes it
        # from the integers it reads anyway, the other paths here (integers: exact either way); split inputs are read
        # as their digit source (cimsim.encoding.digit_source), so their sums are taken first
        xsum = torch.zeros(B, dtype=torch.float64, device=dev) if xb.slices.offset else None
        split = spec.input_signed and spec.input_encoding == "split"
        if split:
            if xsum is not None:
                xsum = xt.sum(dim=1, dtype=torch.float64)
            xi = xt.to(k["idt"])
            xt = torch.where(xi < 0, torch.bitwise_left_shift(-xi, spec.input_bits - 1), xi)
        # the one kernel reads the inputs as they are, in the blocks' layout, where it can (no copy made first)
        direct = (xt.stride(1) == 1 and nblk == -(-K // R) and k["idt"] == torch.int32
                  and xt.dtype in (torch.int16, torch.int32, torch.float32))
        for b0 in range(0, B, chunk):
            b1 = min(b0 + chunk, B)
            nb = b1 - b0
            M = T * nb
            step = max(1, self.ELEMENTS.get(dev.type, self.ELEMENTS["cpu"]) // (M * C))
            if gemm is not None and nb * C * T * nblk < 2 ** 31:
                # digits, products, read noise and the ADC in one kernel; the affine and the sum over blocks as below
                seed = int(self.host_rng.integers(0, 2 ** 31 - 1))   # as _fused_epilogue draws it: the same normals
                fold = None if k["fold"] is None else (y[b0:b1].zero_(), *k["fold"])
                xs = xt[b0:b1] if direct else self.block_inputs(xt[b0:b1], k, nblk)
                s_all, _, _, _ = kernels_triton.planes_gemm_adc(
                    xs, gemm[0], k["sh32"], k["mask32c"], lo.to(dt), lsb.to(dt), w_place, C, op.n_codes, gemm[1],
                    seed, lsb_pow2=k["pow2"], fold=fold, binary=binary, uniform_var=gemm[2], iscale=gemm[3],
                    row_sums=None if xsum is None or split else xsum[b0:b1], rows=R, tally=(clipped, nonzero, sq_rows))
                if fold is not None:       # the kernel added the values to the outputs (exactly: _fold_terms)
                    continue
                acc = torch.zeros(nb * C, dtype=torch.float64, device=dev)
                for g0 in range(0, nblk, step):
                    g1 = min(g0 + step, nblk)
                    acc += self._affine(s_all[g0:g1].to(torch.float64), lo[g0:g1], lsb[g0:g1], place).sum(dim=0)
                y[b0:b1] = (acc.reshape(nb, C) * self.weight).reshape(nb, -1, N).sum(dim=1)
                continue
            if xsum is not None and not split:
                xsum[b0:b1] = xt[b0:b1].sum(dim=1, dtype=torch.float64)
            acc = torch.zeros(nb * C, dtype=torch.float64, device=dev)
            if not cut:
                planes = self.planes(xt[b0:b1], k, nblk)          # (blocks, cycles x batch, rows)
                if not binary:                                    # binary digits: their sum (below)
                    nonzero += torch.count_nonzero(planes)
            v_sum = var_sum = None          # row blocks summed in analog (scope.row_blocks == "sum")
            for g0 in range(0, nblk, step):
                g1 = min(g0 + step, nblk)
                if cut:   # one kernel: digits in the product's dtype, the non-zero count and row sums of squares
                    xp, nz, sqr = kernels_triton.cut_planes(
                        xt[b0:b1], k["sh32"], k["mask32"], g0, g1, R, self._plane_dtype())
                    nonzero += nz
                    sq_rows[g0 * R:g1 * R] += sqr
                    sq = xp if binary or self.var is None else xp.to(torch.int32).square()
                else:
                    xp = planes[g0:g1]                                   # a view: no copy
                    sq = xp if binary else xp.to(torch.int32).square()
                    rows = sq.sum(dim=1, dtype=torch.float64).reshape(-1)
                    sq_rows[g0 * R:g1 * R] += rows
                    if binary:    # digits 0/1: the non-zero ones are their sum (exact: integers in float64)
                        nonzero += rows.sum()
                # the fused epilogue reads an int8 product's int32 sums as they are (no float32 copy)
                v = self._bmm(xp, self.a, self.a_parts, g0, g1, self.mode, raw=fused and self.line is None)
                std2 = (None if self.var is None
                        else self._bmm(sq, self.var, self.var_parts, g0, g1, self.var_mode))
                rel2 = None       # each written value's relative error: r**2 (s**2 + d**2) / 2 per cycle
                if self.line is not None:
                    rel2 = self._bmm(xp, self.line, self.line_parts, g0, g1, self.line_mode).to(torch.float64)
                    vd = (v if self.slice_a is None else
                          self._bmm(xp, self.slice_a, self.slice_parts, g0, g1, self.line_mode)).to(torch.float64)
                    rel2 = rel2.square_().add_(vd.square()).mul_(0.5 * op.relative_sigma ** 2)
                    if self.group2 is not None:   # each slice's error with its place value squared in its group
                        S = self.group2.shape[0]
                        rel2 = torch.einsum("bmsx,sg->bmgx", rel2.reshape(g1 - g0, M, S, -1), self.group2
                                            ).reshape(g1 - g0, M, C)
                    if scope.per_cycle:   # one variance per column value with the read noise's
                        std2 = rel2 if std2 is None else rel2.add_(std2.to(torch.float64))
                if v.dtype == torch.int32 and not (fused and v.numel() < 2 ** 31 and rel2 is None and scope.per_cycle):
                    v = v[..., :C].to(torch.float32)              # exact: column sums below 2**24 (float32 chosen)
                if scope.per_cycle:
                    if fused and v.numel() < 2 ** 31 and rel2 is None:   # noise, ADC and shift-and-add in one Triton kernel
                        std = None if std2 is None else std2.sqrt_()
                        s, clips = self._fused_epilogue(v, std, lo.to(dt)[g0:g1, None, None],
                                                        lsb.to(dt)[g0:g1, None, None], w_place, T, nb, C,
                                                        pow2=k["pow2"])
                        clipped += clips
                    else:
                        if std2 is not None:
                            if rel2 is not None:
                                v = v.to(torch.float64)
                            v.add_(self._randn(v).mul_(std2.sqrt_()))   # one Gaussian per column value
                        s = self._convert(v.reshape(g1 - g0, T, nb, C), lo[g0:g1], lsb[g0:g1], g0, g1, rd,
                                          w_place, clipped, decisions)
                    acc += self._affine(s.to(torch.float64), lo[g0:g1], lsb[g0:g1], place).sum(dim=0)
                    continue
                # analog sums over the cycles of each conversion (float64 from the exact per-cycle products)
                vg = torch.einsum("gt,btc->bgc", W_t, v.to(torch.float64).reshape(g1 - g0, T, nb * C))
                vg2 = None
                if std2 is not None:
                    s2 = std2.to(torch.float64).reshape(g1 - g0, T, nb, -1).expand(-1, -1, -1, C)
                    vg2 = torch.einsum("gt,btc->bgc", W_t * W_t, s2.reshape(g1 - g0, T, nb * C))
                if rel2 is not None:
                    r2 = torch.einsum("gt,btc->bgc", W_t * W_t, rel2.reshape(g1 - g0, T, nb * C))
                    vg2 = r2 if vg2 is None else vg2.add_(r2)
                if scope.row_blocks == "sum":
                    v_sum = vg.sum(dim=0, keepdim=True) if v_sum is None else v_sum + vg.sum(dim=0, keepdim=True)
                    if vg2 is not None:
                        var_sum = vg2.sum(dim=0, keepdim=True) if var_sum is None else var_sum + vg2.sum(0, keepdim=True)
                    continue
                if vg2 is not None:
                    vg.add_(self._randn(vg).mul_(vg2.sqrt_()))
                s = self._convert(vg.reshape(g1 - g0, len(groups), nb, C), lo[g0:g1], lsb[g0:g1], g0, g1, rd,
                                  w_place, clipped, decisions)
                acc += self._affine(s.to(torch.float64), lo[g0:g1], lsb[g0:g1], place).sum(dim=0)
            if v_sum is not None:
                if var_sum is not None:
                    v_sum.add_(self._randn(v_sum).mul_(var_sum.sqrt_()))
                s = self._convert(v_sum.reshape(1, len(groups), nb, C), lo, lsb, 0, 1, rd, w_place, clipped,
                                  decisions, blocks=nblk)
                acc += self._affine(s.to(torch.float64), lo, lsb, place).sum(dim=0)
            y[b0:b1] = (acc.reshape(nb, C) * self.weight).reshape(nb, -1, N).sum(dim=1)
        if xsum is not None:
            y -= xb.slices.offset * xsum[:, None]
        conductance_s = (sq_rows @ self.rowsum) * spec.cell.read_time_s
        return y, torch.stack([nonzero, conductance_s, decisions, clipped])

    def _convert(self, v, lo, lsb, g0: int, g1: int, rd, w_place, clipped, decisions, blocks: int = 1) -> torch.Tensor:
        """Codes of values ``v`` (domains, conversions, batch, columns), shifted and added over the conversions:
        (domains, batch x columns); decision codes are multiplied by the column scales of their row block."""
        xb, op = self.xb, self.xb.readout_op.over_blocks(blocks)
        D, G, nb, C = v.shape
        lo_c = lo.to(v.dtype)[:, None, None, None]
        lsb_c = lsb.to(v.dtype)[:, None, None, None]
        per_cycle = self.scales is not None and self.scales.dim() == 3     # (row blocks, cycles, columns)
        if self.scales is not None:   # comparator reference = threshold x scale
            v = v / (self.scales[g0:g1, :, None, :] if per_cycle else self.scales[g0:g1, None, None, :]).to(v.dtype)
        if self.thresholds is None:
            codes, clips = op.codes_torch(v, lo_c, lsb_c, self._randn, xb.spec.pair_readout)
        else:                         # each column's own (learned) threshold
            t = self.thresholds[g0:g1, :, None, :] if per_cycle else self.thresholds[g0:g1, None, None, :]
            codes, clips = op.codes_torch(v, lo_c, lsb_c, self._randn, xb.spec.pair_readout, delta=t.to(v.dtype))
        if clips is not None:
            clipped += clips.to(torch.float64)
        if op.decides:
            decisions += torch.count_nonzero(codes).to(torch.float64)
        if per_cycle:                 # each cycle's decisions scaled by its own factors, then shifted and added
            c = codes.to(torch.float64) * self.scales[g0:g1, :, None, :]
            return torch.matmul(w_place.to(torch.float64), c.reshape(D, G, nb * C))
        s = torch.matmul(w_place, codes.to(rd).reshape(D, G, nb * C))   # the shift-and-add over conversions
        if self.scales is not None:
            s = (s.to(torch.float64).reshape(D, nb, C) * self.scales[g0:g1, None, :]).reshape(D, nb * C)
        return s

    def _affine(self, s, lo, lsb, place) -> torch.Tensor:
        """A quantizer's codes become values after the sum: ``lo * sum(place) + lsb * s`` per domain."""
        if not self.xb.readout_op.quantizes:
            return s
        return lo[:, None] * float(place.sum()) + lsb[:, None] * s
