"""The torch backend of the crossbar engine (CPU or CUDA).

The same arithmetic as the numba backend (:mod:`cimsim.crossbar`): exact bit-plane matrix products
(float32 while every integer column sum stays below 2**24, float64 beyond; so both backends agree bit
for bit on integer paths), one Gaussian per
column value for read noise with a variance from a second product, the same readout transfer
functions. Random numbers come from a ``torch.Generator`` on the device seeded from the crossbar's seed:
same seed, same numbers on the same backend and device; in distribution equal to the numba backend.
"""

from __future__ import annotations

import numpy as np
import torch

from cimsim.devices.converters import IdealReadout, SenseAmp, TernaryReadout, _Quantizer
from cimsim.encoding import plane_layout
from cimsim.errors import ConfigError


class TorchTile:
    """Device-resident copies of a crossbar's level matrices and the torch forward pass."""

    def __init__(self, xb, device: str):
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("device='cuda' asked for, but torch sees no CUDA GPU: use device='cpu'")
        self.xb = xb
        self.device = torch.device(device)
        seed = int(xb._seeds.generate_state(1, dtype=np.uint64)[0] & 0x7FFF_FFFF_FFFF_FFFF)
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        self.load()

    def load(self) -> None:
        xb, dev = self.xb, self.device
        self.a = [torch.as_tensor(a, dtype=torch.float64, device=dev) for a in xb._a]
        self.var = [None if v is None else torch.as_tensor(v, dtype=torch.float64, device=dev) for v in xb._var]
        self.rowsum = [torch.as_tensor(r, dtype=torch.float64, device=dev) for r in xb._g_rowsum]
        self.col_weight = torch.as_tensor(xb._col_weight, dtype=torch.float64, device=dev)

    def _readout(self, v: torch.Tensor, lo: float, lsb: float) -> torch.Tensor:
        ro = self.xb.spec.readout
        if isinstance(ro, IdealReadout):
            return v
        if isinstance(ro, _Quantizer):
            u = (v - lo) / lsb
            if ro.offset_sigma_lsb > 0:
                u = u + ro.offset_sigma_lsb * torch.randn(u.shape, generator=self.gen, device=self.device,
                                                          dtype=u.dtype)
            return lo + torch.clamp(torch.floor(u + 0.5), 0, ro.n_codes - 1) * lsb
        if isinstance(ro, SenseAmp):
            if ro.offset_sigma > 0:
                v = v + ro.offset_sigma * torch.randn(v.shape, generator=self.gen, device=self.device,
                                                      dtype=v.dtype)
            return (v > ro.threshold).to(v.dtype)
        if isinstance(ro, TernaryReadout):
            up = down = v
            if ro.offset_sigma > 0:
                up = v + ro.offset_sigma * torch.randn(v.shape, generator=self.gen, device=self.device, dtype=v.dtype)
                down = v + ro.offset_sigma * torch.randn(v.shape, generator=self.gen, device=self.device, dtype=v.dtype)
            return (up > ro.delta).to(v.dtype) - (down < -ro.delta).to(v.dtype)
        raise ConfigError(f"readout {type(ro).__name__} is not supported by the crossbar engine")

    def _exact_dtype(self) -> torch.dtype:
        """The GEMM precision rule of :meth:`cimsim.crossbar.Crossbar.gemm_dtype`."""
        return torch.float32 if self.xb.gemm_dtype() == np.float32 else torch.float64

    def planes(self, x: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """Bit planes (cycles, batch, in) cut on the device, and the plane weights (the same digits as
        :func:`cimsim.encoding.input_planes`)."""
        spec = self.xb.spec
        a = spec.input_bits
        small = np.int16 if a <= 15 else np.int32 if a <= 31 else np.int64   # fewer bytes to copy
        xt = torch.as_tensor(x.astype(small), device=self.device).to(torch.int64)
        if spec.input_signed:
            xt = torch.where(xt < 0, xt + (1 << a), xt)
        shifts, widths = plane_layout(a, spec.dac_bits)
        sh = torch.as_tensor(shifts, device=self.device)[:, None, None]
        mask = torch.as_tensor((1 << widths) - 1, device=self.device)[:, None, None]
        p = (xt[None] >> sh) & mask
        if spec.input_signed:  # the top digit is signed in two's complement
            w = int(widths[-1])
            p[-1] = torch.where(p[-1] >= (1 << (w - 1)), p[-1] - (1 << w), p[-1])
        return p.to(torch.int8 if spec.dac_bits <= 7 else torch.int32), 2.0 ** shifts

    @torch.no_grad()
    def forward(self, x: np.ndarray) -> tuple[np.ndarray, float, float]:
        """y (batch, out) as float64 numpy, the count of nonzero input digits, and the cell read energy.

        All input cycles of a row block go through one matrix product ((cycles x batch) rows), so a GPU
        sees few, large kernels.
        """
        xb, dev = self.xb, self.device
        spec = xb.spec
        ranges = xb._ranges() if isinstance(spec.readout, _Quantizer) else [(0.0, 1.0)] * len(xb.row_blocks)
        dt = self._exact_dtype()
        p, pw = self.planes(x)
        T, B, N = p.shape[0], p.shape[1], xb.out_features
        w_t = torch.as_tensor(pw, dtype=torch.float64, device=dev)[:, None, None]
        y = torch.zeros((B, N), dtype=torch.float64, device=dev)
        v_step2_t = (spec.cell.read_voltage_v / ((1 << spec.dac_bits) - 1)) ** 2 * spec.cell.read_time_s
        nonzero = torch.zeros((), dtype=torch.float64, device=dev)
        energy = torch.zeros((), dtype=torch.float64, device=dev)
        for b0 in range(0, B, spec.batch_chunk):
            b1 = min(b0 + spec.batch_chunk, B)
            nb = b1 - b0
            acc = torch.zeros((nb, xb.physical_columns), dtype=torch.float64, device=dev)
            for i, (k0, k1) in enumerate(xb.row_blocks):
                a, var, (lo, lsb) = self.a[i], self.var[i], ranges[i]
                xp = p[:, b0:b1, k0:k1].reshape(T * nb, k1 - k0).to(dt)
                v = xp @ a.to(dt)
                sq = xp * xp
                if var is not None:
                    std = torch.sqrt(sq @ var.to(dt))
                    if std.dim() == 1:
                        std = std[:, None]
                    v = v + std * torch.randn(v.shape, generator=self.gen, device=dev, dtype=torch.float32).to(dt)
                out = self._readout(v, lo, lsb).to(torch.float64).reshape(T, nb, -1)
                acc += (w_t * out).sum(dim=0)
                nonzero += torch.count_nonzero(xp)
                energy += (sq.sum(dim=0).to(torch.float64) @ self.rowsum[i]) * v_step2_t
            y[b0:b1] = (acc * self.col_weight).reshape(nb, -1, N).sum(dim=1)
        return y.cpu().numpy(), float(nonzero), float(energy)
