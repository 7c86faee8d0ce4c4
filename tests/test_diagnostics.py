"""One cause, one error: what the scheme finds once per grid as it unrolls is said once, with the grids."""
import pytest

import mgdsl
from mgdsl import SpecError
from mgdsl.diagnostics import Diagnostic, Span, merge_repeats
from tiny_specs import TINY_MGNET

FOUR = TINY_MGNET.replace("input x : 3 x 16 x 16", "input x : 3 x 32 x 32").replace("grids 2", "grids 4")


def _errors(text):
    with pytest.raises(SpecError) as e:
        mgdsl.compile_spec("t.mg", text=text)
    return e.value.diagnostics


@pytest.mark.parametrize("scope,smooth", [("B[l]   ", "smooth 1"), ("B[l, i]", "smooth 2")])
def test_a_wrong_b_on_every_grid_is_one_error_that_lists_the_grids(scope, smooth):
    text = FOUR.replace("B[l, i] = relu . bn . conv3(f -> u)", f"{scope} = relu . bn . conv3(u -> u)") \
               .replace("smooth 1", smooth)
    (d,) = _errors(text)
    assert d.message == "B maps u -> u but is applied to f (on grids 1, 2, 3, 4)"
    assert d.hint == f"B is defined at line 11: {scope} = relu . bn . conv3(u -> u)"
    assert (d.span.line, d.span.col) == (17, 19)


def test_a_wrong_b_on_one_grid_keeps_its_label():
    """Only grid 1 gets f (a grid-1 B[1] maps u -> u), so the message names B[1] alone and no grid list."""
    text = FOUR.replace("  B[l, i] = relu . bn . conv3(f -> u)",
                        "  B[l, i] = relu . bn . conv3(f -> u)\n  B[1, i] = relu . bn . conv3(u -> u)")
    (d,) = _errors(text)
    assert d.message == "B[1, 1] maps u -> u but is applied to f"


def test_merge_keeps_labels_that_agree_and_different_places_apart():
    at = Span(3, 5, 3, 9)
    ds = [Diagnostic(f"B[{k}] gives xi[1] the wrong value", at, f"B[{k}] is defined at line 2", grid=k)
          for k in (1, 2)] + [Diagnostic("B[3] gives xi[1] the wrong value", Span(4, 5, 4, 9), grid=3)]
    merged = merge_repeats(ds)
    assert [d.message for d in merged] == ["B gives xi[1] the wrong value (on grids 1, 2)",
                                           "B[3] gives xi[1] the wrong value"]
    assert merged[0].hint == "B is defined at line 2"


def test_did_you_mean_names_every_spelling_as_close_as_the_closest():
    """`conv` is as close to conv1, conv3, conv5 and conv7: the hint said 'conv7' (difflib's tie-break), now all."""
    from mgdsl.diagnostics import did_you_mean
    assert did_you_mean("conv", ["relu", "conv3", "conv1", "conv7", "conv5"]) == \
        "did you mean 'conv1', 'conv3', 'conv5' or 'conv7'?"
    assert did_you_mean("AA", ["A", "B", "eta"]) == "did you mean 'A'?"
    assert did_you_mean("zzz", ["A", "B"]) is None
