"""``cimsim linalg bench``: numbers out, one-line errors for bad matrices."""

import json

import numpy as np
import pytest

from _cli_helpers import assert_one_line_user_error, run_cli


def test_bench_json_reports_accuracy_and_cost(capsys):
    code, out, _ = run_cli(capsys, "linalg", "bench", "--size", 8, "--cond", "2,100", "--trials", 2, "--json")
    assert code == 0
    res = json.loads(out)["results"]
    assert [r["cond"] for r in res] == [2.0, 100.0]
    for r in res:
        assert r["refine_converged"] and r["refine_rel_error_max"] <= 2.0 ** -16
        assert r["circuit_energy_j"] > 0 and r["refine_energy_j"] > r["refine_energy_per_iteration_j"] > 0
        # the GCR step's digital unit: a small share of each step's energy
        assert 0 < r["refine_digital_energy_per_iteration_j"] < 0.02 * r["refine_energy_per_iteration_j"]
    # the one-step error and the refinement steps grow with the condition number
    assert res[1]["circuit_rel_error_median"] > res[0]["circuit_rel_error_median"]
    assert res[1]["refine_iterations_max"] > res[0]["refine_iterations_max"]
    # the circuit's own error (against the programmed matrix) is below the error against the float matrix, and the
    # report carries the first-order prediction of both (tests/test_linalg_theory.py checks it over 20 systems)
    for r in res:
        assert r["circuit_own_rel_error_median"] < r["circuit_rel_error_median"]
        assert r["theory_rel_error_rms"] > r["theory_own_rel_error_rms"] > 0


def test_bench_method_richardson_is_repasts_loop_and_gcr_the_default(capsys):
    # 64x64, kappa 100, seeds 10..11: seed 10 is the system RePAST's loop cannot refine (spectral radius 1.02)
    runs = {}
    for method in ("gcr", "richardson"):
        code, out, _ = run_cli(capsys, "linalg", "bench", "--size", 64, "--cond", 100, "--trials", 2, "--seed", 10,
                               "--method", method, "--json")
        assert code == 0
        runs[method] = json.loads(out)["results"][0]
    assert runs["gcr"]["method"] == "gcr" and runs["gcr"]["window"] == 4
    assert runs["gcr"]["refine_converged"] and runs["gcr"]["refine_rel_error_max"] <= 2.0 ** -16
    assert not runs["richardson"]["refine_converged"]


def test_bench_table_and_inv(capsys):
    code, out, _ = run_cli(capsys, "linalg", "bench", "--op", "inv", "--size", 4, "--cond", 5, "--trials", 1)
    assert code == 0 and "inv on the 8-bit inversion circuit" in out and "own" in out


@pytest.mark.parametrize("matrix, needle", [
    (np.ones((3, 3)), "singular"),
    (np.ones((3, 4)), "square"),
    (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
    (np.array([[0.0, 1.0], [1.0, 0.0]]), "cannot settle"),
    (np.eye(129), "larger than the 128 x 128"),
    (np.ones(3), "square"),
])
def test_bad_matrices_one_line_exit_2(capsys, tmp_path, matrix, needle):
    p = tmp_path / "m.npy"
    np.save(p, matrix)
    code, _, err = run_cli(capsys, "linalg", "bench", "--matrix", p)
    assert_one_line_user_error(code, err, needle)


@pytest.mark.parametrize("argv, needle", [
    (["--size", 200], "larger than the 128 x 128"),
    (["--cond", "0.5"], "condition numbers"),
    (["--matrix", "/nonexistent/m.npy"], "no such file"),
    (["--bits", 40], "--bits"),
    (["--window", -1], "--window"),
    (["--method", "newton"], "--method"),
])
def test_bad_options_one_line_exit_2(capsys, argv, needle):
    code, _, err = run_cli(capsys, "linalg", "bench", *argv)
    assert_one_line_user_error(code, err, needle)


@pytest.mark.parametrize("name, text, row", [
    ("ragged.csv", "1,2,3\n4,5\n6,7,8\n", "line 2 has 2 numbers where line 1 has 3"),
    ("ragged.txt", "# a comment\n1 2\n\n3 4\n5 6 7\n", "line 5 has 3 numbers where line 2 has 2"),
])
def test_ragged_text_matrix_names_the_file_and_the_row(capsys, tmp_path, name, text, row):
    p = tmp_path / name
    p.write_text(text)
    code, _, err = run_cli(capsys, "linalg", "bench", "--matrix", p)
    assert_one_line_user_error(code, err, row)
    assert str(p) in err and "the same count of numbers on every row" in err and "usecols" not in err


def test_normal_equations_option(capsys, tmp_path):
    p = tmp_path / "m.csv"
    np.savetxt(p, np.array([[0.0, 1.0], [1.0, 0.0]]), delimiter=",")
    code, out, _ = run_cli(capsys, "linalg", "bench", "--matrix", p, "--normal", "--json")
    assert code == 0 and json.loads(out)["results"][0]["circuit_rel_error_median"] < 2.0 ** -5


def test_train_crossbar_kfac_reports_cost_beside_the_paper(capsys, tmp_path):
    out = tmp_path / "m.pt"
    code, text, _ = run_cli(capsys, "train", "--model", "mlp", "--dataset", "digits", "--optimizer", "crossbar-kfac",
                            "--epochs", 1, "--limit", 200, "--out", out)
    assert code == 0, text
    assert "115.8x / 41.9x" in text and "speed-up" in text and out.exists()


def test_train_kfac_on_cuda_is_one_line(capsys):
    code, _, err = run_cli(capsys, "train", "--model", "mlp", "--dataset", "digits", "--optimizer", "kfac",
                           "--device", "cuda", "--epochs", 1)
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_kfac_cost_json_and_table(capsys):
    code, out, _ = run_cli(capsys, "linalg", "kfac-cost", "--network", "resnet18", "--replicas", 4, "--json")
    assert code == 0
    r = json.loads(out)
    assert r["arch"]["replicas"] == 4 and r["batch"] == 128 and r["layers"] == 21
    assert r["paper"]["gpu_speedup"] == 115.8
    assert r["speedup_vs_gpu_full"] > r["speedup_vs_gpu"] > 0
    assert r["crossbar_time_s"] == pytest.approx(sum(r["crossbar_parts_s"].values()))
    code, out, _ = run_cli(capsys, "linalg", "kfac-cost", "--network", "mlp", "--no-pipeline")
    assert code == 0 and "not pipelined" in out and "115.8x / 41.9x" in out and "whole factors" in out


def test_kfac_cost_bad_options_one_line(capsys):
    code, _, err = run_cli(capsys, "linalg", "kfac-cost", "--replicas", 0)
    assert_one_line_user_error(code, err, "--replicas")
    code, _, err = run_cli(capsys, "linalg", "kfac-cost", "--kappa", "1,2")
    assert_one_line_user_error(code, err, "--kappa")
