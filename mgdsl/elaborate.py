"""AST to IR, in stages: resolve (names, numbers, grids; definitions bound to sharing scopes), type (by the
primitive table, as operators are applied), unroll (the scheme into a dataflow graph), then the passes."""
from __future__ import annotations

from . import syntax as S
from .diagnostics import Diagnostic, Reporter, Source
from .ir import IR, WrittenAssign, WrittenEq
from .passes import run_passes
from .resolve import Binder, resolve
from .typecheck import Typer
from .unroll import Unroller, idx_text


def term(e) -> tuple:
    """An AST expression as a plain tuple term, the form the theorem checks rewrite."""
    if isinstance(e, S.Var):
        return ("var", e.name + idx_text(e.index))
    if isinstance(e, S.Apply):
        return ("app", e.name + idx_text(e.index), term(e.arg))
    if isinstance(e, S.BinOp):
        return ("add" if e.op == "+" else "sub", term(e.left), term(e.right))
    if isinstance(e, S.Scaled):
        return ("scale", e.coef, term(e.arg))
    if isinstance(e, S.Literal):
        return ("const", e.value)
    if isinstance(e, S.Sum):
        return ("sum", e.var, e.bound, term(e.body))
    raise TypeError(e)


def written_equations(eqs: dict, output: S.Output) -> dict[str, list[WrittenEq]]:
    """The scheme as written: equation kind -> [WrittenEq], the general equation (guard None) first."""
    out = {kind: [WrittenEq(guard, [WrittenAssign(a.name, idx_text(a.index), term(a.expr)) for a in eq.assigns])
                  for guard, eq in sorted(slot.items(), key=lambda kv: (kv[0] is not None, kv[0] or 0))]
           for kind, slot in eqs.items()}
    out["output"] = [WrittenEq(None, [WrittenAssign("output", "", term(output.expr))])]
    return out


def elaborate(model: S.Model, source: Source, overrides: dict | None = None) -> IR:
    """AST to IR; raises SpecError with every diagnostic found."""
    rep = Reporter(source)
    r = resolve(model, rep, dict(overrides or {}))
    binder = Binder(r, source)
    unroller = Unroller(r, rep, binder, Typer(r, binder))
    out = unroller.run()
    ir = IR(name=model.name, path=source.path, params=dict(r.params), input_name=r.input_name, input_ty=r.input_ty,
            classes=r.classes, grids=r.J, nu=r.nu, post=r.post, cycle=r.cycle, spaces=r.spaces, sizes=r.sizes,
            instances=binder.instances, nodes=unroller.g.nodes, output=out, states=unroller.states,
            state_names=r.state_names, warnings=[], equations=written_equations(r.eqs, r.output),
            bindings=unroller.bindings)
    ir = run_passes(ir)
    used = {i.name for i in ir.instances.values()}
    ir.warnings[:0] = [Diagnostic(f"{name} is defined but never used", defs[0].span, severity="warning")
                       for name, defs in r.defs.items() if name not in used]
    return ir
