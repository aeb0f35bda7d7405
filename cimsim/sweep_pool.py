"""Where a sweep's points run when not in the calling process (:func:`cimsim.sweep.run_sweep`): a pool of local
worker processes (each with its share of the cores' threads, each ending with the sweep that started it), a Dask
cluster's executor (:func:`dask_executor`, needs ``cimsim[dist]``) or any ``concurrent.futures`` executor
(:func:`run_parallel`). The sweep file is written only by the calling process, through the ``finish`` callback.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

from cimsim.errors import CimsimError, ConfigError

if TYPE_CHECKING:
    from cimsim.report import Report
    from cimsim.sweep import Settings
    from cimsim.sweepfile import Point


def _run_point(evaluate_fn, point: Point, settings: Settings) -> Report:
    """What a worker runs (module level, so it pickles)."""
    return evaluate_fn(point, settings)


def _die_with_parent() -> None:
    """A local worker ends when the sweep that started it does, even by kill -9: a watchdog thread sees the
    parent change (Linux's parent-death signal is not used: it fires when the parent *thread* that started the
    worker ends, and the pool starts workers from its own threads)."""
    import threading

    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="cimsim-parent-watch").start()


def _limit_threads(n: int) -> None:
    """Local worker processes share the cores: each gets its share of torch and numba threads; and each dies
    with the sweep that started it."""
    _die_with_parent()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(n)  # read by torch and numba when they are imported
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def require_dask():
    """dask.distributed's Client, or a one-line ConfigError naming the extra to install."""
    try:
        from dask.distributed import Client
    except ImportError:
        raise ConfigError("--scheduler needs dask.distributed, which is not installed: "
                          "pip install 'cimsim[dist]'") from None
    return Client


def dask_executor(address: str):
    """A concurrent.futures executor on the Dask cluster at ``address`` (needs ``cimsim[dist]``)."""
    Client = require_dask()
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"cannot reach the Dask scheduler at {address} ({exc}); check --scheduler") from None
    return client, client.get_executor(pure=False)


def run_parallel(todo, settings, evaluate_point, workers, executor, finish, failed, bar) -> None:
    """Run ``todo`` on ``executor`` (None: a pool of ``workers`` local processes), writing each as it finishes."""
    import concurrent.futures as cf
    import multiprocessing

    own = executor is None
    if executor is None:
        threads = max(1, (os.cpu_count() or 1) // workers)
        executor = cf.ProcessPoolExecutor(max_workers=min(workers, len(todo)),
                                          mp_context=multiprocessing.get_context("spawn"),
                                          initializer=_limit_threads, initargs=(threads,))
    try:
        futures = {executor.submit(_run_point, evaluate_point, p, settings): p for p in todo}
        pending = set(futures)
        while pending:
            finished, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in sorted(finished, key=lambda f: futures[f].sort_key()):
                p = futures[fut]
                try:
                    report = fut.result()
                except CimsimError as exc:
                    for other in pending:
                        other.cancel()
                    raise failed(p, exc) from None
                finish(p, report)
                bar.set_postfix_str(f"{p.key} done")
                bar.update()
    finally:
        if own:
            executor.shutdown(wait=True, cancel_futures=True)
