"""Re-fit the technology (Walden) frontier of :mod:`cimsim.devices.adc_survey` from Murmann's survey spreadsheet.

``python -m cimsim.devices.adc_survey_fit ADCsurvey_rev20250609.xlsx`` (github.com/bmurmann/ADC-survey, ``xls/``)
prints the constants shipped in :mod:`cimsim.devices.adc_survey` and the front designs behind them. The method
(docs/references.md#murmann-survey): Nyquist-rate (``TYPE`` NQ) CMOS designs at 7-180 nm from the ISSCC and VLSI
sheets; ``FoM_W = (P / fs_nyq) / 2**ENOB``, ``ENOB = (SNDR_plot - 1.76) / 6.02``, normalized to 32 nm by
:func:`cimsim.devices.technology.energy_scale`; the Pareto front against the Nyquist rate; a least-squares line of
``ln FoM_W`` on ``ln(fs / 1 GHz)`` over the front designs at 100 MS/s and above; the plateau as the 5th
percentile of the designs below 100 MS/s; the flash factor as the geometric mean of the pure-flash front designs'
(1-20 GS/s) distance from the line. The spreadsheet is read with the standard library (no pandas).
"""

from __future__ import annotations

import math
import re
import sys
import zipfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from cimsim.devices.technology import MAX_NODE_NM, MIN_NODE_NM, energy_scale
from cimsim.errors import ConfigError

_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
SHEETS = ("ISSCC", "VLSI")
CORNER_HZ = 1e8          # the line is fitted to the front above this rate, the plateau to the designs below it
FLASH_ARCHITECTURES = ("Flash", "Flash, TI")
FLASH_RATES_HZ = (1e9, 2.1e10)


@dataclass(frozen=True)
class Design:
    fs_hz: float
    node_nm: float
    enob: float
    energy_j: float
    architecture: str
    year: int

    @property
    def fomw_32nm_j(self) -> float:
        return self.energy_j / 2 ** self.enob * energy_scale(self.node_nm, 32)


def read_sheets(path) -> dict[str, list[dict]]:
    """Rows of every worksheet of an .xlsx file as dicts keyed by the header row (the first with 'SNDR')."""
    try:
        z = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise ConfigError(f"{path}: not a readable .xlsx file ({e}); give the survey's xls/ADCsurvey_*.xlsx") from None
    shared = []
    if "xl/sharedStrings.xml" in z.namelist():
        for si in ET.fromstring(z.read("xl/sharedStrings.xml")).iter(f"{_NS}si"):
            shared.append("".join(t.text or "" for t in si.iter(f"{_NS}t")))
    rels = {r.get("Id"): r.get("Target") for r in ET.fromstring(z.read("xl/_rels/workbook.xml.rels"))}
    out = {}
    for sheet in ET.fromstring(z.read("xl/workbook.xml")).iter(f"{_NS}sheet"):
        target = rels[sheet.get(_REL)].lstrip("/")
        target = target if target.startswith("xl/") else "xl/" + target
        if "worksheets/" not in target:
            continue
        rows = []
        for row in ET.fromstring(z.read(target)).iter(f"{_NS}row"):
            cells = {}
            for c in row.iter(f"{_NS}c"):
                v = c.find(f"{_NS}v")
                if v is None:
                    continue
                col = re.match(r"[A-Z]+", c.get("r")).group()
                cells[col] = shared[int(v.text)] if c.get("t") == "s" else v.text
            rows.append(cells)
        head = next((i for i, r in enumerate(rows) if any("SNDR" in str(x) for x in r.values())), None)
        if head is not None:
            names = rows[head]
            out[sheet.get("name")] = [{names[k]: r.get(k) for k in names} for r in rows[head + 1:]]
    return out


