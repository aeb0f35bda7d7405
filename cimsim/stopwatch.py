"""Seconds spent in stretches of work, on the host or on a GPU (a mapped layer's engine time: ``cimsim bench
--model``)."""

from __future__ import annotations

import time

import torch


class Stopwatch:
    """Seconds spent in stretches of work. On a GPU each stretch is a pair of CUDA events, read only when the total
    is asked for (:attr:`seconds`), so timing a layer does not make the host wait for the device."""

    def __init__(self):
        self.host_s, self.events = 0.0, []

    def start(self, device: torch.device | None):
        if device is not None and device.type == "cuda":
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def stop(self, token) -> None:
        if isinstance(token, float):
            self.host_s += time.perf_counter() - token
            return
        end = torch.cuda.Event(enable_timing=True)
        end.record()
        self.events.append((token, end))

    @property
    def seconds(self) -> float:
        if self.events:
            self.events[-1][1].synchronize()
            self.host_s += sum(a.elapsed_time(b) for a, b in self.events) / 1e3
            self.events = []
        return self.host_s
