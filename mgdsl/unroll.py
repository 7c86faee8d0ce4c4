"""Stage 3 of elaboration: unroll the iteration scheme (init, steps, coarsen, refine, output) over every grid
and step into a typed dataflow graph. Expressions are evaluated in a Ctx that says which values they may
read; operators are bound by the Binder and typed by the Typer as they are applied."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from . import syntax as S
from .diagnostics import Fail, Reporter, Span, SpecError, did_you_mean
from .ir import Node, Tag, Ty, Where, reachable, shape_text
from .passes import apply_folds_to_zero
from .prims import INLINE, PRIMS
from .resolve import LEVEL_VARS, Binder, Resolved, grid_sizes, index_values
from .typecheck import Typer

MAX_NODES = 200_000  # values in the unrolled graph


def idx_text(index) -> str:
    """An index as written: [l+1, i-2]."""
    if not index:
        return ""
    parts = [ix.var + (f"{ix.offset:+d}" if ix.offset else "") if ix.var else str(ix.offset) for ix in index]
    return "[" + ", ".join(parts) + "]"


@dataclass
class Ctx:
    """Where an expression is evaluated: which equation, which level and step, and what it may read."""
    kind: str
    level: int
    env: dict
    read: Callable  # (Var, Ctx) -> node id
    span: Span | None = None


@dataclass(frozen=True)
class GridUse:
    """An application of a grid-indexed instance in an equation: on which grid, and whether written bare."""
    label: str
    level: int
    kind: str
    line_level: int
    bare: bool
    span: Span | None


@dataclass
class Graph:
    """The dataflow graph under construction: hash-consed (the same pure computation on the same values is
    one node) and zero-folded as it is built (passes.apply_folds_to_zero and the rules in Unroller.ev)."""
    rep: Reporter
    binder: Binder
    nodes: list[Node] = field(default_factory=list)
    where: Where = Where("init", 1, 0, "down")
    limit_span: Span | None = None  # where a graph-size error points (the cycle or grids line)
    _zero: dict = field(default_factory=dict)
    _cse: dict = field(default_factory=dict)

    def node(self, op: str, args, ty: Ty, **kw) -> int:
        key = (op, tuple(args), kw.get("inst"), kw.get("prim"), kw.get("coef"))
        pure = op != "apply" or not any(lay.kind == "bn" for lay in self._flat_layers(kw["inst"]))
        if pure and op not in ("input", "zero") and key in self._cse:
            return self._cse[key]
        if len(self.nodes) >= MAX_NODES:
            self.rep.error(f"the unrolled scheme has more than {MAX_NODES:,} values", self.limit_span,
                           "fewer grids, fewer smoothing steps, or `cycle V` rather than `cycle W`")
            raise SpecError(self.rep.diags, self.rep.source)
        n = Node(len(self.nodes), op, tuple(args), ty, where=self.where, **kw)
        self.nodes.append(n)
        if pure:
            self._cse[key] = n.id
        return n.id

    def _flat_layers(self, label: str):
        for lay in self.binder.instances[label].layers:
            yield lay
            if lay.ref:
                yield from self._flat_layers(lay.ref)

    def zero(self, ty: Ty) -> int:
        if ty not in self._zero:
            self._zero[ty] = self.node("zero", (), ty)
        return self._zero[ty]

    def is_zero(self, nid: int) -> bool:
        return self.nodes[nid].op == "zero"

    def ty(self, nid: int) -> Ty:
        return self.nodes[nid].ty


@dataclass
class Unroller:
    """Runs the scheme: the down pass (and, for `cycle V`/`W`, the refinement and post-smoothing)."""
    r: Resolved
    rep: Reporter
    binder: Binder
    typer: Typer
    g: Graph = None
    states: dict = field(default_factory=dict)
    bindings: dict = field(default_factory=dict)
    grid_uses: list[GridUse] = field(default_factory=list)
    _rebased: bool = False

    def __post_init__(self):
        line = self.r.settings.get("cycle") or self.r.settings.get("grids") or self.r.model
        self.g = Graph(self.rep, self.binder, limit_span=line.span)

    def run(self) -> int:
        """The output node; every error found is in the reporter."""
        final, out_level = self.schedule()
        r = self.r
        self.g.where = Where("output", out_level, 0, "down")
        out = self.rep.guard(self.ev, r.output.expr, Ctx("output", out_level, {"l": out_level, "J": r.J},
                                                          self.reader_final(final), r.output.span))
        # judged on a graph built without errors only: a failed term (an undefined operator) cuts paths too
        cut = out is not None and not self.rep.diags and \
            not any(self.g.nodes[n].op == "input" for n in reachable(self.g.nodes, [out]))
        if cut:
            self.rep.error(f"the output does not depend on the input {r.input_name}: every path from "
                           f"{r.input_name} to it is cut (e.g. by applications to zero)", r.output.span,
                           "with `u = 0` at the start and `smooth 0` u stays 0: smooth at least once on some grid "
                           "or output something computed from the input" if not any(r.nu) else
                           "output something computed from the input")
        if out is not None and r.classes is not None and self.g.ty(out).shape != (r.classes,):
            self.rep.error(f"the output is {shape_text(self.g.ty(out).shape)}, but `classes {r.classes}` says the model ends in {r.classes} "
                           "class scores", r.output.span, "end in a classifier, e.g. `output fc(avgpool(u))` with "
                           "`fc = linear(u -> classes)`, or drop `classes` for a model whose output is a grid "
                           "function")
        self.check_bare_uses()
        self.rep.stop_if_any()
        return out

    # ------------------------------------------------------------ expressions
    def ev(self, e, ctx: Ctx) -> int:
        g = self.g
        if isinstance(e, S.Var):
            return ctx.read(e, ctx)
        if isinstance(e, S.Literal):
            raise Fail(f"a bare number ({e.value:g}) has no type here; only 0 may stand for a state", e.span,
                       "write `0` on the right of an assignment, or `c * value`")
        if isinstance(e, S.Scaled):
            a = self.ev(e.arg, ctx)
            if g.is_zero(a) or e.coef == 0:
                return g.zero(g.ty(a))
            return a if e.coef == 1 else g.node("scale", (a,), g.ty(a), coef=e.coef)
        if isinstance(e, S.BinOp):
            a, b = self.ev(e.left, ctx), self.ev(e.right, ctx)
            ta, tb = g.ty(a), g.ty(b)
            verb = "add" if e.op == "+" else "subtract"
            if ta.space != tb.space:
                raise Fail(f"cannot {verb} {ta.space} and {tb.space}: they live in different spaces", e.span,
                           f"left is {ta.describe()}, right is {tb.describe()}; apply an operator that maps "
                           f"{tb.space} -> {ta.space}")
            if (ta.level, ta.height, ta.width) != (tb.level, tb.height, tb.width):
                raise Fail(f"grid mismatch: cannot {verb} values on different grids", e.span,
                           f"left is {ta.describe()}, right is {tb.describe()}")
            if ta.channels != tb.channels:
                raise Fail(f"channel mismatch: {ta.channels} vs {tb.channels} channels", e.span)
            if g.is_zero(b):
                return a
            if g.is_zero(a):
                return b if e.op == "+" else g.node("scale", (b,), tb, coef=-1.0)
            return g.node("add" if e.op == "+" else "sub", (a, b), ta)
        if isinstance(e, S.Apply):
            return self.apply(e, ctx)
        if isinstance(e, S.Sum):
            if e.bound not in ctx.env:
                raise Fail(f"sum bound '{e.bound}' is not bound here", e.span)
            acc = None
            for j in range(ctx.env[e.bound]):
                v = self.ev(e.body, Ctx(ctx.kind, ctx.level, dict(ctx.env, **{e.var: j}), ctx.read, ctx.span))
                if acc is None:
                    acc = v
                elif not g.is_zero(v):
                    acc = v if g.is_zero(acc) else g.node("add", (acc, v), g.ty(acc))
            if acc is None:
                raise Fail("empty sum", e.span)
            return acc
        raise Fail("unsupported expression", getattr(e, "span", None))

    def apply(self, e: S.Apply, ctx: Ctx) -> int:
        """N(x): an inline primitive, or an operator instance bound by the binder and typed by the typer."""
        g, defs = self.g, self.r.defs
        x = self.ev(e.arg, ctx)
        tx = g.ty(x)
        if e.name in INLINE and e.name not in defs:
            if e.index:
                raise Fail(f"{e.name} is a primitive and takes no index", e.span)
            ty = self.typer.inline(e.name, tx, e.span)
            if e.name == "id":
                return x
            if e.name == "relu" and g.is_zero(x):
                return g.zero(ty)
            return g.node("prim", (x,), ty, prim=e.name)
        if e.name in PRIMS:
            raise Fail(f"{e.name} has parameters or options; define it as an operator", e.span,
                       f"e.g. `N[l] = {e.name}(...)` and use N(...)")
        if e.name not in defs:
            raise Fail(f"undefined operator '{e.name}'", e.span, did_you_mean(e.name, list(defs) + sorted(INLINE)))
        vals = index_values(e.index, ctx.env, e.span) if e.index else \
            self.binder.implicit_index(e.name, ctx.env, e.span)
        inst = self.binder.instance(e.name, vals, e.span)
        w = g.where
        self.bindings.setdefault((w.kind, w.level, w.step), {})[e.name + idx_text(e.index)] = inst.label
        ty = self.typer.apply_instance(inst, tx, e.span)
        if "l" in inst.scope and tx.level:
            self.grid_uses.append(GridUse(inst.label, tx.level, ctx.kind, ctx.level, not e.index, e.span))
        if g.is_zero(x) and apply_folds_to_zero(inst):
            return g.zero(ty)
        return g.node("apply", (x,), ty, inst=inst.label)

    def check_bare_uses(self) -> None:
        """A bare operator is the one of the line's grid (A in a coarsen line is A[l]); applying it to another
        grid while the same instance also acts on its own grid shares one grid's weights with the next."""
        levels: dict[str, set] = {}
        for u in self.grid_uses:
            levels.setdefault(u.label, set()).add(u.level)
        wrong: dict[tuple, list[GridUse]] = {}  # one error per place and offset, however many grids it is on
        for u in self.grid_uses:
            if u.bare and u.level != u.line_level and len(levels[u.label]) > 1:
                wrong.setdefault((u.span, u.label.split("[")[0], u.level - u.line_level), []).append(u)
        for (span, name, off), uses in wrong.items():
            u = uses[0]
            if len({x.line_level for x in uses}) == 1:  # one grid (a W-cycle may visit it twice)
                self.rep.error(f"{name} without an index is {u.label}, the operator of grid {u.line_level} (this "
                               f"`{u.kind}` line's grid), which also acts on grid {u.line_level}; here it is "
                               f"applied to grid {u.level}", span,
                               f"write {name}[l{off:+d}](...) for the operator of grid {u.level}, or index it "
                               f"explicitly to share it")
                continue
            grids = ", ".join(dict.fromkeys(str(x.line_level) for x in uses))
            self.rep.error(f"{name} without an index is {name}[l], the operator of grid l (this `{u.kind}` line's "
                           f"grid), which also acts on grid l; here it is applied to grid l{off:+d} (l = {grids})",
                           span, f"write {name}[l{off:+d}](...) for the operator of grid l{off:+d}, or index it "
                                 f"explicitly to share it")

    # ------------------------------------------------------------ reading states
    def split_index(self, var: S.Var, ctx: Ctx) -> tuple[int | None, int | None]:
        """`u[l+1, 0]`: indices over l/J select the grid, the others the step."""
        level = step = None
        for ix in var.index or ():
            v = index_values((ix,), ctx.env, var.span)[0]
            if ix.var in LEVEL_VARS:
                if level is not None:
                    raise Fail(f"{var.name} has two grid indices", var.span)
                level = v
            else:
                if step is not None:
                    raise Fail(f"{var.name} has two step indices", var.span)
                step = v
        return level, step

    def check_state(self, var: S.Var) -> None:
        r = self.r
        if var.name not in r.spaces and var.name != r.input_name:
            raise Fail(f"undefined state '{var.name}'", var.span,
                       did_you_mean(var.name, list(r.spaces) + [r.input_name]))

    def reader_steps(self, its: list[dict]):
        """Reads inside a step: u is the previous iterate, u[i-2] / u[j] / u[0] earlier ones."""
        def read(var: S.Var, ctx: Ctx) -> int:
            self.check_state(var)
            level, step = self.split_index(var, ctx)
            if level not in (None, ctx.level):
                raise Fail(f"{var.name}[...] reads grid {level} inside a `{ctx.kind}` on grid {ctx.level}", var.span)
            i = ctx.env.get("i", len(its))
            k = i - 1 if step is None else step
            if k < 0 or k >= len(its):
                raise Fail(f"{var.name}{idx_text(var.index)} at i={i} reads iterate {k}, which does not exist",
                           var.span, f"add a rule for the first steps, e.g. `{ctx.kind}[{i}] ...`")
            if var.name not in its[k]:
                raise Fail(f"{var.name} has no value on grid {ctx.level}", var.span)
            return its[k][var.name]
        return read

    def reader_final(self, vals: dict, extra: dict | None = None):
        """Reads after smoothing (coarsen, refine, output): u is the last iterate; extra[(level, step)] more."""
        def read(var: S.Var, ctx: Ctx) -> int:
            self.check_state(var)
            level, step = self.split_index(var, ctx)
            if level is None and step is None:
                if var.name not in vals:
                    raise Fail(f"{var.name} has no value here", var.span)
                return vals[var.name]
            key = (level, step)
            if extra and key in extra and var.name in extra[key]:
                return extra[key][var.name]
            raise Fail(f"{var.name}[...] is not available in `{ctx.kind}`", var.span,
                       "in coarsen use u[l+1] (defined earlier in the same line); in refine u[l+1] and u[l+1, 0]")
        return read

    # ------------------------------------------------------------ equations
    def state_ty(self, name: str, level: int) -> Ty:
        return Ty(name, level, self.r.spaces[name][level - 1], *self.r.sizes[level])

    def assign(self, a: S.Assign, ctx: Ctx, level: int) -> int:
        r, g = self.r, self.g
        if a.name not in r.spaces:
            raise Fail(f"'{a.name}' is not a declared space", a.span,
                       did_you_mean(a.name, r.spaces) or "declare it with `space`")
        if isinstance(a.expr, S.Literal) and a.expr.value == 0:
            return g.zero(self.state_ty(a.name, level))
        v = self.ev(a.expr, ctx)
        got = g.ty(v)
        if ctx.kind == "init" and got.level == 0 and got.height is not None:
            v = self.rebase(v)  # the data initialisation defines grid 1
            got = g.ty(v)
        want = self.state_ty(a.name, level)
        if got.space != a.name:
            raise Fail(f"{a.name} is assigned a value in space {got.space}", a.expr.span,
                       f"the right-hand side is {got.describe()}")
        if (got.level, got.height, got.width) != (level, *r.sizes[level]):
            raise Fail(f"{a.name} on grid {level} is assigned a value on another grid", a.expr.span,
                       f"the right-hand side is {got.describe()}; expected grid {level} "
                       f"({r.sizes[level][0]}x{r.sizes[level][1]})")
        if got.channels != want.channels:
            raise Fail(f"{a.name} on grid {level} has {want.channels} channels, the value has {got.channels}",
                       a.expr.span)
        return v

    def rebase(self, v: int) -> int:
        """The first init value fixes grid 1's size (an ImageNet stem shrinks the input before grid 1)."""
        ty = self.g.ty(v)
        if not self._rebased:
            self._rebased = True
            self.r.sizes = grid_sizes(ty.height, ty.width, self.r.J)
        self.g.nodes[v].ty = Ty(ty.space, 1, ty.channels, ty.height, ty.width)
        return v

    def run_eq(self, eq: S.Equation, ctx: Ctx, level: int, into: dict) -> None:
        for a in eq.assigns:
            try:
                into[a.name] = self.assign(a, ctx, level)
            except Fail as f:
                self.rep.add(f, level)
                if a.name in self.r.spaces:
                    into[a.name] = self.g.zero(self.state_ty(a.name, level))

    def smooth(self, level: int, start: dict, count: int, kind: str, phase: str) -> list[dict]:
        """`count` steps on one grid; every iterate is tagged u^{l,i} for the theorem checks and the renderer."""
        r = self.r
        its = [start]
        eqs = r.eqs.get(kind) or r.eqs.get("step", {})
        for i in range(1, count + 1):
            eq = eqs.get(i) or eqs.get(None)
            if eq is None:
                self.rep.error(f"no `{kind}` equation for step {i}", r.model.span)
                break
            new = dict(its[-1])
            self.g.where = Where(kind, level, i, phase)
            ctx = Ctx(kind, level, {"l": level, "i": i, "J": r.J}, self.reader_steps(its), eq.span)
            self.run_eq(eq, ctx, level, new)
            its.append(new)
        for i, vals in enumerate(its):
            for s, nid in vals.items():
                tag = Tag(s, level, phase, i)
                self.states.setdefault(tuple(tag), nid)
                self.g.nodes[nid].tag = self.g.nodes[nid].tag or tag
        return its

    def init(self) -> dict:
        r, g = self.r, self.g
        vals = {}
        if r.input_ty.level == 1:
            vals[r.input_name] = g.node("input", (), r.input_ty)
        x = vals.get(r.input_name) or g.node("input", (), r.input_ty)
        eq = r.eqs.get("init", {}).get(None)
        if eq:
            def read(var, ctx):
                if var.name == r.input_name and not var.index:
                    return x
                if var.name in vals and not var.index:
                    return vals[var.name]
                self.check_state(var)
                raise Fail(f"{var.name} has no value yet in `init`", var.span, "assign it earlier in the init line")
            self.run_eq(eq, Ctx("init", 1, {"l": 1, "J": r.J}, read, eq.span), 1, vals)
        missing = [s for s in r.state_names if s not in vals]
        if missing:
            self.rep.error(f"`init` does not set {', '.join(missing)}", eq.span if eq else r.model.span,
                           f"add e.g. `; {missing[0]} = 0`")
            for s in missing:
                vals[s] = g.zero(self.state_ty(s, 1))
        return vals

    def coarsen(self, level: int, its: list[dict]) -> dict | None:
        """Grid level -> level+1; None (with the error reported) when there is no coarsen equation for it."""
        r = self.r
        eqs = r.eqs.get("coarsen", {})
        eq = eqs.get(level) or eqs.get(None)
        if eq is None:
            what = "no `coarsen` equation" + (f" for grid {level}" if eqs else "")
            where = r.settings.get("cycle") or r.settings.get("grids")
            self.rep.error(f"the model has {r.J} grids but {what}", where.span if where else r.model.span,
                           "e.g. `coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])`, or `grids 1`")
            return None
        new: dict = {}
        self.g.where = Where("coarsen", level, 0, "down")
        ctx = Ctx("coarsen", level, {"l": level, "J": r.J},
                  self.reader_final(its[-1], {(level + 1, None): new, **{(None, k): v for k, v in enumerate(its)}}),
                  eq.span)
        for a in eq.assigns:
            try:
                lvl = index_values(a.index, ctx.env, a.span)[0] if a.index else None
            except Fail as f:
                self.rep.add(f)
                continue
            if lvl != level + 1 or len(a.index or ()) != 1:
                self.rep.error(f"coarsen assigns the next grid: write {a.name}[l+1] = ...", a.span)
                continue
            try:
                new[a.name] = self.assign(a, ctx, level + 1)
            except Fail as f:
                self.rep.add(f, level)
                if a.name in r.spaces:
                    new[a.name] = self.g.zero(self.state_ty(a.name, level + 1))
        missing = [s for s in r.state_names if s not in new]
        if missing:
            self.rep.error(f"`coarsen` does not set {missing[0]}[l+1]", eq.span,
                           f"add `; {missing[0]}[l+1] = 0` for a zero start")
            for s in missing:
                new[s] = self.g.zero(self.state_ty(s, level + 1))
        return new

    def schedule(self) -> tuple[dict, int]:
        """The final states and the grid the output is read on."""
        r = self.r
        start = self.init()
        if r.cycle == "none":
            cur = start
            for level in range(1, r.J + 1):
                its = self.smooth(level, cur, r.nu[level - 1], "step", "down")
                if level < r.J:
                    cur = self.coarsen(level, its)
                    if cur is None:
                        return its[-1], level
            return its[-1], r.J
        if "refine" not in r.eqs:
            self.rep.error(f"`cycle {r.cycle}` needs a `refine` equation", r.settings["cycle"].span,
                           "e.g. `refine u = u + P(u[l+1])`")
            self.rep.stop_if_any()
        return self.visit(1, start, 2 if r.cycle == "W" else 1), 1

    def visit(self, level: int, start: dict, gamma: int) -> dict:
        """One V (gamma 1) or W (gamma 2) visit of grid `level` and the coarser grids."""
        r = self.r
        its = self.smooth(level, start, r.nu[level - 1], "step", "down")
        if level == r.J:
            return its[-1]
        coarse0 = self.coarsen(level, its)
        if coarse0 is None:
            return its[-1]
        cur = coarse0
        for _ in range(gamma):
            final = self.visit(level + 1, cur, gamma)
            cur = {**coarse0, **{s: final[s] for s in r.iterated if s in final}}
        eq = r.eqs["refine"].get(level) or r.eqs["refine"].get(None)
        if eq is None:
            self.rep.error(f"no `refine` equation for grid {level}", r.settings["cycle"].span,
                           "add a general one, e.g. `refine u = u + P(u[l+1])`")
            return its[-1]
        new = dict(its[-1])
        self.g.where = Where("refine", level, 0, "up")
        ctx = Ctx("refine", level, {"l": level, "J": r.J},
                  self.reader_final(its[-1], {(level + 1, None): final, (level + 1, 0): coarse0}), eq.span)
        self.run_eq(eq, ctx, level, new)
        return self.smooth(level, new, r.post[level - 1], "poststep", "up")[-1]