def designs(sheets: dict[str, list[dict]]) -> list[Design]:
    """The Nyquist-rate CMOS designs at 7-180 nm with power, rate and SNDR."""
    out = []
    for name in SHEETS:
        if name not in sheets:
            raise ConfigError(f"the spreadsheet has no {name!r} sheet; give the survey's xls/ADCsurvey_*.xlsx")
        for r in sheets[name]:
            try:
                fs, e = float(r["fsnyq [Hz]"]), float(r["P/fsnyq [pJ]"]) * 1e-12
                sndr, node = float(r["SNDR_plot [dB]"]), float(r["TECHNOLOGY"]) * 1e3
                year = int(float(r["YEAR"]))
            except (KeyError, TypeError, ValueError):
                continue
            if r.get("TYPE") == "NQ" and MIN_NODE_NM <= node <= MAX_NODE_NM and fs > 0 and e > 0:
                out.append(Design(fs, node, (sndr - 1.76) / 6.02, e, str(r.get("ARCHITECTURE") or ""), year))
    return out


def pareto_front(ds: list[Design]) -> list[Design]:
    """Designs no other design beats in both Nyquist rate (higher) and 32-nm Walden FoM (lower), by rate."""
    front = [d for d in ds if not any((o.fs_hz >= d.fs_hz and o.fomw_32nm_j < d.fomw_32nm_j)
                                      or (o.fs_hz > d.fs_hz and o.fomw_32nm_j <= d.fomw_32nm_j) for o in ds)]
    return sorted(front, key=lambda d: d.fs_hz)


def fit(ds: list[Design]) -> dict:
    """The Walden frontier's constants (see the module docstring) and the designs behind them."""
    front = [d for d in pareto_front(ds) if d.fs_hz >= CORNER_HZ]
    if len(front) < 3:
        raise ConfigError(f"only {len(front)} front designs at >= {CORNER_HZ:g} S/s; is this the ADC survey?")
    slope, intercept = np.polyfit([math.log(d.fs_hz / 1e9) for d in front],
                                  [math.log(d.fomw_32nm_j) for d in front], 1)
    low = [d.fomw_32nm_j for d in ds if d.fs_hz < CORNER_HZ]
    plateau = float(np.percentile(low, 5))
    line = lambda fs: max(plateau, math.exp(intercept) * (fs / 1e9) ** slope)  # noqa: E731
    flash = pareto_front([d for d in ds if d.architecture in FLASH_ARCHITECTURES
                          and FLASH_RATES_HZ[0] <= d.fs_hz <= FLASH_RATES_HZ[1]])
    factor = math.exp(np.mean([math.log(d.fomw_32nm_j / line(d.fs_hz)) for d in flash])) if flash else math.nan
    return {"WALDEN_FOM_1GHZ_J": math.exp(intercept), "WALDEN_EXPONENT": float(slope), "WALDEN_FOM_MIN_J": plateau,
            "FLASH_WALDEN_FACTOR": factor, "designs": len(ds), "below_corner": len(low), "front": front,
            "flash_front": flash}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m cimsim.devices.adc_survey_fit ADCsurvey_revYYYYMMDD.xlsx", file=sys.stderr)
        return 2
    try:
        f = fit(designs(read_sheets(argv[0])))
    except ConfigError as e:
        print(f"adc_survey_fit: error: {e}", file=sys.stderr)
        return 2
    print(f"{f['designs']} Nyquist CMOS designs at 7-180 nm, {f['below_corner']} below {CORNER_HZ:g} S/s")
    for k in ("WALDEN_FOM_1GHZ_J", "WALDEN_EXPONENT", "WALDEN_FOM_MIN_J", "FLASH_WALDEN_FACTOR"):
        print(f"{k} = {f[k]:.4g}")
    for label, ds in (("front", f["front"]), ("flash front", f["flash_front"])):
        print(f"{label} (fs Hz, node nm, ENOB, J per conversion, year):")
        for d in ds:
            print(f"    ({d.fs_hz:.3g}, {d.node_nm:g}, {d.enob:.2f}, {d.energy_j:.4g}, {d.year}),")
    return 0


if __name__ == "__main__":
    sys.exit(main())
