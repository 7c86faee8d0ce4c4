"""The parameter budget: 1,000,000,000 by default, `--max-params N` moves it, and the boundary is exact.

ResNet-18's count is exact against the hand-written torchvision-style model (tests/reference.py,
11,173,962); at `-D width=605` the static count is 997,207,595 and at 606 it is 1,000,506,616, so the
default budget sits between the two. Nothing here allocates a model: the count is static.
"""
import json

import pytest

import mgdsl
from mgdsl import SpecError
from mgdsl.cli import main

RESNET18 = "specs/table2/resnet18.mg"
RESNET18_PARAMS = 11_173_962


def test_max_params_flag_is_the_exact_budget(capsys):
    assert main(["compile", RESNET18, "--max-params", str(RESNET18_PARAMS)]) == 0
    capsys.readouterr()
    assert main(["compile", RESNET18, "--max-params", str(RESNET18_PARAMS - 1)]) == 2
    err = capsys.readouterr().err
    assert f"the model has {RESNET18_PARAMS:,} parameters, over the budget of {RESNET18_PARAMS - 1:,}" in err
    assert "hint:" in err and "--max-params" in err and "-D width" in err  # how to get past it
    assert "Traceback" not in err


def test_max_params_flag_also_raises_the_default_budget(capsys):
    assert main(["compile", RESNET18, "-D", "width=606", "--json", "--max-params", "2e9"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 1_000_506_616


def test_default_budget_is_one_billion_on_the_command_line(capsys):
    assert main(["compile", RESNET18, "-D", "width=605", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 997_207_595
    assert main(["compile", RESNET18, "-D", "width=606"]) == 2
    assert "the model has 1,000,506,616 parameters, over the budget of 1,000,000,000" in capsys.readouterr().err


def test_default_budget_also_guards_commands_without_max_params(capsys):
    assert main(["check", RESNET18, "-D", "width=605"]) == 0
    capsys.readouterr()
    assert main(["check", RESNET18, "-D", "width=606"]) == 2
    assert "over the budget of 1,000,000,000" in capsys.readouterr().err


def test_default_budget_is_one_billion_in_the_library():
    assert mgdsl.compile_ir(RESNET18, width=605).total_params == 997_207_595
    with pytest.raises(SpecError, match="over the budget of 1,000,000,000"):
        mgdsl.compile_ir(RESNET18, width=606)


def test_adapting_to_the_data_keeps_the_budget_the_spec_was_checked_with():
    # training recompiles the spec for the data's shape and classes: a --max-params above the default must
    # reach it, or a model the user allowed is refused before its first step
    from mgdsl.training import adapt
    ir = mgdsl.compile_spec(RESNET18, {"width": 606}, max_params=2_000_000_000)
    assert adapt(ir, (3, 32, 32), 10).total_params == 1_000_506_616
    small = mgdsl.compile_spec(RESNET18, max_params=RESNET18_PARAMS)
    with pytest.raises(SpecError, match=f"over the budget of {RESNET18_PARAMS:,}"):
        adapt(small, (3, 32, 32), 11)  # one class more: 513 parameters more than the budget it was given
