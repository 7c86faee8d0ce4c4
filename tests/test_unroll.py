"""The unrolled scheme's grid rules: a bare operator applied to the next grid is one error, however many grids."""
import pytest

import mgdsl
from mgdsl import SpecError
from tiny_specs import TINY_MGNET

BARE = TINY_MGNET.replace("A[l+1](u[l+1])", "A(u[l+1])")


def _errors(text):
    with pytest.raises(SpecError) as e:
        mgdsl.compile_spec("t.mg", text=text)
    return e.value.diagnostics


def test_a_bare_operator_on_the_next_grid_is_one_error_on_four_grids():
    text = BARE.replace("input x : 3 x 16 x 16", "input x : 3 x 32 x 32").replace("grids 2", "grids 4")
    (d,) = _errors(text)
    assert d.message == ("A without an index is A[l], the operator of grid l (this `coarsen` line's grid), which "
                         "also acts on grid l; here it is applied to grid l+1 (l = 1, 2, 3)")
    assert d.hint.startswith("write A[l+1](...)")


def test_on_two_grids_the_error_names_the_grids():
    (d,) = _errors(BARE)
    assert d.message.startswith("A without an index is A[1], the operator of grid 1")
    assert d.message.endswith("here it is applied to grid 2")
