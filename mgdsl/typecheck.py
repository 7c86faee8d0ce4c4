"""Stage 2 of elaboration: type operator instances. The first use of an instance types its parts by the
primitive table's shape rules (prims.PRIMS); every later use re-runs those rules at its own input and
must agree with the first. Reads the Resolved spec and the Binder's instances; builds no graph."""
from __future__ import annotations

from dataclasses import dataclass

from .diagnostics import Fail, Span
from .ir import Instance, Layer, Ty
from .prims import BY_LAYER, PRIMS, UP, Call, PrimError, layer_at
from .prims import SpaceMismatch as PrimSpaceMismatch
from .resolve import Binder, Part, Resolved


class SpaceMismatch(Exception):
    """An operator's first part gets a value of the wrong space: reported at the use, not the definition."""


@dataclass
class _Grid:
    """The typing rules' view of the model (prims.Grid): errors are located at the primitive's span."""
    typer: "Typer"
    span: Span | None

    @property
    def J(self) -> int:
        return self.typer.r.J

    @property
    def sizes(self) -> dict:
        return self.typer.r.sizes

    def chan(self, space: str, level: int | None) -> int:
        return self.typer.chan(space, level, self.span)

    def apply(self, label: str, x: Ty) -> Ty:
        """An operator a primitive reads, applied to x; if that fails, the instances this attempt typed are
        untyped again: a wrong use (`inverse(A[J])` on grid 1) must not fix the size of A[J]'s parts."""
        untyped = [i for i in self.typer.instances.values() if i.in_ty is None]
        try:
            return self.typer.apply_instance(self.typer.instances[label], x, self.span)
        except Fail:
            for inst in untyped:
                inst.in_ty = inst.first_use = None
            raise

    def template(self, label: str) -> list[Part]:
        return self.typer.instances[label].template

    def home(self, label: str) -> int | None:
        """The grid an instance indexed by grid belongs to (A[7] of `A[l]`, `A[J]` or `A[7]`), else None."""
        inst = self.typer.instances[label]
        by_grid = inst.scope and inst.index and (inst.scope[0] in ("l", "J") or inst.scope[0].isdigit())
        return inst.index[0] if by_grid else None


