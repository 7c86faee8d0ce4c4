"""Golden files guard the compiler refactor: for every shipped spec at its default params, the generated
forward (`model.code`), the parameter count and each instance's params/uses/class are what they were.

Regenerate (after a deliberate change, saying why in the commit) with MGDSL_REGEN_GOLDEN=1."""
import json
import os
from pathlib import Path

import pytest

import mgdsl
from helpers import SPECS

GOLDEN = Path(__file__).resolve().parent / "golden"


def _facts(ir) -> dict:
    return {
        "params": ir.total_params,
        "input_shape": list(ir.input_ty.shape), "output_shape": list(ir.output_ty.shape),
        "instances": {label: {"params": i.params, "uses": i.uses, "class": i.klass,
                              "in": list(i.in_ty.shape) if i.in_ty else None,
                              "out": list(i.out_ty.shape) if i.out_ty else None}
                      for label, i in ir.instances.items()},
    }


def _name(path: str) -> str:
    return str(Path(path).relative_to("specs").with_suffix("")).replace("/", "__")


@pytest.mark.parametrize("path", SPECS)
def test_generated_forward_and_counts_are_unchanged(path):
    from mgdsl.lowering import lower_ir
    ir = mgdsl.compile_ir(path)
    code = lower_ir(ir).code
    facts = _facts(ir)
    stem = GOLDEN / _name(path)
    if os.environ.get("MGDSL_REGEN_GOLDEN"):
        stem.with_suffix(".json").write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
        stem.with_suffix(".py").write_text(code + "\n")
    assert json.loads(stem.with_suffix(".json").read_text()) == facts
    assert stem.with_suffix(".py").read_text() == code + "\n"
