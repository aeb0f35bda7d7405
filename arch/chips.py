"""A network spread over a chain of equal chips: where each layer sits and what crosses the chip-to-chip links.

ISAAC's chip carries four HyperTransport links (Table 6: 10.4 W, 22.88 mm^2 per chip) so that a network larger than
one chip runs on several, layer after layer (est.: ISAAC's text on its multi-chip runs is not available offline;
the CASCADE and Neural-PIM comparisons are at equal total area, docs/references.md#neural-pim). The model (est.):

* the mapped layers, each with its copies (:meth:`cimsim.arch.tiled.TiledChip.copies`), fill the chips' crossbars
  in pipeline order, one after another; a layer may straddle chips (:func:`placement`);
* a layer's results travel along the chain to the chips of the next mapped layer: the next layer's input tensor
  (its elements at its input bits: after the activation, pooling or residual add the producing tiles apply; without
  that size, the layer's outputs at 16 bits, ISAAC sec. 4), each share made on a chip in proportion to the layer's
  crossbars there. A next layer of several copies splits its output
  positions among them: each chip needs the share of the outputs its copies take (in proportion to its crossbars,
  halos left out), so a boundary carries what is made on one side and needed on the other, ``|S(b) - D(b)|`` of
  the output with S and D the shares made and needed on chips up to ``b``. A next layer of one copy split over
  chips needs the whole input vector on each of its chips: a boundary carries everything made on one side if any
  of it lies on the other;
* skip connections (residual adds) are not followed: their data is taken as already where it is added (a lower
  bound for ResNets).

Traffic is booked to the producing layer as ``link_bytes``; the busiest boundary's busier direction over one
direction's bandwidth bounds the pipeline period (:meth:`cimsim.arch.tiled.TiledChip.link_time_s`).
"""

from __future__ import annotations

import math
from typing import Mapping

from cimsim.cost import LayerPlan


def placement(plans: Mapping[str, LayerPlan], copies: Mapping[str, int], per_chip: int) -> dict[str, tuple[int, int]]:
    """Per mapped layer (in pipeline order), the first and last chip its copies occupy when they fill chips of
    ``per_chip`` crossbars one after another."""
    if per_chip < 1:
        raise ValueError(f"per_chip must be a positive number of crossbars, got {per_chip}")
    out, used = {}, 0
    for name, plan in plans.items():
        size = copies.get(name, 1) * plan.arrays
        first = used // per_chip
        last = (used + size - 1) // per_chip if size else first
        out[name] = (first, last)
        used += size
    return out


def _shares(start: int, size: int, per_chip: int, chips: int) -> list[float]:
    """The fraction of a block of ``size`` crossbars from ``start`` on each chip."""
    out = [0.0] * chips
    for c in range(start // per_chip, min((start + size - 1) // per_chip, chips - 1) + 1 if size else 0):
        out[c] = (min(start + size, (c + 1) * per_chip) - max(start, c * per_chip)) / size
    return out


def link_traffic(plans: Mapping[str, LayerPlan], copies: Mapping[str, int], per_chip: int, chips: int,
                 value_bytes: int, input_bits: int) -> tuple[dict[str, float], list[tuple[float, float]]]:
    """(bytes each layer sends over the links per inference, (forward, backward) bytes over each of the
    ``chips - 1`` boundaries). ``value_bytes``: a layer's output value when the next layer's input size is unknown;
    ``input_bits``: a layer's input bits when its plan does not give its own."""
    if per_chip < 1:
        raise ValueError(f"per_chip must be a positive number of crossbars, got {per_chip}")
    shares, used = {}, 0
    for name, plan in plans.items():
        size = copies.get(name, 1) * plan.arrays
        shares[name] = _shares(used, size, per_chip, chips)
        used += size
    per_layer = {n: 0.0 for n in plans}
    boundary = [[0.0, 0.0] for _ in range(max(chips - 1, 0))]
    names = list(plans)
    for name, nxt in zip(names, names[1:]):
        plan, made, need, np_ = plans[name], shares[name], shares[nxt], plans[nxt]
        out = (np_.input_values * (np_.input_bits or input_bits) / 8 if np_.input_values
               else plan.positions * plan.out_features * value_bytes)
        split = copies.get(nxt, 1) > 1
        made_to = need_to = 0.0
        for b in range(chips - 1):
            made_to += made[b]
            need_to += need[b]
            if split:
                fwd, back = max(0.0, made_to - need_to), max(0.0, need_to - made_to)
            else:
                fwd = made_to if any(need[b + 1:]) else 0.0
                back = 1.0 - made_to if any(need[:b + 1]) else 0.0
            boundary[b][0] += out * fwd
            boundary[b][1] += out * back
            per_layer[name] += out * (fwd + back)
    return per_layer, [tuple(x) for x in boundary]


def chips_to_hold(plans: Mapping[str, LayerPlan], per_chip: int) -> int:
    """Chips of ``per_chip`` crossbars that hold one copy of every mapped layer."""
    return max(1, math.ceil(sum(p.arrays for p in plans.values()) / per_chip))
