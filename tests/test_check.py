"""Located diagnostics for the spec errors users make; every one exits 2 with file:line:col."""
import pytest

import mgdsl
from mgdsl import SpecError
from mgdsl.check import sharing_table

BASE = """model t {
  param width = 8
  input x : 3 x 32 x 32
  classes 10
  grids 3
  smooth 2
  space u = width, f = width
  f_in = relu . bn . conv3(x -> f)
  A[l] = conv3(u -> f)
  B[l] = relu . bn . conv3(f -> u)
  Pi[l] = conv3(u -> u, stride 2)
  R[l] = conv3(f -> f, stride 2)
  fc = linear(u -> classes)
  init f = f_in(x); u = 0
  step u = u + B(f - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  output fc(avgpool(u))
}
"""


def errors(text, **params):
    with pytest.raises(SpecError) as e:
        mgdsl.compile_ir("t.mg", text, **params)
    return e.value.diagnostics, str(e.value)


def test_base_is_ok():
    ir = mgdsl.compile_ir("t.mg", BASE)
    assert ir.output_ty.shape == (10,)


def test_undefined_operator_did_you_mean():
    diags, msg = errors(BASE.replace("u + B(f - A(u))", "u + Bb(f - A(u))"))
    assert "t.mg:15:" in msg and "undefined operator 'Bb'" in msg and "did you mean 'B'" in msg


def test_undefined_space_and_param():
    _, msg = errors(BASE.replace("conv3(u -> f)\n", "conv3(u -> ff)\n"))
    assert "undefined space 'ff'" in msg and "did you mean 'f'" in msg
    _, msg = errors(BASE.replace("space u = width", "space u = widht"))
    assert "undefined param 'widht'" in msg and "did you mean 'width'" in msg


def test_channel_mismatch_operator_applied_to_wrong_space():
    _, msg = errors(BASE.replace("u + B(f - A(u))", "u + B(f - A(f))"))
    # located at the use, with the definition in the hint
    assert msg.splitlines()[0].startswith("t.mg:15:") and "A[1] maps u -> f but is applied to f" in msg
    assert "hint: A[1] is defined at line 9: A[l] = conv3(u -> f)" in msg


def test_grid_mismatch():
    _, msg = errors(BASE.replace("f[l+1] = R(f - A(u))", "f[l+1] = R(f - A(u)) + A(u)"))
    assert "grid mismatch" in msg or "another grid" in msg


def test_space_mismatch_in_addition():
    _, msg = errors(BASE.replace("u + B(f - A(u))", "u + f"))
    assert "cannot add u and f" in msg


def test_wrong_index_arity():
    _, msg = errors(BASE.replace("u + B(f - A(u))", "u + B[1, 2](f - A(u))"))
    assert "B takes 1 index but is used with 2" in msg


def test_reading_an_iterate_that_does_not_exist():
    diags, msg = errors(BASE.replace("u + B(f - A(u))", "u + B(f - A(u[i-2]))"))
    assert "u[i-2] at i=1 reads iterate -1, which does not exist" in msg and "step[1]" in msg


def test_cycle_in_definitions():
    diags, msg = errors(BASE.replace("A[l] = conv3(u -> f)", "A[l] = A[l] . conv3(u -> f)"))
    assert len(diags) == 1 and "cycle in definitions: A -> A (on grids 1, 2" in msg  # once, not once per grid


@pytest.mark.parametrize("edit,words", [("grids 3", "grids 0"), ("input x : 3 x 32", "input x : 3 x -2")])
def test_non_positive_sizes(edit, words):
    text = BASE.replace(edit, words)
    with pytest.raises(SpecError):
        mgdsl.compile_ir("t.mg", text)


def test_absurd_sizes_and_budget():
    _, msg = errors(BASE, width=10 ** 6)
    assert "absurdly large" in msg
    _, msg = errors(BASE, width=60000)
    assert "over the budget" in msg


def test_several_errors_are_all_reported():
    text = BASE.replace("u + B(f - A(u))", "u + Bb(f - A(u))").replace("R(f - A(u))", "R(f - A(f))")
    diags, _ = errors(text)
    assert len(diags) >= 2


