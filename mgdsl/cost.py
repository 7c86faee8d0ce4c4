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


def macs(ir: IR) -> Macs:
    """Multiply-accumulates per image of the lowered forward: every applied instance at each of its uses."""
    by = {label: 0 for label in ir.instances}
    grid: dict[tuple[str, int | None], tuple[Ty, Ty, int, int]] = {}

    def run(label: str, x: Ty) -> Ty:
        inst = ir.instances[label]
        if inst.assembled:  # one element-wise variable stencil
            y, n = inst.out_ty, 0
        else:
            y, n = own(inst, x)
        by[label] += n
        _, _, runs, total = grid.get((label, x.level), (x, y, 0, 0))
        grid[label, x.level] = (x, y, runs + 1, total + n)
        return y

    def own(inst, x: Ty) -> tuple[Ty, int]:
        """The instance's output type at input x, and its own MACs (a referenced instance counts its own)."""
        y, n = x, 0
        for lay in inst.layers:
            if lay.kind == "ref":
                y = run(lay.ref, y)
                continue
            if lay.kind == "sub_id":
                run(lay.ref, y)  # chi(x) - x: chi runs, and its MACs are chi's
            z = layer_at(lay, y, ir.sizes)
            n += BY_LAYER[lay.kind].macs(lay, y, z)
            y = z
        return y, n

    for n in sorted(reachable(ir.nodes, [ir.output])):
        node = ir.nodes[n]
        if node.op == "apply":
            run(node.inst, ir.nodes[node.args[0]].ty)
    return Macs(sum(by.values()), by, grid)


def si(n: int) -> str:
    """A MAC count for people: 3.80 G, 555 M, 12.3 k (three significant digits)."""
    for scale, unit in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if n >= scale:
            return (f"{n / scale:#.3g}".rstrip(".") if n / scale < 100 else f"{n / scale:.0f}") + unit
    return str(n)
