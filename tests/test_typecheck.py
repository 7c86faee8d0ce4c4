"""The type checker's later-use rule: a model-scope instance re-typed on another grid must agree with its first
use where the value is a state, and says nothing about the pair inside a composition such as `delta . split`."""
import pytest
import torch

import mgdsl
from mgdsl import SpecError
from tiny_specs import TINY_MGNET

# N = delta . split: [f, -f] inside, f outside (8.12, 8.13); one instance for the whole model
SPLIT = TINY_MGNET.replace("  fc      = linear", "  N       = delta . split\n  fc      = linear") \
                  .replace("step    u = u + B(f - A(u))", "step    u = u + B(N(f) - A(u))")


def test_a_model_scope_composition_through_a_pair_is_accepted_on_every_grid():
    ir = mgdsl.compile_spec("split.mg", text=SPLIT)
    n = ir.instances["N"]
    assert (n.uses, n.in_ty.channels, n.out_ty.channels) == (2, 4, 4)  # grid 1 and grid 2, one instance
    model = mgdsl.lower(ir).eval()
    x = torch.randn(2, 3, 16, 16)
    assert model(x).shape == (2, 10)
    # delta . split is -2 id (delta([X, Y]) = Y - X with Y = -X): the model is the one with N(f) written f - 3 f
    plain = mgdsl.lower(mgdsl.compile_spec("plain.mg", text=SPLIT.replace("N(f)", "f - 3 * f"))).eval()
    plain.load_state_dict(model.state_dict())
    assert torch.allclose(model(x), plain(x), atol=1e-6)


def test_the_same_composition_on_grids_of_other_channel_counts_is_still_refused():
    text = SPLIT.replace("space u = width, f = width", "space u = [4, 8], f = [4, 8]")
    with pytest.raises(SpecError) as e:
        mgdsl.compile_spec("split.mg", text=text)
    msg = str(e.value)
    assert "N is one shared instance, first applied to f (4 channels, grid 1" in msg
    assert "here to f (8 channels, grid 2" in msg and "N[l]" in msg


def test_a_model_scope_convolution_landing_on_a_grid_of_other_channels_is_still_refused():
    """The rule the fix narrows: a shared layer whose first-use output was a state of grid 1 must give that
    state's channels on grid 2 too (u: 4 channels everywhere, f: 4 then 8)."""
    text = TINY_MGNET.replace("space u = width, f = width", "space u = 4, f = [4, 8]") \
                     .replace("A[l]    = conv3(u -> f)", "A       = conv3(u -> f)") \
                     .replace("R[l]    = conv3(f -> f, stride 2)", "R[l]    = conv3(f -> f, stride 2) . conv1(f -> f)")
    with pytest.raises(SpecError) as e:
        mgdsl.compile_spec("a.mg", text=text)
    assert "A gives 4 channels of f, but f on grid 2 has 8" in str(e.value)


def test_a_smoother_inverting_another_grids_operator_is_one_error_at_it():
    """`S[l] = inverse(A[J], f -> u)` (meant as S[J]) gave nine errors about P[6] and a prolongation at other lines,
    each with a wrong hint (index P, which is indexed); now one error at the inverse, saying which grid A[J] is."""
    from mgdsl import SpecError, compile_spec
    text = open("specs/multigrid/poisson-v11.mg").read()
    text = text.replace("  S[l] = jacobi(A[l], f -> u, omega omega)\n", "").replace("S[J] = inverse", "S[l] = inverse")
    with pytest.raises(SpecError) as e:
        compile_spec("t.mg", {}, text=text)
    (d,) = e.value.diagnostics
    assert d.message == "inverse(A[5]) is applied on another grid than A[5]'s, grid 5, and A[5] cannot act there"
    assert text.splitlines()[d.span.line - 1].strip().startswith("S[l] = inverse(A[J]")
    assert "S[l] = inverse(A[l], ...)" in d.hint


@pytest.mark.parametrize("smoother", ["jacobi", "rbgs", "inverse"])
def test_the_example_in_a_smoothers_hint_has_the_signature_it_needs(smoother):
    """`S[l] = rbgs(f -> u)` was told `e.g. rbgs(A[l], u -> f)`; written so, it fails (S maps u -> f but is
    applied to f). The example is now f -> u, and the spec it suggests compiles."""
    from mgdsl import SpecError, compile_spec
    text = open("specs/multigrid/poisson-v11-rbgs.mg").read()
    line = "  S[l] = rbgs(A[l], f -> u)"
    with pytest.raises(SpecError) as e:
        compile_spec("t.mg", {}, text=text.replace(line, f"  S[l] = {smoother}(f -> u)"))
    (d,) = e.value.diagnostics
    assert d.hint == f"e.g. {smoother}(A[l], f -> u)"
    if smoother != "inverse":  # inverse on every grid is too large; jacobi and rbgs compile as suggested
        compile_spec("t.mg", {}, text=text.replace(line, f"  S[l] = {d.hint[5:]}"))


def test_a_bad_restrict_option_is_one_error_at_r_not_again_at_its_transpose():
    """`R[l] = restrict(f -> f, bilnear)` with `P[l] = transpose(R[l])` was reported at R and again at P's line
    (one cause, two errors); now once, at R."""
    from mgdsl import SpecError, compile_spec
    text = open("specs/multigrid/poisson-v11.mg").read().replace("restrict(f -> f, kr)", "restrict(f -> f, bilnear)")
    with pytest.raises(SpecError) as e:
        compile_spec("t.mg", {}, text=text)
    (d,) = e.value.diagnostics
    assert d.message == "restrict has no option 'bilnear'" and d.hint == "did you mean 'bilinear'?"
    assert text.splitlines()[d.span.line - 1].strip().startswith("R[l] = restrict")