def test_unknown_define():
    _, msg = errors(BASE, widht=3)
    assert "did you mean 'width'" in msg


def test_linearity_classification_and_sharing():
    ir = mgdsl.compile_ir("t.mg", BASE.replace("B[l] =", "B[l, i] ="))
    rows = {r["name"]: r for r in sharing_table(ir)}
    assert rows["A[1]"]["class"] == "linear"
    assert rows["f_in"]["class"] == "nonlinear"
    assert rows["B[1, 2]"]["scope"] == "[l, i]"
    assert rows["fc"]["class"] == "affine"
    ir = mgdsl.compile_ir("t.mg", BASE.replace("A[l] = conv3(u -> f)", "A[l] = bn . conv3(u -> f)"))
    assert {r["name"]: r for r in sharing_table(ir)}["A[1]"]["class"] == "affine"
    ir = mgdsl.compile_ir("t.mg", BASE.replace("A[l] = conv3(u -> f)", "A[l] = conv3(u -> f, bias)"))
    assert {r["name"]: r for r in sharing_table(ir)}["A[1]"]["class"] == "affine"


def test_operator_names_that_would_shadow_module_attributes():
    _, msg = errors(BASE.replace("fc = linear", "eval = linear").replace("output fc(", "output eval("))
    assert "would clash with the lowered torch module's own 'eval'" in msg


# ---------------------------------------------------------------- issue 10: what `check` accepts lowers and runs

def _runs(text, **params):
    """Check, lower and run one forward pass: the promise a passing check makes."""
    import torch
    ir = mgdsl.compile_ir("t.mg", text, **params)
    model = mgdsl.lower(ir).eval()
    with torch.no_grad():
        y = model(torch.randn(2, *ir.input_ty.shape))
    assert tuple(y.shape[1:]) == ir.output_ty.shape
    return ir


def _located(text, line, *words, **params):
    diags, msg = errors(text, **params)
    d = diags[0]
    assert d.span is not None and d.span.line == line, msg
    assert d.hint, msg
    for w in words:
        assert w in msg, msg
    return msg


PER_GRID = BASE.replace("space u = width, f = width", "space u = [24, 40, 72], f = [24, 40, 72]")


@pytest.mark.parametrize("pi", ["avgpool2", "maxpool2", "restrict(u -> u)", "maxpool3"])
def test_fixed_pi_between_grids_of_different_channel_counts_is_located(pi):
    text = PER_GRID.replace("Pi[l] = conv3(u -> u, stride 2)", f"Pi[l] = {pi}")
    _located(text, 11, "keeps the 24 channels", "grid 2 has 40")


def test_fixed_pi_between_grids_of_equal_channel_counts_runs():
    _runs(BASE.replace("Pi[l] = conv3(u -> u, stride 2)", "Pi[l] = avgpool2"))


ODD = BASE.replace("input x : 3 x 32 x 32", "input x : 3 x 28 x 28").replace("grids 3", "grids 4") \
    .replace("  output", "  postsmooth 1\n  cycle V\n  P[l] = deconv4(u -> u, stride 2)\n"
             "  refine u = u + P(u[l+1] - u[l+1, 0])\n  output")


def test_deconv4_onto_an_odd_grid_is_located():
    # 28 -> 14 -> 7 -> 4: deconv4 maps 4 to 8, not 7
    _located(ODD, 19, "deconv4 maps 4x4 to 8x8", "7x7")


def test_deconv3_onto_an_odd_grid_runs():
    _runs(ODD.replace("deconv4", "deconv3"))


def test_deconv_with_stride_1_is_refused():
    _located(ODD.replace("deconv4(u -> u, stride 2)", "deconv3(u -> u, stride 1)"), 19, "stride must be 2")


POISSON = open("specs/multigrid/poisson-v11.mg").read()
assert "A[l] = R[l-1] . A[l-1] . P[l-1]" in POISSON and "laplace(u -> f)" in POISSON


