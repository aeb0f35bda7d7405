"""Weight layouts an architecture may ask the mapper for, besides the engine's own slicing of each layer.

:meth:`cimsim.arch.base.Architecture.weight_layout` returns ``None`` (every layer is one
:class:`~cimsim.Crossbar` per group, sliced by the architecture's :class:`~cimsim.CrossbarSpec`) or one of the
layouts declared here, which :mod:`cimsim.mappers` builds into packed tiles (:mod:`cimsim.packed`). Kept
apart from the engine so that ``cimsim.arch`` loads no compiled kernels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cimsim.errors import ConfigError


@dataclass(frozen=True)
class BitPlaneLayout:
    """SME's layout (Liu et al., arXiv 2103.01705; :mod:`cimsim.mappers.sme`): bit-sparsity shaping, bit-slice
    splicing (one weight bit-plane per group of 1-bit crossbars) and squeeze-out of sparse crossbars.

    ``nonzero_bits``: shaping keeps at most this many non-zero bits in each weight's magnitude (each weight moves
    to the nearest such value); 0 leaves the quantized weights as they are.
    ``shaping_tolerance``: crossbar-aware shaping narrows the bit-planes each column segment (one output's weights
    in one row block of the array) keeps, so that a row block needs fewer crossbars, while the row block's squared
    weight error stays within this fraction of its squared weights; 0 keeps every plane.
    ``squeeze_density``: a spliced crossbar whose non-zero cells fill less than this fraction of its
    ``rows x cols`` cells is emptied and its non-zeros packed with others'; 0 keeps every spliced crossbar
    (empty ones are never allocated).
    """

    nonzero_bits: int = 0
    squeeze_density: float = 0.0
    shaping_tolerance: float = 0.0

    def __post_init__(self):
        for k in ("nonzero_bits",):
            b = getattr(self, k)
            if isinstance(b, bool) or not isinstance(b, int) or b < 0:
                raise ConfigError(f"BitPlaneLayout.{k} must be a non-negative integer (0: no shaping), got {b!r}")
        t = self.shaping_tolerance
        if isinstance(t, bool) or not (isinstance(t, (int, float)) and math.isfinite(t) and 0 <= t <= 1):
            raise ConfigError(f"BitPlaneLayout.shaping_tolerance must lie in [0, 1] (0: no plane windows), got {t!r}")
        d = self.squeeze_density
        if not (isinstance(d, (int, float)) and math.isfinite(d) and 0 <= d <= 1):
            raise ConfigError(f"BitPlaneLayout.squeeze_density must lie in [0, 1], got {d!r}")
