import math

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import mgdsl
from mgdsl.cli import main
from mgdsl.solve import solve

# DESIGN.md section 5: asymptotic residual reduction per cycle
FACTORS = [("specs/multigrid/poisson-v11.mg", {}, 0.34), ("specs/multigrid/poisson-v22.mg", {}, 0.123),
           ("specs/multigrid/poisson-backslash.mg", {"nu": 1}, 0.57),
           ("specs/multigrid/poisson-backslash.mg", {"nu": 2}, 0.34)]


def asymptotic(res):
    """Geometric mean of the last 4 reductions before round-off (residual above 1e-11 relative).

    The factors creep up towards the cycle's spectral radius (n = 33, computed densely: V(1,1) 0.356,
    V(2,2) 0.128, backslash nu=1 0.597, nu=2 0.356); DESIGN's 0.57 for backslash nu=1 is 0.018 below what
    this measures, so that one row is held to +-0.03 (reported in the issue note)."""
    f = [res[k] / res[k - 1] for k in range(1, len(res)) if res[k] > 1e-11 * res[0]][-4:]
    return math.exp(sum(map(math.log, f)) / len(f))


@pytest.mark.parametrize("n", [33, 65])
@pytest.mark.parametrize("path,params,factor", FACTORS)
def test_convergence_factors_match_design(path, params, factor, n):
    ir = mgdsl.compile_ir(path, n=n, **params)
    out = solve(ir, n, tol=1e-300, max_cycles=40)
    tol = 0.03 if factor == 0.57 else 0.01
    assert asymptotic(out["residuals"]) == pytest.approx(factor, abs=tol)


@pytest.mark.parametrize("n,lo,hi", [(65, 0.09, 0.2), (129, 0.09, 0.2)])
def test_v11_with_red_black_gauss_seidel_reaches_the_textbook_factor(n, lo, hi):
    """V(1,1) with red-black Gauss-Seidel on the 5-point Laplacian: about 0.1 per cycle (measured 0.100 at
    n = 65, 0.108 at n = 129), three times faster than damped Jacobi's 0.35."""
    out = solve(mgdsl.compile_ir("specs/multigrid/poisson-v11-rbgs.mg", n=n), n, tol=1e-300, max_cycles=14)
    assert lo <= asymptotic(out["residuals"]) <= hi


def test_w_cycle_converges_at_least_as_fast_as_v():
    v = solve(mgdsl.compile_ir("specs/multigrid/poisson-v11.mg", n=33), 33, tol=1e-300, max_cycles=40)
    w = solve(mgdsl.compile_ir("specs/multigrid/poisson-w11.mg", n=33), 33, tol=1e-300, max_cycles=40)
    assert asymptotic(w["residuals"]) <= asymptotic(v["residuals"]) + 1e-3


@pytest.mark.parametrize("n", [33, 65])
def test_solution_equals_scipy_direct_solve(n):
    out = solve(mgdsl.compile_ir("specs/multigrid/poisson-v22.mg", n=n), n, tol=1e-13, max_cycles=60)
    assert out["converged"]
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n))
    A = (sp.kron(sp.eye(n), T) + sp.kron(T, sp.eye(n))).tocsc()
    from mgdsl.solve import rhs
    import torch
    f = rhs("random", n, torch, torch.float64, "cpu").numpy().ravel()
    ref = spla.spsolve(A, f)
    u = out["u"].numpy().ravel()
    assert np.linalg.norm(u - ref) / np.linalg.norm(ref) < 1e-8


