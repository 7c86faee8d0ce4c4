"""Static checks on the IR: budgets, linearity of operators that must be linear, the sharing table."""
from __future__ import annotations

from .diagnostics import Diagnostic, Source, SpecError
from .ir import IR
from .prims import BY_LAYER

DEFAULT_MAX_PARAMS = 1_000_000_000


def check(ir: IR, source: Source, max_params: int = DEFAULT_MAX_PARAMS) -> IR:
    """Raise SpecError for a spec that elaborated but must not be lowered."""
    diags = []
    total = ir.total_params
    if total > max_params:
        diags.append(Diagnostic(f"the model has {total:,} parameters, over the budget of {max_params:,}",
                                None, "shrink it (e.g. -D width=...) or raise --max-params"))
    for inst in ir.instances.values():
        for lay in inst.layers:
            if lay.kind != "ref" and BY_LAYER[lay.kind].fixed_ref:
                a = ir.instances[lay.ref]
                if not a.fixed:
                    diags.append(Diagnostic(f"{lay.kind}({a.label}) needs a fixed linear operator, "
                                            f"but {a.label} is {a.klass} with {a.params} parameters",
                                            inst.span, "use fixed stencils (laplace, restrict, prolong)"))
    if diags:
        raise SpecError(diags, source)
    return ir


def sharing_table(ir: IR) -> list[dict]:
    """One row per instance: what a user needs to see which weights are shared where."""
    rows = []
    for inst in ir.instances.values():
        refs = [lay.ref for lay in inst.layers if lay.ref and lay.kind == "ref"]
        rows.append({
            "name": inst.label, "module": inst.path, "scope": "[" + ", ".join(inst.scope) + "]" if inst.scope else "model",
            "kind": "+".join(lay.kind if lay.kind != "ref" else lay.ref for lay in inst.layers),
            "class": inst.klass,
            "in": inst.in_ty.channels if inst.in_ty else None, "out": inst.out_ty.channels if inst.out_ty else None,
            "in_space": inst.in_ty.space if inst.in_ty else None, "out_space": inst.out_ty.space if inst.out_ty else None,
            "stride": max([lay.stride for lay in inst.layers] or [1]),
            "params": inst.params, "uses": inst.uses, "shares": refs,
        })
    return rows
