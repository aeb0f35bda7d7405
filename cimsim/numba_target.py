"""The code numba generates for cimsim's CPU kernels: 512-bit vectors wherever the CPU has AVX-512.

LLVM tunes for the host CPU, and its tuning for Intel's AVX-512 server cores (Skylake-SP to Emerald Rapids: the
``prefer-256-bit`` tuning feature) vectorizes loops 256 bits wide, where AMD's Zen 4 gets 512: on the lent H200's Intel
host the normal generator's passes ran 4 float64 lanes wide instead of 8 (BENCHMARKS.md, "Crossbar engine"). The
kernels' results do not depend on the width (they allow FMA contraction, never reassociation, so no sum is vectorized
in another order: the standard case gives the same outputs and events bit for bit with 256- and 512-bit code, and
with AVX2 only; BENCHMARKS.md, "512-bit vectors on Intel's AVX-512 cores"), so :func:`configure` asks for the full width:
the host's own features, ``-prefer-256-bit`` added. A ``NUMBA_CPU_NAME`` or ``NUMBA_CPU_FEATURES`` the user set is
left alone, as is a process whose numba already generated code (its target is fixed by then).
"""

from __future__ import annotations

import os


def wide_vector_features(host_features: str, environ=None) -> str | None:
    """The feature string numba should compile for (None: leave numba's own choice): the host's features with
    ``-prefer-256-bit`` where they include AVX-512 and the environment sets neither ``NUMBA_CPU_NAME`` nor
    ``NUMBA_CPU_FEATURES``."""
    environ = os.environ if environ is None else environ
    if environ.get("NUMBA_CPU_NAME") or environ.get("NUMBA_CPU_FEATURES"):
        return None
    feats = host_features.split(",")
    if "+avx512f" not in feats or "-prefer-256-bit" in feats:
        return None
    return host_features + ",-prefer-256-bit"


def configure() -> str | None:
    """Set numba's target features (:func:`wide_vector_features` of the host's) before its first compilation;
    returns the string set, or None. Call it where numba is first imported for a kernel module (after
    :func:`cimsim.fileio.numba_cache_fallback`)."""
    from numba.core import codegen, config

    if config.CPU_FEATURES is not None:
        return None
    features = wide_vector_features(codegen.get_host_cpu_features())
    if features is not None:
        config.CPU_FEATURES = features
    return features
