"""jacobi(A) is omega D^-1 with D the exact diagonal of A, boundary rows included (5.6), and inverse(A) solves
A x = b exactly, for every way A can be built: a stencil, a Galerkin product R A P (5.11), a composition.

The matrices are built here with numpy from the paper's stencils, independently of the lowering."""
import numpy as np
import pytest
import torch

import mgdsl
from mgdsl.lowering import default_dtype  # fixed operators are built in the default dtype

V11 = "specs/multigrid/poisson-v11.mg"


def laplace(n: int) -> np.ndarray:
    """The 5-point K_A of (5.4) on n x n points, zero boundary values: the matrix kron(I, T) + kron(T, I)."""
    T = 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    return np.kron(np.eye(n), T) + np.kron(T, np.eye(n))


def prolong(n: int) -> np.ndarray:
    """Bilinear P (4.7-4.9) from m = (n + 1) / 2 coarse to n fine points per side; R = P^T is K_R of (4.13)."""
    m = (n + 1) // 2
    P1 = np.zeros((n, m))
    for j in range(m):
        P1[2 * j, j] = 1
        if 2 * j - 1 >= 0:
            P1[2 * j - 1, j] = 0.5
        if 2 * j + 1 < n:
            P1[2 * j + 1, j] = 0.5
    return np.kron(P1, P1)


def _apply(module, v: np.ndarray, size: int) -> np.ndarray:
    x = torch.tensor(v, dtype=torch.float64).reshape(1, 1, size, size)
    with torch.no_grad():
        return module(x).reshape(-1).double().numpy()


COMPOSED = """model jac {
  param n = 9
  param omega = 0.5
  input f : 1 x n x n
  grids 1
  smooth 1
  space u = 1, f = 1
  A[1] = laplace(f -> f) . laplace(f -> f) . laplace(u -> f)
  S[l] = jacobi(A[l], f -> u, omega omega)
  init u = 0
  step u = u + S(f - A(u))
  output u
}
"""


def test_jacobi_of_a_composed_operator_uses_its_exact_diagonal(tmp_path):
    """A = K_A^3 reaches 3 points away (wider than the 3x3 stencils that are assembled directly), so its
    diagonal comes from coloured probing; a period-3 colouring would alias points 3 apart."""
    p = tmp_path / "jac.mg"
    p.write_text(COMPOSED)
    n, omega = 9, 0.5
    with default_dtype(torch.float64):
        model = mgdsl.load(str(p))
    A = laplace(n) @ laplace(n) @ laplace(n)
    np.testing.assert_allclose(_apply(model, np.ones(n * n), n), omega / np.diag(A), rtol=1e-12)
    assert sorted(set(np.diag(A))) == [88, 100, 112]  # corner, edge, inside: the boundary rows differ


@pytest.fixture  # built per test: mutmut maps a constructor to the tests that run it
def cycle():
    with default_dtype(torch.float64):
        return mgdsl.load(V11, n=9, omega=0.8)


def test_jacobi_of_the_stencil_is_omega_over_four(cycle):
    np.testing.assert_allclose(_apply(cycle.instance("S[1]"), np.ones(81), 9), 0.8 / 4 * np.ones(81), rtol=1e-12)


def test_jacobi_of_the_galerkin_operator_uses_its_exact_diagonal(cycle):
    P = prolong(9)
    A2 = P.T @ laplace(9) @ P
    assert len(set(np.round(np.diag(A2), 9))) > 1  # the boundary rows differ from the interior
    np.testing.assert_allclose(_apply(cycle.instance("A[2]"), np.eye(25)[7], 5), A2[:, 7], atol=1e-12)
    np.testing.assert_allclose(_apply(cycle.instance("S[2]"), np.ones(25), 5), 0.8 / np.diag(A2), rtol=1e-12)


def test_inverse_on_the_coarsest_grid_solves_exactly(cycle):
    P1, P2 = prolong(9), prolong(5)
    A3 = P2.T @ (P1.T @ laplace(9) @ P1) @ P2
    b = np.random.default_rng(0).standard_normal(9)
    np.testing.assert_allclose(A3 @ _apply(cycle.instance("S[3]"), b, 3), b, atol=1e-12)


def circulant_laplace(n: int) -> np.ndarray:
    """K_A with periodic boundary values: T wraps around."""
    T = 2 * np.eye(n) - np.roll(np.eye(n), 1, axis=1) - np.roll(np.eye(n), -1, axis=1)
    return np.kron(np.eye(n), T) + np.kron(T, np.eye(n))


