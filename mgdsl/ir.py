"""The IR: operator instances (one per sharing scope) and the unrolled, typed dataflow graph."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from .diagnostics import Span

KLASS_ORDER = {"linear": 0, "affine": 1, "nonlinear": 2}


@dataclass(frozen=True)
class Ty:
    """A value's type: its space, grid level (0 = input domain, None = pooled vector), channels, size."""
    space: str
    level: int | None
    channels: int
    height: int | None = None
    width: int | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        if self.height is None:
            return (self.channels,)
        return (self.channels, self.height, self.width)

    def describe(self) -> str:
        where = "pooled" if self.level is None else ("input" if self.level == 0 else f"grid {self.level}")
        size = "" if self.height is None else f", {self.height}x{self.width}"
        return f"{self.space} ({self.channels} channels, {where}{size})"


@dataclass
class Layer:
    """One primitive inside an operator instance; `ref` points at another instance (sharing)."""
    kind: str
    cin: int = 0
    cout: int = 0
    kernel: int = 1
    stride: int = 1
    groups: int = 1
    bias: bool = False
    pad: str = "zero"
    stencil: str | None = None
    omega: float | None = None
    init: float | None = None
    ref: str | None = None
    out_size: tuple[int, int] | None = None
    vector: bool = False  # acts on a pooled vector (BatchNorm1d rather than 2d)
    params: int = 0
    klass: str = "linear"
    in_ty: Ty | None = None   # the types at the instance's first use (later uses re-run the shape rule)
    out_ty: Ty | None = None


@dataclass
class Instance:
    """One operator instance = one nn.Module; every use of it shares its parameters."""
    label: str
    name: str
    index: tuple[int, ...]
    scope: tuple[str, ...]
    layers: list[Layer] = field(default_factory=list)
    in_ty: Ty | None = None
    out_ty: Ty | None = None
    params: int = 0
    klass: str = "linear"
    uses: int = 0
    span: Span | None = None
    def_text: str = ""
    template: list = field(default_factory=list, repr=False)  # the definition's parts (resolve.Part), untyped
    first_use: Span | None = None  # where it was typed: later uses that disagree point back here
    trained: bool = False  # it or an instance it references has trained parameters (passes.classify)
    assembled: bool = False  # a fixed channel-wise composition lowered as one exact 3x3 variable stencil

    @property
    def path(self) -> str:
        return ".".join([self.name, *map(str, self.index)])

    @property
    def fixed(self) -> bool:
        """No trained parameters, its own or through a reference (a Galerkin R A P over a trained A is not)."""
        return self.params == 0 and not self.trained and self.klass == "linear"


class Where(NamedTuple):
    """The equation that created a node: the renderer groups nodes by it."""
    kind: str  # init | step | poststep | coarsen | refine | output
    level: int
    step: int
    phase: str  # "down" (before the coarse grids) or "up" (after them, in a V/W cycle)


class Tag(NamedTuple):
    """The state a node is the value of: u^{level, step} in the down or up phase (the paper's notation)."""
    state: str
    level: int
    phase: str
    step: int


class WrittenAssign(NamedTuple):
    """One assignment of the scheme as written, as a plain term (for the theorem checks)."""
    state: str
    index: str
    term: tuple


class WrittenEq(NamedTuple):
    """One equation as written: its step guard (None: every step) and its assignments."""
    guard: int | None
    assigns: list[WrittenAssign]


@dataclass
class Node:
    """A value in the unrolled graph: input, zero, apply (an instance), prim, add, sub, scale."""
    id: int
    op: str
    args: tuple[int, ...]
    ty: Ty
    inst: str | None = None
    prim: str | None = None
    coef: float | None = None
    tag: Tag | None = None  # the state this value is, if any
    where: Where | tuple = ()  # the equation that created it


def reachable(nodes: list[Node], roots) -> set[int]:
    """The nodes the roots depend on: the live part of the unrolled graph."""
    live, stack = set(), list(roots)
    while stack:
        n = stack.pop()
        if n not in live:
            live.add(n)
            stack.extend(nodes[n].args)
    return live