def test_solve_cli_json(capsys):
    import json
    assert main(["solve", "specs/multigrid/poisson-v11.mg", "--n", "33", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"n", "cycles", "residuals", "convergence_factor", "setup_seconds", "solve_seconds", "converged"} <= set(out)
    assert out["converged"] and out["n"] == 33


def test_reported_factor_is_the_asymptotic_one_not_the_first_cycles(capsys):
    """V(1,1) from a random f: the first cycles reduce the residual by 0.14-0.3, the last by 0.346; the factor
    `solve` reports (JSON and the summary line) is the late one, the ratio of the last residuals."""
    import json
    assert main(["solve", "specs/multigrid/poisson-v11.mg", "--n", "33", "--tol", "1e-10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    res = out["residuals"]
    first, last = res[3] / res[2], res[-1] / res[-2]
    assert last - first > 0.05  # early and late factors differ here, so the test can tell them apart
    assert out["convergence_factor"] == pytest.approx(last, abs=0.005)
    assert main(["solve", "specs/multigrid/poisson-v11.mg", "--n", "33", "--tol", "1e-10"]) == 0
    said = float(capsys.readouterr().err.split("asymptotic factor ")[1].split(",")[0])
    assert said == pytest.approx(last, abs=0.005)


def test_solve_finds_the_operator_by_its_role_not_its_name(tmp_path, capsys):
    """Rename A in the V(2,2) spec: the operator of the residual f - A(u) is still found, and the solve is the
    same as with A (the same factor, the same residuals)."""
    import re
    import json
    text = open("specs/multigrid/poisson-v22.mg").read()
    renamed, k = re.subn(r"\bA\b", "Lap", text)
    assert k >= 5 and "A[" not in renamed
    spec = tmp_path / "renamed.mg"
    spec.write_text(renamed)
    assert main(["solve", str(spec), "--n", "33", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ref = solve(mgdsl.compile_ir("specs/multigrid/poisson-v22.mg", n=33), 33)
    assert out["operator"] == "Lap[1]" and ref["operator"] == "A[1]"
    assert out["residuals"] == pytest.approx(ref["residuals"], rel=1e-12)


def test_solve_without_a_fine_grid_residual_says_so(tmp_path, capsys):
    spec = tmp_path / "nores.mg"
    text = open("specs/multigrid/poisson-v11.mg").read().replace("step    u = u + S(f - A(u))", "step    u = u + S(f)")
    spec.write_text(text.replace("refine  u = u + P[l](u[l+1])", "refine  u = u + P[l](u[l+1])\n  poststep u = u + S(f)")
                    .replace("f[l+1] = R(f - A(u))", "f[l+1] = R(f)"))
    assert main(["solve", str(spec), "--n", "17"]) == 2
    err = capsys.readouterr().err
    assert "it has no fine-grid residual f - A(u)" in err and "Traceback" not in err


def test_a_re_discretised_v_cycle_diverges_and_solve_says_why(tmp_path, capsys):
    """laplace has no grid spacing, and on this grid hierarchy (grid l+1 keeps the points 0, 2, ..., n-1) the
    coarse problems of a re-discretised laplace live on larger domains: the V(1,1) cycle diverges (3.3 per cycle
    at n = 33), and solve points to the Galerkin line, which converges at 0.35 with everything else the same."""
    text = open("specs/multigrid/poisson-v11.mg").read()
    galerkin = "  A[l] = R[l-1] . A[l-1] . P[l-1]\n"
    assert galerkin in text
    spec = tmp_path / "redisc.mg"
    spec.write_text(text.replace(galerkin, "  A[l] = laplace(u -> f)\n"))
    assert main(["solve", str(spec), "--n", "33", "--max-cycles", "10"]) == 1
    err = capsys.readouterr().err
    assert float(err.split("asymptotic factor ")[1].split(",")[0]) > 1
    assert "hint: A[2], A[3], A[4] ... re-discretise laplace" in err and "A[l] = R[l-1] . A[l-1] . P[l-1]" in err
    assert main(["solve", "specs/multigrid/poisson-v11.mg", "--n", "33", "--max-cycles", "10"]) == 1
    assert "hint:" not in capsys.readouterr().err  # not converged in 10 cycles, but no re-discretised laplace


@pytest.mark.parametrize("n", ["64", "2", "1"])
def test_solve_rejects_bad_n(capsys, n):
    assert main(["solve", "specs/multigrid/poisson-v11.mg", "--n", n]) == 2
    assert "2^k + 1" in capsys.readouterr().err


def test_the_cycle_lines_and_the_summary_report_the_run_that_was_done(capsys):
    """Each line's factor is its own residual over the previous one; the run stops at the first cycle whose
    residual is below --tol times the first (a relative tolerance) and the summary counts those cycles."""
    import json
    import re
    assert main(["solve", "specs/multigrid/poisson-v11.mg", "--n", "17", "--tol", "1e-6"]) == 0
    cap = capsys.readouterr()
    lines = [re.match(r"cycle +(\d+) +residual (\S+)(?: +factor (\S+))?$", ln) for ln in cap.out.splitlines()]
    assert all(lines) and [int(m[1]) for m in lines] == list(range(len(lines)))
    res = [float(m[2]) for m in lines]
    for k in range(1, len(res)):
        assert float(lines[k][3]) == pytest.approx(res[k] / res[k - 1], abs=2e-3), k
    assert res[-1] <= 1e-6 * res[0] < res[-2] and res[0] > 1  # a random f on 17 x 17: |f| is about 17
    assert f", {len(res) - 1} cycles," in cap.err and cap.err.rstrip().endswith(", converged")
    assert main(["solve", "specs/multigrid/poisson-v11.mg", "--n", "17", "--tol", "1e-6", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cycles"] == len(out["residuals"]) - 1 == len(res) - 1 and out["converged"]


@pytest.mark.parametrize("flag,words", [(["--tol", "0"], "--tol 0.0: the relative residual"),
                                        (["--tol", "-1"], "between 0 and 1"), (["--tol", "2"], "between 0 and 1"),
                                        (["--max-cycles", "0"], "--max-cycles 0: must be at least 1")])
def test_solve_rejects_a_tolerance_or_cycle_count_it_cannot_use(capsys, flag, words):
    # --tol -1 used to run 100 cycles into the round-off floor and report a meaningless factor
    assert main(["solve", "specs/multigrid/poisson-v11.mg", "--n", "33", *flag]) == 2
    assert words in capsys.readouterr().err


@pytest.mark.parametrize("n", [33, 65])
def test_theorem_6_1_mgnet_with_random_pi_gives_mg0_iterates(n):
    from mgdsl.equiv import check_equiv
    # the file is read with its own n = 33; at another n only the family compares like with like
    target = "specs/multigrid/mg0.mg" if n == 33 else "mg0"
    out = check_equiv(mgdsl.compile_ir("specs/multigrid/mgnet-linear.mg", n=n), target, trials=2)
    assert out["verdict"] == "equivalent" and out["max_error"] <= 1e-12


def test_linear_kr_option_and_plot(tmp_path):
    out = solve(mgdsl.compile_ir("specs/multigrid/poisson-v11.mg", n=33, kr="linear"), 33, tol=1e-10)
    assert out["converged"] and out["convergence_factor"] < 0.5
    assert main(["solve", "specs/multigrid/poisson-v11.mg", "--n", "33", "--plot", str(tmp_path / "r.png")]) == 0
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_galerkin_coarse_operator_is_exact_at_the_boundary():
    """A[2] (assembled once) equals the sparse product R A P of scipy, boundary rows included."""
    import torch
    from mgdsl.lowering import default_dtype, probe_matrix
    n = 17
    ir = mgdsl.compile_ir("specs/multigrid/poisson-v22.mg", n=n)
    with default_dtype(torch.float64):
        m = mgdsl.lower(ir)
        P = probe_matrix(m.instance("P[1]"), 1, (9, 9)).numpy()          # fine x coarse
        R = probe_matrix(m.instance("R[1]"), 1, (n, n)).numpy()          # coarse x fine
        A2 = probe_matrix(m.instance("A[2]"), 1, (9, 9)).numpy()
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n))
    A1 = (sp.kron(sp.eye(n), T) + sp.kron(T, sp.eye(n))).toarray()
    np.testing.assert_allclose(R, P.T, atol=1e-14)                       # R = P^T
    np.testing.assert_allclose(A2, R @ A1 @ P, atol=1e-12)                # (5.11), every row
    interior = A2[4 * 9 + 4].reshape(9, 9)[3:6, 3:6]
    boundary = A2[0].reshape(9, 9)[:2, :2]
    assert interior[1, 1] == pytest.approx(3.0) and boundary[0, 0] != pytest.approx(3.0)


def test_solve_refuses_a_scheme_that_is_not_linear(tmp_path, capsys):
    # a ReLU on the output: not a linear solver; it used to run 100 cycles and exit 1
    spec = tmp_path / "relu.mg"
    text = open("specs/multigrid/poisson-v11.mg").read()
    out_line = next(l for l in text.splitlines() if l.strip().startswith("output"))
    spec.write_text(text.replace(out_line, "  output  relu(u)"))
    assert main(["solve", str(spec), "--n", "17"]) == 2
    assert "the scheme applies relu, which is not linear" in capsys.readouterr().err


def test_a_plot_that_cannot_be_written_is_refused_before_solving(tmp_path, capsys):
    """A missing folder or an unknown suffix is exit 2 and one line naming the file, not an internal error (70)."""
    spec = "specs/multigrid/poisson-v11.mg"
    assert main(["solve", spec, "--n", "17", "--plot", str(tmp_path / "no" / "r.png")]) == 2
    assert main(["solve", spec, "--n", "17", "--plot", str(tmp_path / "r.txt")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "cannot write '.txt' files" in err and "internal error" not in err
    assert "cycle" not in capsys.readouterr().out and not list(tmp_path.iterdir())


def test_d_n_is_refused_not_silently_replaced_by_the_default_n(capsys):
    """`-D n=17` used to be dropped for --n's default 65 (and `-D n=abc` passed): it now says to use --n."""
    assert main(["solve", "specs/multigrid/poisson-v11.mg", "-D", "n=17"]) == 2
    err = capsys.readouterr().err
    assert "-D n=17: solve sets the points per side with --n" in err and "--n 17" in err


def test_a_diverging_cycle_stops_early_and_says_diverged(capsys):
    """omega = 3 makes Jacobi amplify: the solve stopped only after 100 cycles at an infinite residual."""
    import json
    assert main(["solve", "multigrid/poisson-v11", "-D", "omega=3", "--n", "33", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)  # strict JSON: no Infinity
    assert out["diverged"] and not out["converged"] and out["cycles"] < 100
    assert out["residuals"][-1] > 1e8 * out["residuals"][0] and out["convergence_factor"] > 1
    assert main(["solve", "multigrid/poisson-v11", "-D", "omega=3", "--n", "33"]) == 1
    assert "diverged" in capsys.readouterr().err
