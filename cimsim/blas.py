"""One BLAS thread for the small products around the engine.

A mapped layer's exact integer product (the reference of its per-layer error) is a float64 GEMM with few
output columns per batch; a multi-threaded OpenBLAS spends more on waking and parking its threads than on
such a product, badly so on a busy 2-core machine (measured: 23 ms of CPU for a 50176 x 25 x 6 product with
2 threads, 5 ms with one). :func:`one_thread` limits BLAS to one thread for a ``with`` block; the controller
that does it scans the process's libraries once (about 2.5 ms), after which a limit costs about 10 us.
"""

from __future__ import annotations

from functools import lru_cache

from threadpoolctl import ThreadpoolController


@lru_cache(maxsize=1)
def controller() -> ThreadpoolController:
    """The BLAS and OpenMP libraries of this process, found once."""
    return ThreadpoolController()


def one_thread():
    """A context manager under which BLAS runs on one thread."""
    return controller().limit(limits=1, user_api="blas")
