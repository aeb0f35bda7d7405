"""The CPU engine's threads: how many (``$CIMSIM_THREADS``, else every core this process may use), one pool of them
shared by every crossbar, the BLAS libraries' controller that keeps each product on one thread inside them
(:mod:`cimsim.crossbar_cpu`, :mod:`cimsim.calibration`, :mod:`cimsim.kernels_host`), and which product the fused path
takes (``$CIMSIM_CPU_PRODUCT``)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

_POOL: ThreadPoolExecutor | None = None
_BLAS = None   # threadpoolctl's ThreadpoolController, made on first use (its import costs 20 ms of every start)


def blas_controller():
    """The BLAS libraries of this process, found once: building a controller scans every loaded library
    (about 2.5 ms, which ``threadpool_limits`` paid on each call: 30 % of a LeNet-5 evaluation)."""
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS


def threads() -> int:
    """Threads the fused path splits a batch over: ``$CIMSIM_THREADS``, else every core this process may use."""
    text = os.environ.get("CIMSIM_THREADS", "")
    if text.strip().isdigit() and int(text) > 0:
        return int(text)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:   # pragma: no cover - platforms without sched_getaffinity
        return max(1, os.cpu_count() or 1)


def pool() -> ThreadPoolExecutor:
    """The engine's thread pool, :func:`threads` workers (rebuilt when that number changes)."""
    global _POOL
    n = threads()
    if _POOL is None or _POOL._max_workers != n:
        if _POOL is not None:
            _POOL.shutdown(wait=False)
        _POOL = ThreadPoolExecutor(max_workers=n, thread_name_prefix=_WORKER)
    return _POOL


_WORKER = "cimsim-engine"   # the pool's thread names: work a worker starts runs on that worker (see parallel_map)


def parallel_map(fn, items) -> list:
    """``[fn(item) for item in items]``, spread over the engine's threads (:func:`threads`) when there are several
    items and threads; ``fn`` should release the GIL (a numba ``nogil`` kernel) to gain from it. Called from one of
    the engine's threads it runs there, in order: a worker waiting for the pool it belongs to could wait forever."""
    items = list(items)
    if len(items) > 1 and threads() > 1 and not threading.current_thread().name.startswith(_WORKER):
        return list(pool().map(fn, items))
    return [fn(item) for item in items]


def fixed_shares(fn, items, n_threads: int) -> list:
    """``[fn(item) for item in items]`` on ``min(n_threads, len(items))`` of the engine's threads, thread k taking
    items k, k + n, k + 2 n, ... in turn: equal shares of equal work. The pool's first-come order (:func:`parallel_map`)
    left some of the device host's 16 threads three of the standard case's 32 shards and others one, as they woke
    (BENCHMARKS.md, "The fused path's product on AMX tiles"). Called from one of the engine's threads it runs there,
    in order."""
    items = list(items)
    n = min(n_threads, len(items))
    if n < 2 or threading.current_thread().name.startswith(_WORKER):
        return [fn(item) for item in items]
    out = [None] * len(items)

    def share(k: int) -> None:
        for j in range(k, len(items), n):
            out[j] = fn(items[j])

    list(pool().map(share, range(n)))
    return out


def taken_shares(fn, items, n_threads: int) -> list:
    """``[fn(item) for item in items]`` on ``min(n_threads, len(items))`` of the engine's threads, each taking the
    next item not yet taken until none is left (as the share kernels take shards, :func:`cimsim.kernels_shares.take_next`):
    a thread slowed by its core's neighbours or by waiting for the interpreter's lock takes fewer. Results in the
    items' order. Called from one of the engine's threads it runs there, in order."""
    items = list(items)
    n = min(n_threads, len(items))
    if n < 2 or threading.current_thread().name.startswith(_WORKER):
        return [fn(item) for item in items]
    out = [None] * len(items)
    taken, lock = [0], threading.Lock()

    def share(_k: int) -> None:
        while True:
            with lock:
                j = taken[0]
                taken[0] += 1
            if j >= len(items):
                return
            out[j] = fn(items[j])

    list(pool().map(share, range(n)))
    return out


CPU_PRODUCTS = ("auto", "tables", "amx")


def cpu_product() -> str:
    """``$CIMSIM_CPU_PRODUCT``, the CPU engine's product for one-bit digits on the grid of exact sums: ``auto`` (the
    default: AMX tiles where they run, :mod:`cimsim.kernels_amx`), ``tables`` or ``amx``; anything else is a
    one-line error (the CLI checks it before any work)."""
    from cimsim.errors import ConfigError

    text = os.environ.get("CIMSIM_CPU_PRODUCT", "auto").strip().lower() or "auto"
    if text not in CPU_PRODUCTS:
        raise ConfigError(f"CIMSIM_CPU_PRODUCT={text!r} is not one of {', '.join(CPU_PRODUCTS)}; unset it or pick one")
    return text