@pytest.mark.parametrize("pad,matrix", [("zero", laplace), ("periodic", circulant_laplace)])
def test_laplace_stencil_honours_its_padding(tmp_path, pad, matrix):
    p = tmp_path / "pad.mg"
    p.write_text(COMPOSED.replace("A[1] = laplace(f -> f) . laplace(f -> f) . laplace(u -> f)",
                                  f"A[1] = laplace(u -> f, pad {pad})"))
    with default_dtype(torch.float64):
        A = mgdsl.load(str(p)).instance("A[1]")
    n = 9
    cols = np.stack([_apply(A, e, n) for e in np.eye(n * n)], 1)
    np.testing.assert_allclose(cols, matrix(n), atol=1e-12)


def test_fixed_operators_are_not_in_the_state_dict(cycle):
    """A checkpoint holds what training changes; stencils, diagonals and inverses are rebuilt from the spec."""
    assert list(cycle.state_dict()) == []


@pytest.mark.parametrize("width", [17, 18])
def test_prolongation_is_the_transposed_restriction_on_a_rectangular_grid(width):
    """P = R^T (4.7-4.9) lands exactly on the fine grid, also when it is not square (9 x width)."""
    text = open(V11).read().replace("input f : 1 x n x n", f"input f : 1 x n x {width}")
    assert f"x {width}" in text
    with default_dtype(torch.float64):
        model = mgdsl.compile_ir(V11, text, n=9)
        m = mgdsl.lower(model)
    R, P = m.instance("R[1]"), m.instance("P[1]")
    fine = 9 * width
    eye = torch.eye(fine, dtype=torch.float64).reshape(fine, 1, 9, width)
    with torch.no_grad():
        Rm = R(eye).reshape(fine, -1).T                    # coarse x fine
        ch, cw = R(eye[:1]).shape[-2:]
        coarse = torch.eye(ch * cw, dtype=torch.float64).reshape(-1, 1, ch, cw)
        Pm = P(coarse).reshape(ch * cw, -1).T              # fine x coarse
    assert (ch, cw) == (5, (width + 1) // 2)
    torch.testing.assert_close(Pm, Rm.T, atol=1e-15, rtol=0)


def test_galerkin_operator_is_assembled_per_channel(tmp_path):
    """With two channels, A[2] = R A P acts on each channel alone, as on one."""
    text = open(V11).read().replace("space u = 1, f = 1", "space u = 2, f = 2").replace(
        "input f : 1 x n x n", "input f : 2 x n x n")
    assert "space u = 2, f = 2" in text and "input f : 2 x n x n" in text
    with default_dtype(torch.float64):
        m = mgdsl.lower(mgdsl.compile_ir(V11, text, n=9))
    P = prolong(9)
    A2 = P.T @ laplace(9) @ P
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        y = m.instance("A[2]")(x)
    for c in range(2):
        np.testing.assert_allclose(y[0, c].reshape(-1).numpy(), A2 @ x[0, c].reshape(-1).numpy(), atol=1e-12)


def gauss_seidel_red_black(A: np.ndarray, n: int, u: np.ndarray, f: np.ndarray) -> np.ndarray:
    """One red-black Gauss-Seidel sweep for A u = f, point by point: red points (i + j even) first, in place."""
    u = u.copy()
    for colour in (0, 1):
        for p in range(n * n):
            if (p // n + p % n) % 2 == colour:
                u[p] += (f[p] - A[p] @ u) / A[p, p]
    return u


def test_rbgs_is_one_red_black_gauss_seidel_sweep():
    """u + S(f - A u) with S = rbgs(A[1]) is the point-by-point red-black sweep on the 5-point K_A (5.4)."""
    with default_dtype(torch.float64):
        m = mgdsl.load("specs/multigrid/poisson-v11-rbgs.mg", n=9)
    rng = np.random.default_rng(1)
    u, f = rng.standard_normal(81), rng.standard_normal(81)
    A = laplace(9)
    got = u + _apply(m.instance("S[1]"), f - A @ u, 9)
    np.testing.assert_allclose(got, gauss_seidel_red_black(A, 9, u, f), atol=1e-12)
    jacobi = u + 0.25 * (f - A @ u)
    assert np.abs(got - jacobi).max() > 0.1  # black points saw the new red values


def test_rbgs_of_the_galerkin_operator_updates_each_colour_from_its_exact_diagonal():
    """On A[2] = R A P (9-point, boundary rows differ) red gets D^-1 r, black D^-1 (r - A e_red)."""
    with default_dtype(torch.float64):
        m = mgdsl.load("specs/multigrid/poisson-v11-rbgs.mg", n=9)
    P = prolong(9)
    A2 = P.T @ laplace(9) @ P
    r = np.random.default_rng(2).standard_normal(25)
    red = np.array([(p // 5 + p % 5) % 2 == 0 for p in range(25)])
    e = np.where(red, r / np.diag(A2), 0)
    e = np.where(red, e, (r - A2 @ e) / np.diag(A2))
    np.testing.assert_allclose(_apply(m.instance("S[2]"), r, 5), e, atol=1e-12)
