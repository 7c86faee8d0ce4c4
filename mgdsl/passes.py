"""Named passes over the IR. Each may change only what its docstring says; IR.verify() holds after each."""
from __future__ import annotations

from .ir import IR, KLASS_ORDER, Instance

CHANNELWISE = {"stencil", "restrict", "prolong", "id"}  # fixed layers that act on each channel alone


def classify(ir: IR) -> IR:
    """Linearity classification: an instance takes the worst class of its layers and of what it references.
    Changes only Instance.klass."""
    done: set[str] = set()

    def visit(label: str) -> str:
        inst = ir.instances[label]
        if label not in done:
            done.add(label)
            inst.klass = max((lay.klass for lay in inst.layers), key=KLASS_ORDER.get, default="linear")
            for lay in inst.layers:
                if lay.ref and lay.ref in ir.instances:
                    inst.klass = max(inst.klass, visit(lay.ref), key=KLASS_ORDER.get)
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
