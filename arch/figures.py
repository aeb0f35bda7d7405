"""Chip-level figures every architecture reports (``cimsim archs show NAME``)."""

from __future__ import annotations

MM2 = 1e-6


def chip_figures(name: str, description: str, peak_ops_per_s: float,
                 breakdown: dict[str, dict[str, float]], **extra) -> dict:
    """Peak throughput, power, area and efficiencies rolled up from a per-component breakdown.

    ``breakdown`` maps component kind -> {"power_w": W, "area_m2": m^2}; totals are its sums.
    Computational efficiency is GOPS per mm^2, power efficiency GOPS per W (one MAC = 2 ops).
    """
    power = sum(r["power_w"] for r in breakdown.values())
    area = sum(r["area_m2"] for r in breakdown.values())
    return {
        "name": name,
        "description": description,
        "peak_ops_per_s": peak_ops_per_s,
        "power_w": power,
        "area_m2": area,
        "ce_gops_per_s_per_mm2": peak_ops_per_s / 1e9 / (area / MM2),
        "pe_gops_per_w": peak_ops_per_s / 1e9 / power,
        "breakdown": breakdown,
        **extra,
    }
