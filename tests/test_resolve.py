"""Params and spaces: a bad -D value that reaches several channel counts is one error at the counts it reaches."""
import pytest

import mgdsl
from mgdsl import SpecError
from tiny_specs import TINY_MGNET


def _errors(text, **params):
    with pytest.raises(SpecError) as e:
        mgdsl.compile_spec("t.mg", params, text=text)
    return e.value.diagnostics


def test_width_0_through_a_per_grid_list_is_one_error_naming_the_grids():
    text = TINY_MGNET.replace("space u = width, f = width", "space u = 4, f = [width, 2 * width]")
    (d,) = _errors(text, width=0)
    assert d.message == "channels of f on grids 1, 2 must be positive, got 0"
    assert d.hint == "width = 0 comes from -D width=0"
    assert (d.span.line, d.span.col, d.span.end_col) == (7, 21, 37)  # from `width` to the end of `2 * width`


def test_width_0_in_two_spaces_is_one_error_naming_both():
    (d,) = _errors(TINY_MGNET, width=0)
    assert d.message == "channels of u and f must be positive, got 0"


def test_the_values_that_differ_are_listed():
    text = TINY_MGNET.replace("space u = width, f = width", "space u = 4, f = [width, 2 * width]")
    (d,) = _errors(text, width=-1)
    assert d.message == "channels of f on grids 1, 2 must be positive, got -1, -2"


def test_two_causes_stay_two_errors():
    text = TINY_MGNET.replace("space u = width, f = width", "space u = 0, f = width")
    ds = _errors(text, width=0)
    assert sorted(d.message for d in ds) == ["channels of f must be positive, got 0",
                                             "channels of u must be positive, got 0"]


@pytest.mark.parametrize("n, message", [("abc", "input size must be a number, but param n is 'abc'"),
                                        (0, "input size must be positive, got 0")])
def test_a_bad_n_in_both_input_sizes_is_one_error(n, message):
    """`input f : 1 x n x n` with -D n=abc gave the same error twice (once per n); now once, spanning both."""
    text = open("specs/multigrid/poisson-v11.mg").read()
    (d,) = _errors(text, n=n)
    assert d.message == message and d.hint == f"n = {n} comes from -D n={n}"
    line = text.splitlines()[d.span.line - 1]
    assert line[d.span.col - 1:d.span.end_col - 1] == "n x n"