@dataclass(kw_only=True)  # twenty fields: every construction names them
class IR:
    name: str
    path: str
    params: dict
    input_name: str
    input_ty: Ty
    classes: int | None
    grids: int
    nu: list[int]
    post: list[int]
    cycle: str
    spaces: dict[str, list[int]]
    sizes: dict[int, tuple[int, int]]
    instances: dict[str, Instance]
    nodes: list[Node]
    output: int
    states: dict[tuple, int]
    state_names: list[str]
    warnings: list = field(default_factory=list)
    # the scheme as written, as plain terms (for the theorem checks): kind -> [WrittenEq]
    equations: dict = field(default_factory=dict)
    # which instance each written operator name resolved to: (kind, level, step) -> {name: label}
    bindings: dict = field(default_factory=dict)
    source: object = None  # the diagnostics.Source it came from, for warnings
    max_params: int | None = None  # the parameter budget it was checked against (recompile keeps it)

    @property
    def total_params(self) -> int:
        return sum(i.params for i in self.instances.values())

    @property
    def output_ty(self) -> Ty:
        return self.nodes[self.output].ty

    def text(self) -> str:
        """The IR as text, like torch.fx's print(graph): instances (one module each), then the live graph."""
        from .prims import BY_LAYER
        head = (f"ir {self.name} ({self.path}): input {_shape(self.input_ty)}, {self.grids} grids "
                f"{' '.join(f'{h}x{w}' for h, w in self.sizes.values())}, nu {self.nu}, cycle {self.cycle}")
        out = [head, "", "instances:"]
        for label, inst in self.instances.items():
            parts = []
            for lay in reversed(inst.layers):  # written order: applied right to left
                if lay.kind == "ref":
                    parts.append(lay.ref)
                else:
                    p = BY_LAYER[lay.kind]
                    opts = [f"k{lay.kernel}"] if lay.kind in ("conv", "deconv") else []
                    opts += [f"stride {lay.stride}"] if lay.stride != 1 else []
                    opts += [f"groups {lay.groups}"] if lay.groups != 1 else []
                    opts += ["bias"] if lay.bias else []
                    opts += [f"pad {lay.pad}"] if lay.pad != "zero" else []
                    opts += [lay.stencil] if lay.stencil else []
                    opts += [f"ref {lay.ref}"] if lay.ref else []
                    parts.append(f"{p.layer}({lay.cin}->{lay.cout}{''.join(', ' + o for o in opts)})")
            flags = " assembled" if inst.assembled else ""
            io = f"{_shape(inst.in_ty)} -> {_shape(inst.out_ty)}" if inst.in_ty else "untyped"
            out.append(f"  {label:<12} = {' . '.join(parts) or 'id'}  : {io}, {inst.klass}, "
                       f"{inst.params:,} params, {inst.uses} uses{flags}")
        out += ["", "graph:"]
        for nid in sorted(reachable(self.nodes, [self.output])):
            n = self.nodes[nid]
            args = ", ".join(f"%{a}" for a in n.args)
            rhs = {"input": self.input_name, "zero": "0", "apply": f"{n.inst}({args})", "prim": f"{n.prim}({args})",
                   "add": " + ".join(f"%{a}" for a in n.args), "sub": " - ".join(f"%{a}" for a in n.args),
                   "scale": f"{n.coef!r} * {args}"}[n.op]
            tag = f"  # {n.tag.state}^{{{n.tag.level},{n.tag.step}}} {n.tag.phase}" if n.tag else ""
            out.append(f"  %{nid:<4} = {rhs:<28} : {_shape(n.ty)}{tag}")
        out.append(f"  return %{self.output}")
        return "\n".join(out)

    def verify(self) -> "IR":
        """Raise IRError listing every broken invariant; a pass must leave the IR valid."""
        bad = []
        for k, n in enumerate(self.nodes):
            if n.id != k:
                bad.append(f"node {k} has id {n.id}")
            if any(not 0 <= a < k for a in n.args):
                bad.append(f"node {k} reads a later or missing node {n.args}")
            arity = {"input": 0, "zero": 0, "apply": 1, "prim": 1, "scale": 1, "add": 2, "sub": 2}.get(n.op)
            if arity is None or len(n.args) != arity:
                bad.append(f"node {k}: {n.op} with {len(n.args)} arguments")
            if n.op in ("add", "sub") and any(self.nodes[a].ty != n.ty for a in n.args if a < k):
                bad.append(f"node {k}: {n.op} of values of other types")
            if n.ty.level is not None and n.ty.level >= 1 and n.ty.height is not None \
                    and (n.ty.height, n.ty.width) != tuple(self.sizes.get(n.ty.level, ())):
                bad.append(f"node {k} is on grid {n.ty.level} with size {n.ty.height}x{n.ty.width}")
        live = reachable(self.nodes, [self.output]) if 0 <= self.output < len(self.nodes) else set()
        if not live:
            bad.append(f"the output {self.output} is not a node")
        applied = {self.nodes[n].inst for n in live if self.nodes[n].op == "apply"}
        for label in applied - set(self.instances):
            bad.append(f"the graph applies {label}, which is not an instance")
        for label, inst in self.instances.items():
            if inst.label != label:
                bad.append(f"instance {label} is labelled {inst.label}")
            if inst.params != sum(lay.params for lay in inst.layers):
                bad.append(f"{label}: {inst.params} params but its layers have {sum(l.params for l in inst.layers)}")
            for lay in inst.layers:
                if lay.ref and lay.ref not in self.instances:
                    bad.append(f"{label} references {lay.ref}, which is not an instance")
            if inst.layers and inst.in_ty is None:
                bad.append(f"{label} has layers but no type")
            if inst.assembled and not inst.fixed:
                bad.append(f"{label} is assembled but not a fixed linear operator")
        for key, nid in self.states.items():
            if not 0 <= nid < len(self.nodes):
                bad.append(f"state {key} is node {nid}, which does not exist")
        if bad:
            raise IRError(bad)
        return self


class IRError(AssertionError):
    """The IR broke an invariant: a compiler bug, never a spec error."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems[:10]))
        self.problems = problems


def shape_text(shape) -> str:
    """(3, 32, 32) as "3 x 32 x 32", for messages."""
    return " x ".join(map(str, shape))


def _shape(ty: Ty | None) -> str:
    if ty is None:
        return "?"
    where = "pooled" if ty.level is None else f"@{ty.level}"
    return f"{ty.space} {'x'.join(map(str, ty.shape))} {where}"
