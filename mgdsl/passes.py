"""Named passes over the IR, run in PIPELINE order after unrolling. Each may change only what its docstring
says; IR.verify() holds after each (the tests run it after every pass: VERIFY = True).

Zero folding is the one rewrite made while the graph is built (a constant folder, like an IR builder's):
A(0) = 0 for a fixed linear A or a bias-free convolution, 0 + v = v, c * 0 = 0, relu(0) = 0. It runs there
because typing and the sharing table must see exactly the applications that survive it."""
from __future__ import annotations

from .diagnostics import Diagnostic
from .ir import IR, KLASS_ORDER, Instance, reachable

VERIFY = False  # run IR.verify() after every pass (the test suite turns it on)


def apply_folds_to_zero(inst: Instance) -> bool:
    """Zero folding of an application: inst(0) = 0 when inst is fixed and linear (no parameters, no class
    worse than linear, no reference whose class is not yet known) or a chain of bias-free convolutions."""
    if inst.params == 0 and all(lay.klass == "linear" for lay in inst.layers) and not any(lay.ref for lay in inst.layers):
        return True
    return all(lay.kind in ("conv", "deconv") and not lay.bias for lay in inst.layers)


def drop_unapplied(ir: IR) -> IR:
    """Count uses (applications that reach the output, plus references from used instances) and drop the
    instances with none, e.g. A[1] when the zero start folds A(0) away, with a warning if it had parameters.
    Changes only Instance.uses, IR.instances, IR.bindings and IR.warnings."""
    live = reachable(ir.nodes, [ir.output])
    for inst in ir.instances.values():
        inst.uses = 0
    used: set[str] = set()
    for n in sorted(live):
        if ir.nodes[n].op == "apply":
            ir.instances[ir.nodes[n].inst].uses += 1
            used.add(ir.nodes[n].inst)
    stack = list(used)
    while stack:
        for lay in ir.instances[stack.pop()].layers:
            if lay.ref:
                ir.instances[lay.ref].uses += 1
                if lay.ref not in used:
                    used.add(lay.ref)
                    stack.append(lay.ref)
    for b in ir.bindings.values():
        for name in [k for k, lab in b.items() if lab not in used]:
            del b[name]
    applied = {n.inst for n in ir.nodes if n.op == "apply"}  # live or not
    for label in [k for k in ir.instances if k not in used]:
        inst = ir.instances.pop(label)
        if inst.params:
            why = "its result never reaches the output" if label in applied else "its only inputs are zero"
            ir.warnings.append(Diagnostic(f"{label} is never applied ({why}) and is left out",
                                          inst.span, severity="warning"))
    return ir



def classify(ir: IR) -> IR:
    """Linearity classification: an instance takes the worst class of its layers and of what it references,
    and is trained when it or anything it references has parameters. Changes only Instance.klass and
    Instance.trained."""
    done: set[str] = set()

    def visit(label: str) -> str:
        inst = ir.instances[label]
        if label not in done:
            done.add(label)
            inst.klass = max((lay.klass for lay in inst.layers), key=KLASS_ORDER.get, default="linear")
            inst.trained = inst.params > 0
            for lay in inst.layers:
                if lay.ref and lay.ref in ir.instances:
                    inst.klass = max(inst.klass, visit(lay.ref), key=KLASS_ORDER.get)
                    inst.trained = inst.trained or ir.instances[lay.ref].trained
        return inst.klass

    for label in ir.instances:
        visit(label)
    return ir


def _radius(ir: IR, inst: Instance, level: int) -> tuple[float, int] | None:
    """How far (in units of the finest grid's spacing) an output point of a channel-wise fixed composition
    reads, applied at `level`, and the level it ends on; None when a layer is not channel-wise."""
    r = 0.0
    for lay in inst.layers:
        if lay.kind == "ref":
            sub = _radius(ir, ir.instances[lay.ref], level)
            if sub is None:
                return None
            dr, level = sub
            r += dr
        elif lay.kind == "stencil":
            if lay.pad == "periodic":
                return None  # wraps around the grid: not a local stencil near the boundary
            r += 2 ** (level - 1)
        elif lay.kind == "restrict":
            r, level = r + 2 ** (level - 1), level + 1
        elif lay.kind == "prolong":
            r, level = r + 2 ** (level - 2), level - 1
        elif lay.kind != "id":
            return None
    return r, level


def mark_assembled(ir: IR) -> IR:
    """Which fixed channel-wise compositions (the Galerkin R . A . P) the lowering applies as one assembled
    3x3 variable-coefficient stencil: those whose output reads at most one grid point away on their own grid.
    Changes only Instance.assembled."""
    for inst in ir.instances.values():
        t = inst.in_ty
        inst.assembled = False
        if not (inst.fixed and t is not None and t.height is not None and t.level and inst.out_ty.shape == t.shape
                and any(lay.kind == "ref" for lay in inst.layers)):
            continue
        fp = _radius(ir, inst, t.level)
        inst.assembled = fp is not None and fp[1] == t.level and fp[0] < 2 ** t.level
    return ir


PIPELINE = (classify, drop_unapplied, mark_assembled)


def run_passes(ir: IR) -> IR:
    """Every pass in order (verifying the IR before the first and after each when VERIFY is on)."""
    if VERIFY:
        ir.verify()
    for p in PIPELINE:
        ir = p(ir)
        if VERIFY:
            ir.verify()
    return ir