def test_prolongation_reused_on_another_grid_is_located():
    # P[l-0] in the Galerkin product: P[2] is built for grid 2 -> 1 there, and used from grid 3 in the refine
    text = POISSON.replace("A[l] = R[l-1] . A[l-1] . P[l-1]", "A[l] = R[l-1] . A[l-1] . P[l-0]")
    diags, msg = errors(text, n=17)
    assert diags[0].span is not None and "is built for" in msg and "hint: " in msg


@pytest.mark.parametrize("opt", ["pad foo", "pad", "bilinear"])
def test_unknown_laplace_option_is_located(opt):
    text = POISSON.replace("laplace(u -> f)", f"laplace(u -> f, {opt})")
    diags, msg = errors(text, n=17)
    assert diags[0].span.line == 15 and diags[0].hint, msg


@pytest.mark.parametrize("cycle", ["V", "W"])
def test_cycle_without_coarsen_is_located(cycle):
    text = BASE.replace("  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])\n",
                        f"  cycle {cycle}\n  refine u = u + u\n")
    diags, msg = errors(text)
    assert "no `coarsen` equation" in msg and diags[0].hint


def test_refine_for_one_grid_only_is_located():
    text = BASE.replace("  output", "  cycle V\n  refine[2] u = u + Pi(u)\n  output")
    diags, msg = errors(text)
    assert "no `refine` equation for grid 1" in msg


@pytest.mark.parametrize("offset", ["l-2147483648", "l+1", "l-1000", "l-2"])
def test_out_of_range_recursive_index_is_located(offset):
    text = POISSON.replace("A[l] = R[l-1] . A[l-1] . P[l-1]", f"A[l] = R[l-1] . A[{offset}] . P[l-1]")
    diags, msg = errors(text, n=17)
    assert diags[0].span is not None and diags[0].span.line == 16, msg
    assert "grid" in diags[0].message, msg


def test_unbounded_recursion_in_definitions_is_located():
    text = BASE.replace("B[l] = relu . bn . conv3(f -> u)", "B[l, i] = B[l, i+1] . relu . bn . conv3(f -> u)")
    diags, msg = errors(text)
    assert diags[0].span is not None and "nest" in msg


def test_unindexed_operator_in_coarsen_applied_to_the_next_grid_is_located():
    text = BASE.replace("A[l+1](u[l+1])", "A(u[l+1])")
    diags, msg = errors(text)
    assert diags[0].span.line == 16 and "A[l+1]" in diags[0].hint, msg
    assert "applied to grid l+1 (l = 1, 2)" in diags[0].message and len(diags) == 1  # once for every grid


def test_unindexed_prolongation_in_refine_is_the_one_of_the_line_grid():
    _runs(ODD.replace("deconv4", "deconv3"))  # refine u = u + P(...): P[l] maps grid l+1 to grid l


def test_solve_says_a_network_is_not_a_fixed_stencil_multigrid(capsys):
    from mgdsl.cli import main
    assert main(["solve", "specs/mgnet.mg", "--n", "65"]) == 2
    err = capsys.readouterr().err
    assert "not a fixed-stencil multigrid" in err and "-D n" not in err and "param n" in err
    assert "hint: solve needs" in err
    assert main(["solve", "specs/multigrid/mgnet-linear.mg", "--n", "17"]) == 2
    assert "Pi[1] is linear with 9 trained parameters" in capsys.readouterr().err


@pytest.mark.parametrize("pad", ["periodic", "reflect"])
def test_galerkin_product_of_a_padded_laplace_lowers_and_runs(pad):
    # periodic padding wraps around the grid: R . A . P is then not a local 3x3 stencil and is not assembled.
    # Either padding keeps the constants in the null space, so the coarsest grid is smoothed, not inverted
    # (inverse() of it is refused: tests/test_fixed_operators.py)
    text = POISSON.replace("laplace(u -> f)", f"laplace(u -> f, pad {pad})")
    text = text.replace("  S[J] = inverse(A[J], f -> u)  # exact coarsest solve\n", "")
    ir = _runs(text, n=17)
    assert ir.instances["A[2]"].assembled == (pad == "reflect")
