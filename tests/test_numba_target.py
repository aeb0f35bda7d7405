"""numba's target for cimsim's CPU kernels (cimsim.numba_target): 512-bit vectors where the CPU has AVX-512, the
user's own NUMBA_CPU_NAME / NUMBA_CPU_FEATURES kept."""

import numpy as np

from cimsim import numba_target

AVX512 = "+sse4.2,+avx,+avx2,+fma,+avx512f,+avx512bw,-amx-tile"
AVX2 = "+sse4.2,+avx,+avx2,+fma,-avx512f,-avx512bw"


def test_avx512_hosts_get_the_full_width():
    assert numba_target.wide_vector_features(AVX512, {}) == AVX512 + ",-prefer-256-bit"


def test_other_hosts_and_the_users_choice_are_left_alone():
    assert numba_target.wide_vector_features(AVX2, {}) is None                      # no AVX-512: nothing to widen
    assert numba_target.wide_vector_features("", {}) is None                         # features unknown
    assert numba_target.wide_vector_features(AVX512, {"NUMBA_CPU_NAME": "haswell"}) is None
    assert numba_target.wide_vector_features(AVX512, {"NUMBA_CPU_FEATURES": "+avx2"}) is None
    assert numba_target.wide_vector_features(AVX512 + ",-prefer-256-bit", {}) is None


def test_the_kernels_compile_for_the_configured_target():
    """Importing a kernel module set numba's features before its first compilation: this host's features, widened
    where it has AVX-512 (or whatever the environment asked for); on such a host a loop then runs on 512-bit
    registers, whatever LLVM's tuning for the CPU prefers."""
    import numba
    import pytest

    import cimsim.kernels  # noqa: F401  (configures the target on import)
    from numba.core import codegen, config

    want = numba_target.wide_vector_features(codegen.get_host_cpu_features())
    if want is None:
        pytest.skip("no AVX-512 here, or the environment chose numba's target")
    assert config.CPU_FEATURES == want

    @numba.njit(error_model="numpy")
    def axpy(a, x, y):
        for i in range(x.size):
            y[i] += a * x[i]

    x = np.arange(1000.0)
    y = np.ones(1000)
    axpy(2.0, x, y)
    np.testing.assert_array_equal(y, 1 + 2 * x)
    assert "zmm" in next(iter(axpy.inspect_asm().values()))
