"""Compute cost from the IR, without torch: multiply-accumulates (MACs) per image, forward.

What counts is what torch.utils.flop_counter.FlopCounterMode counts (FLOPs / 2): convolutions, transposed
convolutions, linear layers and matrix products, at their dense cost as the lowering runs them -- trained
convolutions, the strided fixed stencils restrict and prolong (channel-wise convolutions) and inverse()
(a dense matrix product). Element-wise work is not counted: BN, ReLU, pooling, additions, scalar scales,
split/delta, jacobi, and the stride-1 fixed stencils (laplace, an assembled Galerkin operator), which the
lowering applies as sums of shifted copies."""
from __future__ import annotations

from dataclasses import dataclass, field

from .ir import IR, Ty, reachable
from .prims import BY_LAYER, layer_at


@dataclass(frozen=True)
class Macs:
    """MACs per image: the total, and per operator instance (label) summed over all its uses."""
    total: int
    by_instance: dict[str, int]
    # per instance and grid of its input: (input type, output type, times run, MACs); `mgdsl lsp`'s hover
    by_grid: dict[tuple[str, int | None], tuple[Ty, Ty, int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Use:
    """One application of an operator instance in the lowered forward, in the order it runs: at depth 0 a node of
    the graph, deeper the instances its definition references (B[l, i]'s eta[l]), right after their parent."""
    label: str
    depth: int
    node: int  # the graph node of the depth-0 application it belongs to
    in_ty: Ty
    out_ty: Ty
    macs: int  # its own layers' MACs at this use (a referenced instance's are on that instance's row)


def uses(ir: IR) -> list[Use]:
    """Every operator application the lowered forward makes, nested ones included: the one table that the MAC
    counts (macs) and `compile --summary` read."""
    rows: list[Use | None] = []

    def run(label: str, x: Ty, depth: int, node: int) -> Ty:
        at = len(rows)
        rows.append(None)  # the parent's row comes before its children's
        inst = ir.instances[label]
        own, y = 0, x
        if inst.assembled:  # one element-wise variable stencil
            y = inst.out_ty
        else:
            for lay in inst.layers:
                if lay.kind == "ref":
                    y = run(lay.ref, y, depth + 1, node)
                    continue
                if lay.kind == "sub_id":
                    run(lay.ref, y, depth + 1, node)  # chi(x) - x: chi runs, and its MACs are chi's
                z = layer_at(lay, y, ir.sizes)
                own += BY_LAYER[lay.kind].macs(lay, y, z)
                y = z
        rows[at] = Use(label, depth, node, x, ir.nodes[node].ty if depth == 0 else y, own)  # the graph's own type
        return y

    for n in sorted(reachable(ir.nodes, [ir.output])):
        node = ir.nodes[n]
        if node.op == "apply":
            run(node.inst, ir.nodes[node.args[0]].ty, 0, n)
    return rows


def macs(ir: IR) -> Macs:
    """Multiply-accumulates per image of the lowered forward: every applied instance at each of its uses."""
    by = {label: 0 for label in ir.instances}
    grid: dict[tuple[str, int | None], tuple[Ty, Ty, int, int]] = {}
    for u in uses(ir):
        by[u.label] += u.macs
        _, _, runs, total = grid.get((u.label, u.in_ty.level), (u.in_ty, u.out_ty, 0, 0))
        grid[u.label, u.in_ty.level] = (u.in_ty, u.out_ty, runs + 1, total + u.macs)
    return Macs(sum(by.values()), by, grid)


def use_table(ir: IR) -> list[dict]:
    """`compile --summary`'s rows, from uses(): each application's grid, equation, shapes, parameters and MACs.
    An instance's parameters are counted on its first row; later rows name that row in `params_at` (sharing), and
    an instance the forward never applies gets a row of its own, so the params column sums to ir.total_params."""
    first: dict[str, int] = {}
    rows = []
    for u in uses(ir):
        w = ir.nodes[u.node].where
        counted = u.label not in first
        first.setdefault(u.label, len(rows) + 1)
        rows.append({"row": len(rows) + 1, "operator": u.label, "depth": u.depth, "grid": _grids(u.in_ty, u.out_ty),
                     "equation": _equation(w), "input": _value(u.in_ty), "output": _value(u.out_ty),
                     "params": ir.instances[u.label].params if counted else 0,
                     "params_at": None if counted else first[u.label], "macs": u.macs})
    for label, inst in ir.instances.items():
        if label not in first:
            rows.append({"row": len(rows) + 1, "operator": label, "depth": 0, "grid": "-", "equation": "not applied",
                         "input": _value(inst.in_ty), "output": _value(inst.out_ty), "params": inst.params,
                         "params_at": None, "macs": 0})
    return rows


def _grids(x: Ty, y: Ty) -> str:
    """The grid an application reads and (when it changes) the one it writes: 1, 1->2; 0 is the input domain."""
    def name(level: int | None) -> str:
        return "pooled" if level is None else str(level)
    return name(x.level) if x.level == y.level else f"{name(x.level)}->{name(y.level)}"


def _equation(w) -> str:
    """The scheme's equation that applies it: init, step 2, coarsen, refine, poststep 1, output."""
    if not w:
        return "-"
    return f"{w.kind} {w.step}" if w.kind in ("step", "poststep") and w.step else w.kind


def _value(ty: Ty | None) -> str:
    return "-" if ty is None else f"{ty.space} {'x'.join(map(str, ty.shape))}"


def si(n: int) -> str:
    """A MAC count for people: 3.80 G, 555 M, 12.3 k (three significant digits)."""
    for scale, unit in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if n >= scale:
            return (f"{n / scale:#.3g}".rstrip(".") if n / scale < 100 else f"{n / scale:.0f}") + unit
    return str(n)
