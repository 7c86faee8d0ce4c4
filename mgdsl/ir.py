"""The IR: operator instances (one per sharing scope) and the unrolled, typed dataflow graph."""
from __future__ import annotations

from dataclasses import dataclass, field

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
    template: list = field(default_factory=list, repr=False)  # the definition's parts, before typing
    first_use: Span | None = None  # where it was typed: later uses that disagree point back here
    assembled: bool = False  # a fixed channel-wise composition lowered as one exact 3x3 variable stencil

    @property
    def delta(self) -> int | None:
        """How many grids the operator moves its input down (+1 for stride 2, -1 for a prolongation)."""
        if self.in_ty is None or self.in_ty.level is None or self.out_ty.level is None:
            return None
        return self.out_ty.level - self.in_ty.level

    @property
    def path(self) -> str:
        return ".".join([self.name, *map(str, self.index)])

    @property
    def fixed(self) -> bool:
        return self.params == 0 and self.klass == "linear"


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
    tag: tuple | None = None
    where: tuple = ()  # (equation kind, level, step, phase) that created it: the renderer groups by it


def reachable(nodes: list[Node], roots) -> set[int]:
    """The nodes the roots depend on: the live part of the unrolled graph."""
    live, stack = set(), list(roots)
    while stack:
        n = stack.pop()
        if n not in live:
            live.add(n)
            stack.extend(nodes[n].args)
    return live


@dataclass
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
    # the scheme as written, as plain terms (for the theorem checks): kind -> [(guard, [(state, index, term)])]
    equations: dict = field(default_factory=dict)
    # which instance each written operator name resolved to: (kind, level, step) -> {name: label}
    bindings: dict = field(default_factory=dict)
    source: object = None  # the diagnostics.Source it came from, for warnings

    @property
    def total_params(self) -> int:
        return sum(i.params for i in self.instances.values())

    @property
    def output_ty(self) -> Ty:
        return self.nodes[self.output].ty
