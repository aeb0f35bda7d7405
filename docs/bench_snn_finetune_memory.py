"""Issue 17's sense-amp fine-tune memory benchmark: the peak host memory and the wall time of training steps of
:func:`cimsim.mappers.snn_qat.finetune`'s loop (forward, loss, backward, Adam) on the CPU.

    PYTHONPATH=$PWD python docs/bench_snn_finetune_memory.py MODEL DATASET BATCH [STEPS [direct|progressive [GRADS.pt]]]

``direct``: every sense-amp layer binarized (the final phase of every schedule); ``progressive``: a middle stage
of the progressive schedule (the first half of the layers binarized, the rest exact). The network is the shipped
float checkpoint prepared by :func:`~cimsim.mappers.snn_qat.prepare` (calibration: the first batch). Prints, as
one JSON line: the resident memory before the steps, the peak during them (Linux ``VmHWM``, reset before the
steps through ``/proc/self/clear_refs``) and their difference, the median step time, and a digest of the first
step's loss (equal digests before and after a change: the same forward numbers); a sixth argument names a file
for the first step's gradients (``torch.save``: a dict of parameter names to tensors).
"""
import hashlib
import json
import sys
import time

import torch
import torch.nn.functional as F


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def main(model_name: str, dataset: str, batch: int, steps: int = 3, schedule: str = "direct"):
    import cimsim
    from cimsim import networks
    from cimsim.mappers import snn_qat

    torch.manual_seed(0)
    model, _, data, _ = networks.load_model_and_data(model_name, dataset, None, None)
    cfg = snn_qat.SAConfig.from_arch(cimsim.arch.get("adcless-snn"))
    x, y = data.x_train[:batch * steps], data.y_train[:batch * steps]
    work = snn_qat.prepare(model, cfg, [x[:batch]], seed=0)
    layers = list(snn_qat.sa_layers(work).values())
    for i, m in enumerate(layers):
        m.fraction = 1.0 if schedule == "direct" or i < len(layers) // 2 else 0.0
    scales = [p for n, p in work.named_parameters() if n.endswith("sa_scale")]
    others = [p for n, p in work.named_parameters() if not n.endswith("sa_scale")]
    opt = torch.optim.Adam([{"params": others, "lr": 5e-4}, {"params": scales, "lr": 1e-2}])
    work.train()
    base = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:   # reset VmHWM to the current resident size
        f.write("5")
    times, digest, grads = [], hashlib.sha256(), {}
    for s in range(steps):
        t = time.perf_counter()
        xb, yb = x[s * batch:(s + 1) * batch], y[s * batch:(s + 1) * batch]
        loss = F.cross_entropy(work(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if s == 0:
            digest.update(loss.detach().double().numpy().tobytes())
            grads = {n: p.grad.detach().clone() for n, p in work.named_parameters()}
        opt.step()
        times.append(time.perf_counter() - t)
    peak = _status("VmHWM")
    return {"model": model_name, "batch": batch, "steps": steps, "schedule": schedule,
            "rss_before_GB": round(base / 1e9, 3), "peak_GB": round(peak / 1e9, 3),
            "step_peak_GB": round((peak - base) / 1e9, 3), "step_s": round(sorted(times)[len(times) // 2], 2),
            "first_loss_digest": digest.hexdigest()[:16], "threads": torch.get_num_threads()}, grads


if __name__ == "__main__":
    a = sys.argv[1:]
    info, grads = main(a[0], a[1], int(a[2]), *(int(a[3]),) if len(a) > 3 else (), *a[4:5])
    if len(a) > 5:   # the first step's gradients, for a comparison with tolerances
        torch.save(grads, a[5])
    print(json.dumps(info))
