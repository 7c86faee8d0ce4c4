"""jacobi(A) and inverse(A) are built once from A's values, so A must be fixed (no trained parameters):
`check` refuses a trained A with a located error, exit 2, instead of freezing its random initial values."""
import re

import pytest

from mgdsl.cli import main

V11 = open("specs/multigrid/poisson-v11.mg").read()


def _check(tmp_path, capsys, text):
    p = tmp_path / "s.mg"
    p.write_text(text)
    rc = main(["check", str(p), "-D", "n=9"])
    return rc, capsys.readouterr().err, str(p)


def _edit(text, pattern, repl):
    """Replace the one line that matches `pattern` (whatever its alignment), or fail."""
    out, n = re.subn(pattern, repl, text, flags=re.M)
    assert n == 1, pattern
    return out


def _line(text, start):
    return next(k for k, l in enumerate(text.splitlines(), 1) if l.startswith(start))


def test_the_fixed_solver_spec_is_accepted(tmp_path, capsys):
    assert _check(tmp_path, capsys, V11)[0] == 0


def test_jacobi_of_a_trained_operator_is_refused_at_its_definition(tmp_path, capsys):
    text = _edit(V11, r"^  A\[1\]\s*= laplace\(u -> f\)", "  A[1] = conv3(u -> f)")
    rc, err, path = _check(tmp_path, capsys, text)
    assert rc == 2 and "Traceback" not in err
    assert f"{path}:{_line(text, '  S[l]')}:3: error: jacobi(A[1]) needs a fixed linear operator, " \
           "but A[1] is linear with 9 parameters" in err
    assert "hint:" in err and "laplace" in err


def test_inverse_of_a_trained_operator_is_refused_at_its_definition(tmp_path, capsys):
    text = _edit(V11, r"^  S\[J\]\s*= inverse\(A\[J\], f -> u\)", "  Ac[l] = conv3(u -> f)\n  S[J] = inverse(Ac[J], f -> u)")
    rc, err, path = _check(tmp_path, capsys, text)
    assert rc == 2 and "Traceback" not in err
    assert f"{path}:{_line(text, '  S[J]')}:3: error: inverse(Ac[3]) needs a fixed linear operator, " \
           "but Ac[3] is linear with 9 parameters" in err


def test_galerkin_operator_over_a_trained_operator_is_not_fixed(tmp_path, capsys):
    text = _edit(V11, r"^  A\[1\]\s*= laplace\(u -> f\)", "  A[1] = conv3(u -> f)")
    rc, err, _ = _check(tmp_path, capsys, text)
    assert rc == 2
    assert "jacobi(A[2]) needs a fixed linear operator" in err
    assert "inverse(A[3]) needs a fixed linear operator" in err


@pytest.mark.parametrize("pad", ["periodic", "reflect"])
def test_inverse_of_a_singular_operator_is_refused_where_it_is_defined(tmp_path, capsys, pad):
    # a periodic or reflecting laplace annihilates the constants: its "exact solve" would be noise (the solver
    # used to run 100 cycles on it with exit 0); the matrix is built at lowering, so solve refuses there
    text = _edit(V11, r"^  A\[1\]\s*= laplace\(u -> f\)", f"  A[1] = laplace(u -> f, pad {pad})")
    p = tmp_path / "s.mg"
    p.write_text(text)
    rc = main(["solve", str(p), "--n", "9"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert re.search(rf"{re.escape(str(p))}:{_line(text, '  S[J]')}:3: error: S\[\d\]: inverse\(\) of an operator "
                     r"that is singular on this grid \(condition number", err), err
    assert "hint:" in err and "jacobi" in err


def test_inverse_of_the_dirichlet_laplace_solves_exactly():
    # zero padding: the coarsest matrix is invertible and inverse() is its exact solve
    import torch

    import mgdsl
    from mgdsl.lowering import Inverse, default_dtype
    with default_dtype(torch.float64):
        ir = mgdsl.compile_ir("specs/multigrid/poisson-v11.mg", n=9)
        model = mgdsl.lower(ir)
        coarse = [m for m in model.modules() if isinstance(m, Inverse)]
        assert len(coarse) == 1
        inv = coarse[0]
        a = model.instance(next(lab for lab, i in ir.instances.items() if i.layers[0].kind == "inverse")
                           .replace("S", "A"))
        x = torch.randn(2, *inv.shape)
        assert torch.allclose(inv(a(x)), x, atol=1e-10)


def test_rbgs_of_a_trained_operator_is_refused_at_its_definition(tmp_path, capsys):
    text = _edit(open("specs/multigrid/poisson-v11-rbgs.mg").read(), r"^  A\[1\]\s*= laplace\(u -> f\)",
                 "  A[1] = conv3(u -> f)")
    rc, err, path = _check(tmp_path, capsys, text)
    assert rc == 2 and "Traceback" not in err
    assert f"{path}:{_line(text, '  S[l]')}:3: error: rbgs(A[1]) needs a fixed linear operator" in err
