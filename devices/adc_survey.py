"""The ADC survey's envelope: energy and area per conversion of the best converter at a resolution, rate and node.

Murmann's ADC performance survey (ISSCC and VLSI 1997-2025, docs/references.md#murmann-survey) bounds the energy
per conversion of published converters from below by two frontiers:

* thermal noise (Schreier figure of merit): ``E_S = 10**((SNDR - FoM_S(fs)) / 10) / 2`` with
  ``SNDR = 6.02 * ENOB + 1.76`` dB, i.e. 4x per added bit; independent of the node. ``FoM_S(fs)`` is CiMLoop's fit
  to the survey (docs/references.md#cimloop): ``min(180.14, 302.74 - 6.4608 ln fs)`` dB.
* technology (Walden figure of merit): ``E_W = FoM_W(fs, node) * 2**ENOB``, i.e. 2x per added bit: the C V^2 floor
  of comparators, capacitive DACs and logic. ``FoM_W(fs, node) = max(FoM_W,min, FoM_W,1G * (fs / 1 GHz)**k)`` at
  32 nm, scaled to other nodes as switching energy (:func:`cimsim.devices.technology.energy_scale`).

The converter's energy is the envelope ``E = max(E_S, E_W)``: the Walden floor below the knee (about 9 bits at
1.28 GS/s and 32 nm, about 9.3 bits at the low-speed plateau), the thermal bound above it. A flash converter makes
``2**bits - 1`` comparisons per conversion instead of a SAR's ``bits``; its floor is ``FLASH_WALDEN_FACTOR`` times
the all-architecture Walden frontier (fit below).

The Walden constants are our fit to the survey (``ADCsurvey_rev20250609.xlsx``, both sheets, 738 designs),
by the method CiMLoop uses for the Schreier frontier: take the Nyquist-rate CMOS designs at 7-180 nm (356), compute
``FoM_W = (P / fs_nyq) / 2**ENOB`` with ``ENOB = (SNDR_plot - 1.76) / 6.02`` and normalize it to 32 nm with
``energy_scale(node, 32)``; keep the Pareto front against the Nyquist rate (no design both faster and lower);
fit ``ln FoM_W`` to ``ln(fs / 1 GHz)`` by least squares over the 14 front designs at 100 MS/s and above
(:data:`WALDEN_FRONT`); take the low-speed plateau as the 5th percentile of the normalized FoM_W of the 132
designs below 100 MS/s. The flash factor is the geometric mean of the pure-flash front designs' distance from that
line (5 designs, 1.25-20 GS/s; :data:`FLASH_FRONT`). ``python -m cimsim.devices.adc_survey_fit FILE.xlsx``
re-fits them from a survey spreadsheet (:mod:`cimsim.devices.adc_survey_fit`). Like the Schreier fit, the envelope
is optimistic: it is the best converter the survey shows, and designs of 4-6 ENOB at GS/s rates sit 2-4x above it.

Area: CiMLoop's regression of ln(area) on ln(fs), ln(node), bits and ln(energy) over the same survey (its 10 %
quantile), evaluated at the envelope's energy, so area moves with energy as the survey's designs do.
"""

from __future__ import annotations

import math

from cimsim.devices.technology import energy_scale
from cimsim.errors import ConfigError

# --- thermal frontier: CiMLoop / Accelergy ADC plug-in fit to the survey (model.yaml; docs/references.md#cimloop)
FOMS_MAX_DB = 180.14                   # the survey's 95th-percentile Schreier FoM (low-speed plateau)
FOMS_INTERCEPT_DB = 302.74             # FoM_S = 302.74 - 6.4608 ln(fs) above the corner (about 150 MHz)
FOMS_SLOPE_DB_PER_LN_HZ = 6.4608

# --- technology frontier: our fit to Murmann's survey rev. 2025-06-09 (module docstring;
# docs/references.md#murmann-survey); energies per conversion step at 32 nm
WALDEN_REF_NODE_NM = 32.0
WALDEN_FOM_1GHZ_J = 6.89e-15           # the front's least-squares line at 1 GHz (14 designs, 0.13-105 GS/s)
WALDEN_EXPONENT = 0.646                # FoM_W grows as fs**0.646 above the corner (about 15 MHz)
WALDEN_FOM_MIN_J = 0.463e-15           # 5th percentile of the 132 Nyquist designs below 100 MS/s
FLASH_WALDEN_FACTOR = 3.30             # flash front over the line, geometric mean of 5 designs at 1.25-20 GS/s

# --- area: CiMLoop's regression over the survey (ln um^2; its 10 % quantile: optimistic)
AREA_LN_UM2 = {"intercept": 4.8506, "ln_fs": 0.066659, "ln_node": 0.79732, "bits": -0.13437, "ln_energy_pj": 0.42366}

