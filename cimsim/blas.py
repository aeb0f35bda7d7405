"""One BLAS thread for the small products around the engine.

A mapped layer's exact integer product (the reference of its per-layer error) is a float64 GEMM with few
output columns per batch; a multi-threaded OpenBLAS spends more on waking and parking its threads than on
such a product, badly so on a busy 2-core machine (measured: 23 ms of CPU for a 50176 x 25 x 6 product with
2 threads, 5 ms with one). :func:`one_thread` limits BLAS to one thread for a ``with`` block; the controller
that does it scans the process's libraries once (about 2.5 ms), after which a limit costs about 10 us.

:func:`torch_one_thread` does the same for torch's own operations on the host (im2col, pooling, the float
layers): a mapped network on the numba engine runs many small torch operations per batch, and torch's OpenMP
threads wait at a barrier after each one; on this project's 2-core machine under load (average 3-4) an im2col of
a 64 x 1 x 32 x 32 batch took 177 ms with torch's 2 threads against 3.4 ms with one, and the README's main
command spent half its evaluation there (issue 19). The engine's own thread pool uses the cores instead.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

from threadpoolctl import ThreadpoolController


@lru_cache(maxsize=1)
def controller() -> ThreadpoolController:
    """The BLAS and OpenMP libraries of this process, found once."""
    return ThreadpoolController()


def one_thread():
    """A context manager under which BLAS runs on one thread."""
    return controller().limit(limits=1, user_api="blas")


@contextmanager
def torch_one_thread():
    """A context manager under which torch's host operations run on one thread (its count restored after);
    changing the count costs well under a microsecond."""
    import torch

    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
