"""What the mapper does for spiking networks and for crossbars read by one sense amplifier per column.

Spiking networks (:func:`cimsim.spiking.is_spiking`: cimsim's :class:`~cimsim.spiking.LIF` or snnTorch's
``Leaky``, which the mapper turns into the equivalent ``LIF``, :func:`cimsim.spiking.convert_snntorch`) run
their own time loop in ``forward``; the mapper sees every matrix layer called once per time step. Then:

* a layer whose calibration inputs are all 0 or 1 (spikes) takes 1-bit inputs: each time step drives the
  rows once (one read cycle, no bit-serial streaming); a layer fed analog values (the first layer of a
  directly encoded network) keeps the architecture's input bits, streamed bit-serially every step;
* the layer's positions per inference count every time step (``LayerPlan.time_steps`` calls), so energy
  and latency per inference include every step; the report gives the time steps and the spikes the
  network's neurons fired per inference (:class:`SpikeCounter`).

Crossbars read column by column by a sense amplifier (a :class:`~cimsim.devices.SenseAmp` without
``pair_readout``: the ADC-less SNN architecture, arXiv 2211.02167) give a binarized partial sum per
(row block, weight slice, polarity, output): ``s * H(PS / s - threshold)``, accumulated digitally (into the
LIF membrane). Where the network was not trained for it, :func:`sense_amp_scales` sets each scale ``s`` to
the multiple of the column's mean non-zero partial sum whose decisions reproduce the calibration partial
sums with the least squared error.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cimsim.encoding import input_planes, slice_weights
from cimsim.spiking import SpikingNeuron

# candidate multiples of the mean non-zero partial sum for the initial sense-amp scales (our choice: spans
# the MSE optimum of a 1-bit quantizer {0, s} on the skewed, mostly small partial sums of sparse spikes)
SCALE_MULTIPLES = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)


def binary_inputs(acts: list[torch.Tensor]) -> bool:
    """Whether every calibration input of a layer is 0 or 1 (spikes)."""
    return bool(acts) and all(bool(((a == 0) | (a == 1)).all()) for a in acts)


def sense_amp_scales(x_int: np.ndarray, w_int: np.ndarray, spec) -> np.ndarray:
    """Initial scales (row blocks, slices, polarities, outputs) of a tile read by one sense amplifier per column.

    ``x_int`` (positions, K) integer inputs, ``w_int`` (O, K) integer weights, ``spec`` the tile's
    :class:`~cimsim.CrossbarSpec` (its slicing, signed mode, rows and the sense amp's ``threshold``, in units of
    the scale). Per column, the multiple of the mean non-zero partial sum (from :data:`SCALE_MULTIPLES`) whose
    decisions ``s * (PS > threshold * s)`` have the least squared error against ``PS`` (at least 1 level)."""
    planes, _ = input_planes(x_int, spec.input_bits, spec.dac_bits, spec.input_signed, spec.input_encoding)
    sl = slice_weights(w_int, spec.weight_bits, spec.cell_bits, spec.signed)
    levels = sl.levels.astype(np.float32)                     # (S, P, O, K)
    S, P, O, K = levels.shape
    thr = float(spec.readout.threshold)
    blocks = [(k0, min(k0 + spec.rows, K)) for k0 in range(0, K, spec.rows)]
    out = np.ones((len(blocks), S, P, O))
    flat = levels.reshape(S * P * O, K)
    for r, (k0, k1) in enumerate(blocks):
        ps = np.concatenate([p[:, k0:k1].astype(np.float32) @ flat[:, k0:k1].T for p in planes])   # (T*M, SPO)
        nz = np.maximum((ps > 0).sum(axis=0), 1)
        mean = np.maximum(ps.sum(axis=0) / nz, 0.5)
        best, err = None, None
        for c in SCALE_MULTIPLES:
            s = (c * mean).astype(np.float32)
            e = np.square(np.where(ps > thr * s, s, 0.0) - ps).sum(axis=0)
            best = s.copy() if best is None else np.where(e < err, s, best)
            err = e if err is None else np.minimum(e, err)
        out[r] = np.maximum(best, 1.0).reshape(S, P, O)
    return out


class SpikeCounter:
    """Counts the spikes fired by a network's spiking neurons while active (``with SpikeCounter(model) as c:``)."""

    def __init__(self, model: nn.Module):
        self.neurons = {n: m for n, m in model.named_modules() if isinstance(m, SpikingNeuron)}
        self.spikes = {n: 0.0 for n in self.neurons}
        self.updates = {n: 0.0 for n in self.neurons}
        self._handles = []

    def __enter__(self) -> "SpikeCounter":
        def hook(name):
            def on(mod, inputs, output):
                spk = output[0] if isinstance(output, tuple) else output
                self.spikes[name] += float(spk.detach().sum())
                self.updates[name] += spk.numel()
            return on
        self._handles = [m.register_forward_hook(hook(n)) for n, m in self.neurons.items()]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def summary(self, examples: int, time_steps: int) -> dict:
        """Per inference: time steps, spikes fired (total and per neuron layer) and the firing rate."""
        n = max(examples, 1)
        total, updates = sum(self.spikes.values()), sum(self.updates.values())
        return {"time_steps": int(time_steps), "spikes_per_inference": total / n,
                "spikes_per_layer": {k: v / n for k, v in self.spikes.items()},
                "firing_rate": total / updates if updates else 0.0}
