"""The ADC energy model is the envelope of Murmann's survey: the Walden floor (2x per bit) below the knee, the
Schreier bound (4x per bit) above it, at the converter's sample rate and node; flash above SAR; ISAAC's converter
within 2x; the fitted constants reproduce from the survey designs they were fitted to."""

import json
import math

import numpy as np
import pytest

from _cli_helpers import assert_one_line_user_error, run_cli
from cimsim.devices import adc_survey as s
from cimsim.devices.converters import FlashADC, SarADC
from cimsim.devices.technology import energy_scale

ISAAC_ADC_ENERGY_J = 16e-3 / 8 / 1.28e9   # ISAAC Table 6: 16 mW for 8 ADCs at 1.28 GS/s each = 1.5625 pJ
FOUR_PER_BIT = 10 ** 0.602                # 6.02 dB per bit of SNDR


def _fomw_32nm(design):
    fs, node, enob, energy, _ = design
    return energy / 2 ** enob * energy_scale(node, 32)


def test_walden_constants_reproduce_from_the_survey_front():
    """Least squares of ln FoM_W (32 nm) on ln(fs / 1 GHz) over the 14 front designs gives the shipped line."""
    x = np.log([d[0] / 1e9 for d in s.WALDEN_FRONT])
    y = np.log([_fomw_32nm(d) for d in s.WALDEN_FRONT])
    slope, intercept = np.polyfit(x, y, 1)
    assert slope == pytest.approx(s.WALDEN_EXPONENT, abs=5e-4)
    assert math.exp(intercept) == pytest.approx(s.WALDEN_FOM_1GHZ_J, rel=2e-3)
    # every front design within a factor 1.8 of the line (a regression through the front, as CiMLoop's Schreier fit)
    ratios = [_fomw_32nm(d) / s.walden_fom_j(d[0]) for d in s.WALDEN_FRONT]
    assert 1 / 1.8 < min(ratios) and max(ratios) < 1.8
    flash = [_fomw_32nm(d) / s.walden_fom_j(d[0]) for d in s.FLASH_FRONT]
    assert math.exp(np.mean(np.log(flash))) == pytest.approx(s.FLASH_WALDEN_FACTOR, rel=2e-3)
    assert all(2.5 < r < 4.1 for r in flash)


def test_hand_evaluation_at_the_issue_point():
    """4 bits at 1.28 GS/s and 32 nm: 16 conversion steps at the Walden frontier, ~129 fJ (the thermal bound alone
    is 3.6 fJ; the previous model floored it at 4 comparator decisions, 7.3 fJ)."""
    fomw = 6.89e-15 * 1.28 ** 0.646
    e = SarADC(bits=4, sample_rate_hz=1.28e9, node_nm=32).energy_j
    assert e == pytest.approx(16 * fomw, rel=1e-12)
    assert e == pytest.approx(129.3e-15, rel=1e-3)
    thermal_only = 10 ** ((6.02 * 4 + 1.76 - (302.74 - 6.4608 * math.log(1.28e9))) / 10) / 2
    assert thermal_only == pytest.approx(3.61e-15, rel=0.01)
    assert s.schreier_energy_j(4, 1.28e9) == pytest.approx(thermal_only, rel=1e-4)
    assert e / thermal_only > 35


@pytest.mark.parametrize("fs,node", [(1.28e9, 32), (1e7, 32), (1.28e9, 65), (1e8, 22)])
def test_factor_per_bit_on_both_sides_of_the_knee(fs, node):
    knee = s.knee_enob(fs, node)
    e = {b: SarADC(bits=b, sample_rate_hz=fs, node_nm=node).energy_j for b in range(1, 17)}
    below = [b for b in range(1, 16) if b + 1 <= knee]
    above = [b for b in range(1, 16) if b >= knee]
    assert len(below) >= 7 and len(above) >= 5
    for b in below:
        assert e[b + 1] / e[b] == pytest.approx(2.0, rel=1e-12), b        # technology floor: 2x per bit
    for b in above:
        assert e[b + 1] / e[b] == pytest.approx(FOUR_PER_BIT, rel=1e-12), b   # thermal bound: 4x per bit


def test_knee_location():
    # at ISAAC's point the floor rules up to ~9.2 bits; at the low-speed plateau up to ~9.3 (papers: 8-10 bits)
    assert s.knee_enob(1.28e9, 32) == pytest.approx(9.16, abs=0.01)
    assert s.knee_enob(1e7, 32) == pytest.approx(9.32, abs=0.01)
    assert s.knee_enob(1e5, 32) == s.knee_enob(1e7, 32)            # both frontiers flat at low speed
    assert s.knee_enob(1e10, 32) < s.knee_enob(1.28e9, 32)        # the thermal frontier falls faster with speed
    assert s.knee_enob(1.28e9, 65) > s.knee_enob(1.28e9, 32) > s.knee_enob(1.28e9, 22)   # scaling lowers the floor
    for fs in (1e7, 1.28e9, 1e10):                                 # the bounds meet at the knee
        k = s.knee_enob(fs, 32)
        assert s.walden_energy_j(k, fs, 32) == pytest.approx(s.schreier_energy_j(k, fs), rel=1e-9)


