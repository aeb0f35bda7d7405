"""The torch backend of the crossbar engine (CPU or CUDA).

The same arithmetic as the numba backend (:mod:`cimsim.crossbar`): exact bit-plane matrix products
(float32 while every integer column sum stays below 2**24, float64 beyond; on a GPU float32 products run
on TF32 tensor cores with the level matrices split into an exact TF32 part and a remainder, see
:func:`tf32_split`; so both backends agree bit for bit on integer paths), one Gaussian per column value
for read noise with a variance from a second product, the same readout transfer functions. All row blocks
go through one batched product. On a GPU with Triton, quantizing readouts (ADCs without offset noise) run
noise, quantization and the shift-and-add over cycles in one kernel (:func:`_adc_epilogue`, Philox normals
seeded per call from the tile's seeded host generator); otherwise random numbers come from a
``torch.Generator`` on the device seeded from the crossbar's seed. Either way: same seed, same numbers on
the same backend and device; in distribution equal to the numba backend.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from cimsim.devices.converters import IdealReadout, SenseAmp, TernaryReadout, _Quantizer
from cimsim.encoding import plane_layout
from cimsim.errors import ConfigError

try:   # Triton ships with CUDA builds of torch; CPU-only installs run the plain torch epilogue
    import triton
    import triton.language as tl
except ImportError:   # pragma: no cover - depends on the torch build
    triton = None

if triton is not None:
    @triton.jit
    def _adc_epilogue(v_ptr, std_ptr, lo_ptr, lsb_ptr, w_ptr, out_ptr, seed, T, NC, C, n_codes,
                      HAS_NOISE: tl.constexpr, PER_ROW: tl.constexpr, BLOCK: tl.constexpr):
        """One row block g and BLOCK (example, column) values: for each input cycle t add the read noise
        ``std * N(0, 1)`` (Philox normals keyed by ``seed`` and the value's index), quantize to the ADC's code
        ``clamp(floor((v - lo) / lsb + 1/2), 0, n_codes - 1)`` and accumulate ``w_t * code`` (the shift-and-add)."""
        g = tl.program_id(0)
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < NC
        lo = tl.load(lo_ptr + g)
        lsb = tl.load(lsb_ptr + g)
        acc = tl.zeros((BLOCK,), dtype=tl.float32)
        for t in range(T):
            idx = (g * T + t) * NC + offs
            v = tl.load(v_ptr + idx, mask=mask, other=0.0)
            if HAS_NOISE:   # std per (row, column), or one per row (the same sigma in every column)
                if PER_ROW:
                    sd = tl.load(std_ptr + (g * T + t) * (NC // C) + offs // C, mask=mask, other=0.0)
                else:
                    sd = tl.load(std_ptr + idx, mask=mask, other=0.0)
                v = v + sd * tl.randn(seed, idx)
            code = tl.floor((v - lo) / lsb + 0.5)
            code = tl.minimum(tl.maximum(code, 0.0), n_codes - 1.0)
            acc += tl.load(w_ptr + t) * code
        tl.store(out_ptr + g * NC + offs, acc, mask=mask)


def tf32_split(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``t`` (float32) as ``hi + lo`` with ``hi`` exactly representable in TF32 (10 mantissa bits: the low 13
    bits cleared) and ``lo = t - hi`` (exact in float32; ``None`` where it is zero everywhere, e.g. integer
    levels). A product ``x @ hi + x @ lo`` on TF32 tensor cores, with ``x`` small integers (exact in TF32), is
    exact for integer ``t`` and within ``2**-21`` of ``|t|`` per term otherwise."""
    hi = (t.contiguous().view(torch.int32) & ~0x1FFF).view(torch.float32)
    lo = t - hi
    return hi, (lo if bool(torch.any(lo != 0)) else None)


@contextlib.contextmanager
def _tf32():
    """Let float32 matrix products use TF32 tensor cores inside the block (the global setting is restored)."""
    m = torch.backends.cuda.matmul
    key, value = ("fp32_precision", "tf32") if hasattr(m, "fp32_precision") else ("allow_tf32", True)
    prev = getattr(m, key)
    setattr(m, key, value)
    try:
        yield
    finally:
        setattr(m, key, prev)


class TorchTile:
    """Device-resident copies of a crossbar's level matrices and the torch forward pass."""

    # column values per batched product (float32: 64 MB on a CPU, 256 MB on a GPU): bounds the working memory
    ELEMENTS = {"cpu": 1 << 24, "cuda": 1 << 26}

    def __init__(self, xb, device: str):
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("device='cuda' asked for, but torch sees no CUDA GPU: use device='cpu'")
        self.xb = xb
        self.device = torch.device(device)
        seed = int(xb._seeds.generate_state(1, dtype=np.uint64)[0] & 0x7FFF_FFFF_FFFF_FFFF)
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        self.host_rng = np.random.default_rng(seed)   # seeds of the fused GPU epilogue's Philox streams
        self.load()

    def load(self) -> None:
        """Copy the level matrices to the device, stacked over row blocks (zero rows pad the last block),
        so one batched product serves every row block."""
        xb, dev = self.xb, self.device
        dt = self._exact_dtype()
        R, C, nblk = xb.spec.rows, xb.physical_columns, len(xb.row_blocks)
        a = np.zeros((nblk, R, C))
        rowsum = np.zeros((nblk, R))
        var = None
        if any(v is not None for v in xb._var):
            per_row = all(v is None or v.ndim == 1 for v in xb._var)
            var = np.zeros((nblk, R, 1 if per_row else C))
        for i, (k0, k1) in enumerate(xb.row_blocks):
            a[i, :k1 - k0] = xb._a[i]
            rowsum[i, :k1 - k0] = xb._g_rowsum[i]
            v = xb._var[i]
            if v is not None:
                var[i, :k1 - k0] = v[:, None] if v.ndim == 1 else v
        self.a = torch.as_tensor(a, dtype=dt, device=dev)
        self.var = None if var is None else torch.as_tensor(var, dtype=dt, device=dev)
        self.rowsum = torch.as_tensor(rowsum.reshape(-1), dtype=torch.float64, device=dev)
        # On a GPU, float32 products run on TF32 tensor cores with the matrices split into an exact TF32 part
        # and a remainder: digits (and, for DACs of up to 5 bits, their squares) are exact in TF32.
        self.tf32 = dev.type == "cuda" and dt == torch.float32 and xb.spec.dac_bits <= 5
        self.a_parts = tf32_split(self.a) if self.tf32 else None
        self.var_parts = tf32_split(self.var) if self.tf32 and self.var is not None else None
        self.col_weight = torch.as_tensor(xb._col_weight, dtype=torch.float64, device=dev)

    def _codes(self, v: torch.Tensor, lo: torch.Tensor, lsb: torch.Tensor) -> torch.Tensor:
        """What the readout returns for column values ``v``, in codes: a quantizer's level index (its value is
        ``lo + code * lsb``, applied after the shift-and-add), the comparators' decisions, or ``v`` itself."""
        ro = self.xb.spec.readout
        if isinstance(ro, IdealReadout):
            return v
        if isinstance(ro, _Quantizer):
            u = v.sub_(lo).div_(lsb)   # lsb is a power of two: exact
            if ro.offset_sigma_lsb > 0:
                u.add_(ro.offset_sigma_lsb * self._randn(u))
            return u.add_(0.5).floor_().clamp_(0, ro.n_codes - 1)
        if isinstance(ro, SenseAmp):
            if ro.offset_sigma > 0:
                v = v + ro.offset_sigma * self._randn(v)
            return (v > ro.threshold).to(v.dtype)
        if isinstance(ro, TernaryReadout):
            up = down = v
            if ro.offset_sigma > 0:
                up = v + ro.offset_sigma * self._randn(v)
                down = v + ro.offset_sigma * self._randn(v)
            return (up > ro.delta).to(v.dtype) - (down < -ro.delta).to(v.dtype)
        raise ConfigError(f"readout {type(ro).__name__} is not supported by the crossbar engine")

    def _bmm(self, x: torch.Tensor, m: torch.Tensor, parts, g0: int, g1: int) -> torch.Tensor:
        """``x @ m[g0:g1]`` per row block: a plain batched product, or on a GPU two TF32 ones (:func:`tf32_split`)."""
        if not self.tf32:
            return torch.bmm(x, m[g0:g1])
        hi, lo = parts
        with _tf32():
            out = torch.bmm(x, hi[g0:g1])
            if lo is not None:
                out.baddbmm_(x, lo[g0:g1])
        return out

    def _fused_epilogue(self, v, std, lo, lsb, w_t, T: int, nb: int, C: int) -> torch.Tensor:
        """:func:`_adc_epilogue` over row blocks (G, cycles x batch, columns): (G, batch x columns) float32."""
        G, NC = v.shape[0], nb * C
        out = torch.empty((G, NC), dtype=torch.float32, device=v.device)
        seed = int(self.host_rng.integers(0, 2 ** 31 - 1))
        block = 1024
        _adc_epilogue[(G, triton.cdiv(NC, block))](
            v, v if std is None else std.contiguous(), lo.reshape(-1).contiguous(), lsb.reshape(-1).contiguous(),
            w_t, out, seed, T, NC, C, float(self.xb.spec.readout.n_codes), HAS_NOISE=std is not None,
            PER_ROW=std is not None and std.shape[-1] == 1, BLOCK=block)
        return out

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

    def _code_bound(self) -> float:
        """Largest |code| the readout can return (for the exactness of the shift-and-add in float32)."""
        ro = self.xb.spec.readout
        if isinstance(ro, _Quantizer):
            return float(ro.n_codes - 1)
        if isinstance(ro, (SenseAmp, TernaryReadout)):
            return 1.0
        lo_d, hi_d = self.xb._digit_range()
        return float(self.xb.spec.rows * max(abs(lo_d), hi_d) * (2 ** self.xb.spec.cell_bits - 1))

    def _exact_dtype(self) -> torch.dtype:
        """The GEMM precision rule of :meth:`cimsim.crossbar.Crossbar.gemm_dtype`."""
        return torch.float32 if self.xb.gemm_dtype() == np.float32 else torch.float64

    def planes(self, x: np.ndarray) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
        """Bit planes (cycles, batch, in) cut on the device, the plane weights (the same digits as
        :func:`cimsim.encoding.input_planes`) and each example's input sum (float64, for the offset correction)."""
        spec = self.xb.spec
        a = spec.input_bits
        small = np.int16 if a <= 15 else np.int32 if a <= 31 else np.int64   # fewer bytes to copy
        xt = self._upload(x, small).to(torch.int64)
        xsum = xt.sum(dim=1).to(torch.float64)
        if spec.input_signed:
            xt = torch.where(xt < 0, xt + (1 << a), xt)
        shifts, widths = plane_layout(a, spec.dac_bits)
        sh = torch.as_tensor(shifts, device=self.device)[:, None, None]
        mask = torch.as_tensor((1 << widths) - 1, device=self.device)[:, None, None]
        p = (xt[None] >> sh) & mask
        if spec.input_signed:  # the top digit is signed in two's complement
            w = int(widths[-1])
            p[-1] = torch.where(p[-1] >= (1 << (w - 1)), p[-1] - (1 << w), p[-1])
        return p.to(torch.int8 if spec.dac_bits <= 7 else torch.int32), 2.0 ** shifts, xsum

    @torch.no_grad()
    def forward(self, x: np.ndarray, validate=None) -> tuple[np.ndarray, float, float]:
        """y (batch, out) as float64 numpy (offset-corrected), the count of nonzero input digits, and the cell
        read energy.

        All input cycles of all row blocks go through one batched matrix product (row blocks x
        (cycles x batch) rows), as many row blocks at a time as :attr:`ELEMENTS` allows, so a GPU sees few,
        large kernels. The readout returns codes; the shift-and-add over cycles is exact (float32 while
        ``max |code| x sum |plane weight| < 2**24``, float64 beyond), and each row block's ``lo`` and ``lsb`` are
        applied after it: ``sum_t w_t (lo + c_t lsb) = lo sum_t w_t + lsb sum_t w_t c_t``.

        ``validate``, if given, checks the inputs on the host while the device computes (it raises before
        anything is returned or counted).
        """
        xb, dev = self.xb, self.device
        spec = xb.spec
        quant = isinstance(spec.readout, _Quantizer)
        ranges = xb._ranges() if quant else [(0.0, 1.0)] * len(xb.row_blocks)
        dt = self._exact_dtype()
        p, pw, xsum = self.planes(x)
        T, B, K = p.shape
        R, C, N, nblk = spec.rows, xb.physical_columns, xb.out_features, len(xb.row_blocks)
        nonzero = torch.count_nonzero(p).to(torch.float64)
        if nblk * R > K:
            p = torch.nn.functional.pad(p, (0, nblk * R - K))
        rd = torch.float32 if self._code_bound() * float(np.abs(pw).sum()) < 2 ** 24 else torch.float64
        w_t = torch.as_tensor(pw, dtype=rd, device=dev)
        lo = torch.as_tensor([r[0] for r in ranges], dtype=torch.float64, device=dev)
        lsb = torch.as_tensor([r[1] for r in ranges], dtype=torch.float64, device=dev)
        lo_c, lsb_c = lo.to(dt)[:, None, None], lsb.to(dt)[:, None, None]
        binary = spec.dac_bits == 1 and not spec.input_signed      # digits 0/1: x^2 = x
        sq_rows = torch.zeros(nblk * R, dtype=torch.float64, device=dev)
        ro = spec.readout
        fused = (triton is not None and dev.type == "cuda" and quant and ro.offset_sigma_lsb == 0
                 and dt == torch.float32 and rd == torch.float32)
        y = torch.empty((B, N), dtype=torch.float64, device=dev)
        for b0 in range(0, B, spec.batch_chunk):
            b1 = min(b0 + spec.batch_chunk, B)
            nb = b1 - b0
            M = T * nb
            step = max(1, self.ELEMENTS.get(dev.type, self.ELEMENTS["cpu"]) // (M * C))
            xs = p[:, b0:b1].reshape(M, nblk, R)
            acc = torch.zeros(nb * C, dtype=torch.float64, device=dev)
            for g0 in range(0, nblk, step):
                g1 = min(g0 + step, nblk)
                xp = xs[:, g0:g1].permute(1, 0, 2).to(dt)          # (blocks, cycles x batch, rows)
                sq = xp if binary else xp * xp
                sq_rows[g0 * R:g1 * R] += sq.sum(dim=1, dtype=torch.float64).reshape(-1)
                v = self._bmm(xp, self.a, self.a_parts, g0, g1)
                std = None if self.var is None else self._bmm(sq, self.var, self.var_parts, g0, g1).sqrt_()
                if fused and v.numel() < 2 ** 31:   # noise, ADC and shift-and-add in one Triton kernel
                    s = self._fused_epilogue(v, std, lo_c[g0:g1], lsb_c[g0:g1], w_t, T, nb, C)
                else:
                    if std is not None:
                        v.add_(self._randn(v).mul_(std))   # one Gaussian per column value
                    codes = self._codes(v, lo_c[g0:g1], lsb_c[g0:g1]).to(rd).reshape(g1 - g0, T, nb * C)
                    s = torch.matmul(w_t, codes)           # (blocks, batch x columns): the shift-and-add
                s = s.to(torch.float64)
                if quant:
                    s = lo[g0:g1, None] * float(pw.sum()) + lsb[g0:g1, None] * s
                acc += s.sum(dim=0)
            y[b0:b1] = (acc.reshape(nb, C) * self.col_weight).reshape(nb, -1, N).sum(dim=1)
        if xb.slices.offset:
            y -= xb.slices.offset * xsum[:, None]
        v_step2_t = (spec.cell.read_voltage_v / ((1 << spec.dac_bits) - 1)) ** 2 * spec.cell.read_time_s
        energy = (sq_rows @ self.rowsum) * v_step2_t
        if validate is not None:
            validate()
        tallies = torch.stack([nonzero, energy]).cpu().numpy()
        return y.cpu().numpy(), float(tallies[0]), float(tallies[1])