@dataclass
class Typer:
    """Types instances on demand, as the unrolling applies them."""
    r: Resolved
    binder: Binder

    @property
    def instances(self) -> dict[str, Instance]:
        return self.binder.instances

    def chan(self, space: str, level: int | None, span) -> int:
        """The channel count of a space on a grid (the input and `classes` have one count)."""
        r = self.r
        if space == "classes":
            if r.classes is None:
                raise Fail("the model maps to classes but declares no `classes N`", span)
            return r.classes
        if space == r.input_name and space not in r.spaces:
            return r.input_ty.channels
        if level is None or level < 1:
            level = 1
        if level > r.J:
            raise Fail(f"{space} on grid {level}, but the model has {r.J} grids", span)
        return r.spaces[space][level - 1]

    def apply_instance(self, inst: Instance, x: Ty, span) -> Ty:
        """The type of `inst(x)`: the first use types the layers; a later use must agree with it."""
        if inst.in_ty is None:
            inst.in_ty, inst.first_use = x, span
            inst.layers, inst.params = [], 0
            y = x
            try:
                for part in inst.template:
                    try:
                        lay, y = self.type_part(part, y)
                    except SpaceMismatch as e:
                        if y.space == x.space:  # the operator itself gets the wrong space: point at the use
                            where = f"line {inst.span.line}: {inst.def_text}" if inst.span else inst.def_text
                            raise Fail(f"{inst.label} {e.args[0]}", span,
                                       f"{inst.label} is defined at {where}") from None
                        raise Fail(f"inside {inst.label}: {e.args[0]}", part.span,
                                   f"the value reaching it is {y.describe()}") from None
                    inst.layers.append(lay)
                    inst.params += lay.params
            except Fail:
                inst.in_ty = inst.first_use = None  # untyped again: a later, correct use may still type it
                raise
            inst.out_ty = y
            return y
        if inst.in_ty.space != x.space:
            raise Fail(f"{inst.label} maps {inst.in_ty.space} -> {inst.out_ty.space} but is applied to {x.space}", span,
                       f"its input here is {x.describe()}")
        if (inst.in_ty.channels, inst.in_ty.height is None) != (x.channels, x.height is None):
            raise Fail(f"{inst.label} is one shared instance, first applied to {inst.in_ty.describe()}, "
                       f"here to {x.describe()}", span,
                       f"index it (e.g. {inst.name}[l]) to get one instance per grid")
        return self.reapply(inst, x, span)

    def reapply(self, inst: Instance, x: Ty, span) -> Ty:
        """A later use: run the typed layers' shape rules at x; a layer built for one size must get that size."""
        if x == inst.in_ty:
            return inst.out_ty
        y = x
        for lay in inst.layers:
            if lay.kind == "ref":
                y = self.apply_instance(self.instances[lay.ref], y, span)
                continue
            p = BY_LAYER[lay.kind]
            if p.size_bound and (y.level, y.height, y.width) != (lay.in_ty.level, lay.in_ty.height, lay.in_ty.width):
                first = f" (line {inst.first_use.line})" if inst.first_use else ""
                raise Fail(f"{inst.label} is built for {lay.in_ty.describe()} at its first use{first}, but here it "
                           f"gets {y.describe()}", span,
                           f"its {p.name} lands on one grid's size: index it so that each grid gets its own "
                           f"instance, e.g. {inst.name}[l]")
            y = self.layer_at(lay, y, inst, span)
        return y

    def layer_at(self, lay: Layer, x: Ty, inst: Instance, span) -> Ty:
        """A typed layer's output at input x (prims.layer_at), checked against the grids and the spaces."""
        J = self.r.J
        if lay.out_ty.height is not None and x.height is None:
            raise Fail(f"{inst.label} needs a grid value but gets a pooled vector", span)
        if lay.kind in UP and (x.level or 0) < 2:
            raise Fail(f"{inst.label} maps grid {x.level} to the next finer grid, which does not exist", span)
        if lay.kind not in UP and lay.stride == 2 and x.level and x.level + 1 > J:
            raise Fail(f"{inst.label} maps grid {x.level} to grid {x.level + 1}, but the model has {J} grids", span)
        y = layer_at(lay, x, self.r.sizes)
        if y.level and self.is_state(lay.out_ty, span) and self.chan(y.space, y.level, span) != y.channels:
            raise Fail(f"{inst.label} gives {y.channels} channels of {y.space}, but {y.space} on grid {y.level} "
                       f"has {self.chan(y.space, y.level, span)}", span,
                       f"index it (e.g. {inst.name}[l]) to get one instance per grid")
        return y

    def is_state(self, t: Ty, span) -> bool:
        """Whether a first-use value had its space's channels on its grid: a split pair [X, -X] inside a
        composition has twice as many and is no state, so a later grid's count says nothing about it."""
        return bool(t.level) and t.space in self.r.spaces and self.chan(t.space, t.level, span) == t.channels

    def call(self, p, part: Part) -> Call:
        """A written primitive checked against its table entry: signature, operator arguments, options."""
        sig = "f -> u" if p.refs else "u -> f"  # a primitive reading A (jacobi, rbgs, inverse) inverts it: f -> u
        example = f"{p.name}({', '.join(['A[l]'] * p.refs + [sig] * p.sig)})"
        if p.sig and part.sig is None:
            raise PrimError(f"{p.name} needs a signature, e.g. {example}")
        if part.sig is not None and not p.sig:
            raise PrimError(f"{p.name} takes no signature: it keeps the space of its input", f"write {p.name}")
        if len(part.refs) != p.refs:
            raise PrimError(f"{p.name} takes {p.refs or 'no'} operator argument{'s' if p.refs != 1 else ''}, "
                            f"got {len(part.refs)}", f"e.g. {example}")
        return Call(p.name, part.sig, p.read_options(part.opts), part.refs)

    def type_part(self, part: Part, x: Ty) -> tuple[Layer, Ty]:
        """One part of a definition at input type x, by the primitive table's shape rule."""
        span = part.span
        if part.kind == "ref":
            ref = self.instances[part.ref]
            y = self.apply_instance(ref, x, span)
            return Layer("ref", x.channels, y.channels, ref=ref.label, klass="linear", in_ty=x, out_ty=y), y
        p = PRIMS[part.kind]
        try:
            c = self.call(p, part)
            if c.sig and x.space != c.sig[0]:
                raise SpaceMismatch(f"maps {c.sig[0]} -> {c.sig[1]} but is applied to {x.space}")
            lay, y = p.type(p, c, x, _Grid(self, span))
        except PrimSpaceMismatch as e:
            raise SpaceMismatch(str(e)) from None
        except PrimError as e:
            raise Fail(str(e), span, e.hint) from None
        lay.params, lay.klass, lay.in_ty, lay.out_ty = p.params(lay), p.klass(lay), x, y
        return lay, y

    def inline(self, name: str, x: Ty, span) -> Ty:
        """A parameter-free primitive applied inside an equation, e.g. relu(u) or avgpool2(u)."""
        _, y = self.type_part(Part(name, span), x)
        return y