def test_flash_versus_sar():
    for fs in (1e7, 1.28e9, 1e10):
        for b in range(1, 11):
            sar = SarADC(bits=b, sample_rate_hz=fs).energy_j
            flash = FlashADC(bits=b, sample_rate_hz=fs).energy_j
            assert flash >= sar
            if b <= s.knee_enob(fs, 32):                            # both on their floors: the flash designs' 3.3x
                assert flash / sar == pytest.approx(s.FLASH_WALDEN_FACTOR, rel=1e-12)
    # above both knees the thermal bound is common to every architecture
    assert FlashADC(bits=10, sample_rate_hz=1e10).energy_j == SarADC(bits=10, sample_rate_hz=1e10).energy_j
    f = FlashADC(bits=5)
    assert f.comparators == 31 and f.latency_s == pytest.approx(1 / 1.28e9)
    assert f.area_m2 > SarADC(bits=5).area_m2                      # more energy, more area (survey regression)


def test_isaac_point_within_2x_and_the_measured_converter_above_the_envelope():
    e8 = SarADC(bits=8, sample_rate_hz=1.28e9, node_nm=32).energy_j
    assert e8 == pytest.approx(2.069e-12, rel=1e-3)
    assert 0.5 < e8 / ISAAC_ADC_ENERGY_J < 2.0
    # Kull et al. 2013 (ISAAC's converter): 6.24 ENOB for 2.58 pJ; the envelope is the best design, so below it
    fs, node, enob, energy, _ = s.KULL_2013
    assert 1.0 < energy / s.envelope_energy_j(enob, fs, node) < 5.0


def test_monotonic_in_bits_sample_rate_and_node():
    rates = np.logspace(4, 11, 15)
    for cls, top in ((SarADC, 16), (FlashADC, 10)):
        for fs in rates:
            e = [cls(bits=b, sample_rate_hz=fs).energy_j for b in range(1, top + 1)]
            assert all(x < y for x, y in zip(e, e[1:]))
        for b in range(1, top + 1):
            e = [cls(bits=b, sample_rate_hz=fs).energy_j for fs in rates]
            assert all(x <= y for x, y in zip(e, e[1:]))          # flat at low speed, then rising
            assert e[-1] > e[0]
            nodes = [cls(bits=b, node_nm=n).energy_j for n in (7, 16, 22, 32, 45, 65, 90, 180)]
            assert all(x <= y for x, y in zip(nodes, nodes[1:]))
    a = [SarADC(bits=b).area_m2 for b in range(1, 17)]
    assert all(x < y for x, y in zip(a, a[1:]))


def test_area_regression_at_the_isaac_point():
    adc = SarADC(bits=8, sample_rate_hz=1.28e9, node_nm=32)
    ln_um2 = (4.8506 + 0.066659 * math.log(1.28e9) + 0.79732 * math.log(32) - 0.13437 * 8
              + 0.42366 * math.log(adc.energy_j * 1e12))
    assert adc.area_m2 == pytest.approx(math.exp(ln_um2) * 1e-12, rel=1e-12)
    assert adc.area_m2 == pytest.approx(3.8e-9, rel=0.02)          # 3800 um^2; ISAAC's 1200 um^2 is 0.32x


def test_cli_show_gives_the_envelope(capsys):
    code, out, err = run_cli(capsys, "devices", "show", "sar-adc", "--bits", "4", "--sample-rate", "1.28e9",
                             "--node", "32", "--json")
    assert code == 0, err
    assert json.loads(out)["energy_j"] == SarADC(bits=4, sample_rate_hz=1.28e9, node_nm=32).energy_j


