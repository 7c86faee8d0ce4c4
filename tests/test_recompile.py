"""mgdsl.recompile: the one way an IR is rebuilt (for other data, for a resumed run, for eval). It compiles the
text that was compiled, with the same -D values and budget, never the file as it is now on disk."""
import pytest

import mgdsl
from mgdsl import SpecError
from tiny_specs import TINY_MGNET

SPEC = TINY_MGNET


def test_recompile_reads_the_compiled_text_not_the_file_on_disk(tmp_path):
    path = tmp_path / "tiny.mg"
    path.write_text(SPEC)
    ir = mgdsl.compile_spec(str(path), {"width": 6})
    path.write_text(SPEC.replace("classes 10", "classes 3"))  # edited after compiling
    again = mgdsl.recompile(ir)
    assert again.classes == 10 and again.params == {"width": 6}
    assert again.source.text == ir.source.text
    assert again.total_params == ir.total_params


def test_recompile_for_other_data_replaces_input_and_classes_only():
    ir = mgdsl.compile_spec("tiny.mg", {"width": 6}, text=SPEC)
    grey = mgdsl.recompile(ir, input_shape=(1, 32, 32), classes=5)
    assert grey.input_ty.shape == (1, 32, 32) and grey.output_ty.shape == (5,)
    assert grey.sizes == {1: (32, 32), 2: (16, 16)}  # grid 1 is the input, grid 2 is coarsened from it
    # only the stem's input channels (3 -> 1: 2 x 6 x 9 weights) and fc's rows (10 -> 5: 5 x (6 + 1)) change
    assert ir.total_params - grey.total_params == 2 * 6 * 9 + 5 * 7


def test_recompile_keeps_the_budget():
    ir = mgdsl.compile_spec("tiny.mg", text=SPEC)
    tight = mgdsl.compile_spec("tiny.mg", text=SPEC, max_params=ir.total_params)
    with pytest.raises(SpecError, match="over the budget"):
        mgdsl.recompile(tight, classes=11)
    assert mgdsl.recompile(ir, classes=11).total_params > ir.total_params


def test_recompile_with_a_changed_define_keeps_the_others():
    # the equivalence check runs its numerics at reduced width this way: every other -D must survive
    two = SPEC.replace("  param width = 4\n", "  param width = 4\n  param nu = 1\n").replace("smooth 1", "smooth nu")
    ir = mgdsl.compile_spec("tiny.mg", {"width": 6, "nu": 2}, text=two)
    small = mgdsl.recompile(ir, params={"width": 4})
    assert small.params["nu"] == 2 and small.params["width"] == 4 and small.nu == [2, 2]
