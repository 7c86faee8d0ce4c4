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
    _, msg = errors(BASE.replace("A[l] = conv3(u -> f)", "A[l] = A[l] . conv3(u -> f)"))
    assert "cycle in definitions: A[1] -> A[1]" in msg


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