def test_cli_plot(capsys, tmp_path):
    out = tmp_path / "adc.png"
    code, stdout, err = run_cli(capsys, "devices", "plot", "sar-adc", "-o", out, "--json")
    assert code == 0, err
    assert json.loads(stdout)["figure"] == str(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


@pytest.mark.parametrize("argv,needles", [
    (["devices", "plot", "reram"], ["draws sar-adc, flash-adc", "'reram'"]),
    (["devices", "plot", "sar-adc", "-o", "/no/such/folder/a.png"], ["/no/such/folder", "does not exist"]),
    (["devices", "plot", "sar-adc", "-o", "adc.txt"], ["unknown image type '.txt'", ".png"]),
    (["devices", "plot", "sar-adc", "-o", "/dev/full"], ["/dev/full is a character device"]),
    (["devices", "plot", "sar-adc", "--bits", "4"], ["drop --bits"]),
    (["devices", "show", "sar-adc", "-o", "a.png"], ["applies to 'cimsim devices plot"]),
])
def test_cli_plot_user_errors(capsys, argv, needles):
    code, out, err = run_cli(capsys, *argv)
    assert_one_line_user_error(code, err, *needles)


@pytest.mark.parametrize("name", ["dir.png", "outdir"])
def test_cli_plot_refuses_a_folder_and_names_a_file_for_it(capsys, tmp_path, name):
    """A folder as -o, even one named like an image, is answered with a file name in it: no traceback."""
    folder = tmp_path / name
    folder.mkdir()
    code, out, err = run_cli(capsys, "devices", "plot", "flash-adc", "-o", folder)
    assert_one_line_user_error(code, err, f"-o {folder} is a folder; give a file name such as {folder / 'flash-adc.png'}")
    assert list(folder.iterdir()) == []


def _xlsx(path, sheets):
    """A minimal .xlsx (shared-string headers, numeric cells) with the survey's column names."""
    import zipfile

    strings, idx = [], {}

    def sid(text):
        if text not in idx:
            idx[text] = len(strings)
            strings.append(text)
        return idx[text]

    def cell(ref, v):
        if isinstance(v, str):
            return f'<c r="{ref}" t="s"><v>{sid(v)}</v></c>'
        return f'<c r="{ref}"><v>{v!r}</v></c>'

    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rns = 'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
    cols = "ABCDEFGH"
    with zipfile.ZipFile(path, "w") as z:
        entries, rels = [], []
        for i, (name, rows) in enumerate(sheets.items(), 1):
            xml = "".join(f'<row r="{r + 1}">' + "".join(cell(f"{cols[j]}{r + 1}", v) for j, v in enumerate(row))
                          + "</row>" for r, row in enumerate(rows))
            z.writestr(f"xl/worksheets/sheet{i}.xml", f"<worksheet {ns}><sheetData>{xml}</sheetData></worksheet>")
            entries.append(f'<sheet name="{name}" sheetId="{i}" r:id="rId{i}"/>')
            rels.append(f'<Relationship Id="rId{i}" Type="worksheet" Target="worksheets/sheet{i}.xml"/>')
        z.writestr("xl/workbook.xml", f"<workbook {ns} {rns}><sheets>{''.join(entries)}</sheets></workbook>")
        z.writestr("xl/_rels/workbook.xml.rels", '<Relationships xmlns="http://schemas.openxmlformats.org/package/'
                   f'2006/relationships">{"".join(rels)}</Relationships>')
        sis = "".join(f"<si><t>{t}</t></si>" for t in strings)
        z.writestr("xl/sharedStrings.xml", f"<sst {ns}>{sis}</sst>")


def test_the_refit_recovers_a_known_frontier(tmp_path, capsys):
    """A synthetic survey with designs on FoM_W = 5 fJ x (fs / 1 GHz)**0.7 at 32 nm, dominated designs above it,
    flash designs 3x above it, low-speed designs for the plateau, and designs the filters must drop."""
    from cimsim.devices import adc_survey_fit as fit

    head = ["YEAR", "TYPE", "ARCHITECTURE", "TECHNOLOGY", "SNDR_plot [dB]", "fsnyq [Hz]", "P/fsnyq [pJ]"]
    line = lambda fs: 5e-15 * (fs / 1e9) ** 0.7   # noqa: E731
    sndr8 = 6.02 * 8 + 1.76                         # ENOB 8: energy = FoM_W x 256
    row = lambda fs, fomw, arch="SAR", kind="NQ", node_um=0.032: [2020.0, kind, arch, node_um, sndr8, fs,  # noqa: E731
                                                                  fomw * 256 * 1e12]
    rates = (1e8, 3e8, 1e9, 2e9, 5e9, 1e10, 3e10, 1e11)
    low = [0.2e-15 * (i + 1) for i in range(10)]
    isscc = [["title row"], head] + [row(f, line(f)) for f in rates] + [row(1e9, 3 * line(1e9)),
                                                                         row(2e9, 3 * line(2e9), "Flash"),
                                                                         row(5e9, 3 * line(5e9), "Flash, TI")]
    vlsi = [head] + [row(1e6, v) for v in low] + [row(3e9, 0.1 * line(3e9), kind="OS"),
                                                  row(3e9, 0.1 * line(3e9), node_um=0.35)]
    path = tmp_path / "survey.xlsx"
    _xlsx(path, {"Readme": [["notes"]], "ISSCC": isscc, "VLSI": vlsi})
    ds = fit.designs(fit.read_sheets(path))
    assert len(ds) == len(rates) + 3 + len(low)                  # the OS and the 350 nm designs are dropped
    f = fit.fit(ds)
    assert f["WALDEN_EXPONENT"] == pytest.approx(0.7, rel=1e-9)
    assert f["WALDEN_FOM_1GHZ_J"] == pytest.approx(5e-15, rel=1e-9)
    assert f["WALDEN_FOM_MIN_J"] == pytest.approx(np.percentile(low, 5), rel=1e-9)
    assert f["FLASH_WALDEN_FACTOR"] == pytest.approx(3.0, rel=1e-9)
    assert [d.fs_hz for d in f["front"]] == list(rates)
    assert fit.main([str(path)]) == 0
    assert "WALDEN_EXPONENT = 0.7" in capsys.readouterr().out
    bad = tmp_path / "survey.txt"
    bad.write_text("not a spreadsheet")
    assert fit.main([str(bad)]) == 2
    assert "not a readable .xlsx" in capsys.readouterr().err
