"""Compute cost from the IR, without torch: multiply-accumulates (MACs) per image, forward.

What counts is what torch.utils.flop_counter.FlopCounterMode counts (FLOPs / 2): convolutions, transposed
convolutions, linear layers and matrix products, at their dense cost as the lowering runs them -- trained
convolutions, the strided fixed stencils restrict and prolong (channel-wise convolutions) and inverse()
(a dense matrix product). Element-wise work is not counted: BN, ReLU, pooling, additions, scalar scales,
split/delta, jacobi, and the stride-1 fixed stencils (laplace, an assembled Galerkin operator), which the
lowering applies as sums of shifted copies."""
from __future__ import annotations

from dataclasses import dataclass

from .ir import IR, Ty, reachable
from .prims import BY_LAYER, layer_at


@dataclass(frozen=True)
class Macs:
    """MACs per image: the total, and per operator instance (label) summed over all its uses."""
    total: int
    by_instance: dict[str, int]


def macs(ir: IR) -> Macs:
    """Multiply-accumulates per image of the lowered forward: every applied instance at each of its uses."""
    by = {label: 0 for label in ir.instances}

    def run(label: str, x: Ty) -> Ty:
        inst = ir.instances[label]
        if inst.assembled:  # one element-wise variable stencil
            return inst.out_ty
        y = x
        for lay in inst.layers:
            if lay.kind == "ref":
                y = run(lay.ref, y)
                continue
            if lay.kind == "sub_id":
                run(lay.ref, y)  # chi(x) - x: chi runs, and its MACs are chi's
            z = layer_at(lay, y, ir.sizes)
            by[label] += BY_LAYER[lay.kind].macs(lay, y, z)
            y = z
        return y

    for n in sorted(reachable(ir.nodes, [ir.output])):
        node = ir.nodes[n]
        if node.op == "apply":
            run(node.inst, ir.nodes[node.args[0]].ty)
    return Macs(sum(by.values()), by)


def si(n: int) -> str:
    """A MAC count for people: 3.80 G, 555 M, 12.3 k (three significant digits)."""
    for scale, unit in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if n >= scale:
            return (f"{n / scale:#.3g}".rstrip(".") if n / scale < 100 else f"{n / scale:.0f}") + unit
    return str(n)