# The survey designs behind the fit, as (Nyquist rate Hz, node nm, ENOB, energy per conversion J, year), from
# ADCsurvey_rev20250609.xlsx (columns fsnyq, TECHNOLOGY, SNDR_plot, P/fsnyq): drawn beside the frontier lines
# and checked against the fitted constants in tests/test_adc_survey.py.
WALDEN_FRONT = (
    (1.30e8, 28, 11.75, 6.308e-12, 2022), (1.50e8, 90, 6.35, 0.890e-12, 2008), (2.00e8, 28, 10.79, 6.500e-12, 2022),
    (3.30e8, 65, 10.26, 18.88e-12, 2017), (1.60e9, 65, 10.50, 23.56e-12, 2016), (2.70e9, 28, 7.33, 1.111e-12, 2023),
    (5.00e9, 65, 4.82, 1.100e-12, 2015), (1.00e10, 65, 6.37, 5.080e-12, 2020), (2.00e10, 65, 6.15, 6.465e-12, 2021),
    (2.50e10, 65, 4.64, 3.520e-12, 2015), (4.00e10, 22, 5.07, 1.653e-12, 2024), (7.20e10, 16, 6.67, 5.462e-12, 2025),
    (9.00e10, 32, 5.19, 7.411e-12, 2014), (1.05e11, 16, 6.22, 6.648e-12, 2024),
)
FLASH_FRONT = (
    (1.25e9, 90, 3.66, 2.016e-12, 2006), (1.75e9, 90, 4.69, 4.343e-12, 2008), (2.00e9, 65, 6.47, 10.50e-12, 2017),
    (5.00e9, 32, 4.84, 1.700e-12, 2013), (2.00e10, 32, 4.81, 3.475e-12, 2014),
)
# ISAAC's converter (Kull et al., ISSCC 2013; docs/references.md#isaac): 8 bits nominal, 39.3 dB SNDR, 3.1 mW at
# 1.2 GS/s in 32 nm SOI; ISAAC's Table 6 quotes it as 2 mW at 1.28 GS/s (1.5625 pJ per conversion).
KULL_2013 = (1.2e9, 32, (39.3 - 1.76) / 6.02, 3.1e-3 / 1.2e9, 2013)

ARCHITECTURES = ("sar", "flash")


def sndr_db(enob: float) -> float:
    """Ideal SNDR (dB) of an ENOB-bit quantizer: 6.02 * ENOB + 1.76."""
    return 6.02 * enob + 1.76


def schreier_fom_db(sample_rate_hz: float) -> float:
    """The survey's thermal frontier: Schreier FoM (dB) of the best converter at a sample rate."""
    return min(FOMS_MAX_DB, FOMS_INTERCEPT_DB - FOMS_SLOPE_DB_PER_LN_HZ * math.log(sample_rate_hz))


def schreier_energy_j(enob: float, sample_rate_hz: float) -> float:
    """Thermal bound on the energy per conversion (J): ``10**((SNDR - FoM_S) / 10) / 2``; 4x per bit."""
    return 10 ** ((sndr_db(enob) - schreier_fom_db(sample_rate_hz)) / 10) / 2


def walden_fom_j(sample_rate_hz: float, node_nm: float = WALDEN_REF_NODE_NM) -> float:
    """The survey's technology frontier: Walden FoM (J per conversion step) at a sample rate and node."""
    at_ref = max(WALDEN_FOM_MIN_J, WALDEN_FOM_1GHZ_J * (sample_rate_hz / 1e9) ** WALDEN_EXPONENT)
    return at_ref * energy_scale(WALDEN_REF_NODE_NM, node_nm)


def walden_energy_j(enob: float, sample_rate_hz: float, node_nm: float = WALDEN_REF_NODE_NM,
                    architecture: str = "sar") -> float:
    """Technology floor on the energy per conversion (J): ``FoM_W * 2**ENOB`` (x ``FLASH_WALDEN_FACTOR`` for flash)."""
    factor = FLASH_WALDEN_FACTOR if _arch(architecture) == "flash" else 1.0
    return factor * walden_fom_j(sample_rate_hz, node_nm) * 2.0 ** enob


def envelope_energy_j(enob: float, sample_rate_hz: float, node_nm: float = WALDEN_REF_NODE_NM,
                      architecture: str = "sar") -> float:
    """Energy per conversion (J) of the survey's best converter: ``max(E_S, E_W)``."""
    return max(schreier_energy_j(enob, sample_rate_hz), walden_energy_j(enob, sample_rate_hz, node_nm, architecture))


def knee_enob(sample_rate_hz: float, node_nm: float = WALDEN_REF_NODE_NM, architecture: str = "sar") -> float:
    """The resolution where the two bounds meet, ``(10**0.602 / 2)**ENOB = E_W(0) / E_S(0)`` (the thermal bound
    grows 6.02 dB per bit, the floor 2x); the Walden floor rules below it."""
    ratio = walden_energy_j(0.0, sample_rate_hz, node_nm, architecture) / schreier_energy_j(0.0, sample_rate_hz)
    return math.log(ratio) / math.log(10 ** 0.602 / 2)


def survey_area_m2(bits: float, sample_rate_hz: float, node_nm: float, energy_j: float) -> float:
    """CiMLoop's survey regression of converter area (m^2) at a resolution, rate, node and energy per conversion."""
    c = AREA_LN_UM2
    ln_um2 = (c["intercept"] + c["ln_fs"] * math.log(sample_rate_hz) + c["ln_node"] * math.log(node_nm)
              + c["bits"] * bits + c["ln_energy_pj"] * math.log(energy_j * 1e12))
    return math.exp(ln_um2) * 1e-12


def _arch(architecture: str) -> str:
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"ADC architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")
    return architecture
