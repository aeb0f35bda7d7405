"""The batch size an evaluation runs at when the user names none (``cimsim run``, ``sweep``, ``bench --model``).

On the CPU it stays 64 (the numba engine splits a batch over the cores itself; measured defaults in BENCHMARKS.md,
"The README's main command on 2 cores"). On a GPU the engine is a few large kernels per layer, and a small batch
leaves much of the device idle: ResNet-20 on ISAAC with both noises evaluated 2,552 images/s on an H200 at batch
1,024 against 1,231 at 64 (2,573 at 2,048; BENCHMARKS.md, issue 19). So the GPU default is sized to the device: the
largest power of two up to :data:`GPU_BATCH_CAP` whose estimated working set (:func:`engine_bytes_per_example`, a
deliberate over-estimate) fits in :data:`GPU_MEMORY_SHARE` of the device's memory. It depends on the network, its
input shape and the device's total memory (not its momentary free memory), so a command gives the same batch, and the
same seeded numbers, every time on the same kind of GPU; reports record the batch size they ran at.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

# CPU default: unchanged since the first release (the README's numbers and every seeded CPU result use it)
CPU_BATCH = 64
# GPU: the batch of issue 19's measurements on an H200 (ResNet-20/ISAAC: 1.9 GB of GPU memory at 1,024; BENCHMARKS.md);
# larger batches add memory and no measured speed; our choice
GPU_BATCH_CAP = 1024
# the share of the device's memory the estimate may fill: the estimate is ~1.5x the measured peak on ResNet-20, and
# the rest leaves room for the float network, CUDA's context and other processes; our choice
GPU_MEMORY_SHARE = 0.25
# bytes a layer's crossbars hold per output position: each input of the unfolded window as float32 patches, int32
# block inputs and a float32 copy (12 bytes), and each output channel's column values as float32 on up to 16
# physical columns (8 weight slices x 2 for a differential pair: 64 bytes); an over-estimate for every architecture
# we ship; our choice (the GPU path's buffers, crossbar_torch.TorchTile)
BYTES_PER_INPUT, BYTES_PER_OUTPUT = 12, 64


def engine_bytes_per_example(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """An upper estimate of the crossbar engine's working set per example: the largest, over the network's
    convolution and linear layers, of (output positions) x (``BYTES_PER_INPUT`` x window size + ``BYTES_PER_OUTPUT``
    x output channels), summed over a layer's calls (a spiking network's time steps). From one forward pass of a
    copy of ``model`` on one zero example on the CPU (the network itself, and any state it keeps, is untouched)."""
    probe = copy.deepcopy(model).to("cpu").eval()
    per_module: dict[int, int] = {}

    def hook(module, inputs, output):
        x = inputs[0] if isinstance(inputs, tuple) else inputs
        if not isinstance(x, torch.Tensor) or not isinstance(output, torch.Tensor):
            return
        if isinstance(module, nn.Linear):
            k, n = module.in_features, module.out_features
            positions = x.numel() // max(1, k)
        else:   # a convolution: one window per output position
            k = module.in_channels // module.groups
            for s in module.kernel_size:
                k *= s
            n = module.out_channels
            positions = output[0].numel() // max(1, n)
        per_module[id(module)] = (per_module.get(id(module), 0)
                                  + positions * (BYTES_PER_INPUT * k + BYTES_PER_OUTPUT * n))

    handles = [m.register_forward_hook(hook) for m in probe.modules()
               if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    try:
        with torch.no_grad():
            probe(torch.zeros((1, *input_shape)))
    finally:
        for h in handles:
            h.remove()
    return max(per_module.values(), default=0)


def default_batch(model: nn.Module, input_shape: tuple[int, ...], device: str) -> tuple[int, str]:
    """The batch size for ``device`` (``"cpu"`` or ``"cuda"``) and a sentence saying how it was chosen."""
    if device != "cuda" or not torch.cuda.is_available():
        return CPU_BATCH, f"the CPU default {CPU_BATCH}"
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    try:
        per_example = max(1, engine_bytes_per_example(model, input_shape))
    except Exception as e:   # a network the probe cannot run (the evaluation itself will say what is wrong)
        return CPU_BATCH, f"{CPU_BATCH}: the working set could not be estimated ({type(e).__name__})"
    budget = GPU_MEMORY_SHARE * props.total_memory
    batch = GPU_BATCH_CAP
    while batch > 1 and batch * per_example > budget:
        batch //= 2
    return batch, (f"sized to the GPU ({props.name}, {props.total_memory / 2 ** 30:.0f} GiB): about "
                   f"{per_example / 2 ** 20:.1f} MiB per example, at most {GPU_BATCH_CAP}")
