"""AST to IR: resolve params, create operator instances by sharing scope, unroll the scheme, type every value."""
from __future__ import annotations

from dataclasses import dataclass, field

from . import syntax as S
from .diagnostics import Diagnostic, Source, Span, SpecError, did_you_mean
from .ir import IR, KLASS_ORDER, Instance, Layer, Node, Ty, reachable
from .passes import classify as classify_pass, mark_assembled
from .prims import BY_LAYER, INLINE, PRIMS, UP, Call, PrimError, ceil_half, layer_at
from .prims import SpaceMismatch as PrimSpaceMismatch

MAX_CHANNELS = 1 << 16
MAX_SIZE = 1 << 15
MAX_GRIDS = 24
MAX_STEPS = 256

LEVEL_VARS = {"l", "J"}
# operator names that would shadow an attribute of the lowered torch module
MODULE_ATTRS = {"forward", "forward_states", "train", "eval", "training", "to", "cuda", "cpu", "double", "float",
                "half", "bfloat16", "type", "apply", "state_dict", "load_state_dict", "parameters", "buffers",
                "children", "modules", "named_parameters", "named_buffers", "named_modules", "named_children",
                "zero_grad", "requires_grad_", "register_buffer", "register_parameter", "register_module",
                "add_module", "get_submodule", "get_parameter", "get_buffer", "extra_repr", "compile", "share_memory",
                "code", "instance", "input_shape", "output_shape", "spec_name", "state_keys", "dump_patches",
                "call_super_init", "ipu", "xpu", "mtia"}


class Fail(Exception):
    """One located error inside elaboration; caught per equation so that all errors are reported."""

    def __init__(self, message: str, span: Span | None, hint: str | None = None):
        super().__init__(message)
        self.diag = Diagnostic(message, span, hint)


class SpaceMismatch(Exception):
    """An operator's first layer gets a value of the wrong space: reported at the use, not the definition."""


def _idx_text(index) -> str:
    if not index:
        return ""
    parts = [ix.var + (f"{ix.offset:+d}" if ix.offset else "") if ix.var else str(ix.offset) for ix in index]
    return "[" + ", ".join(parts) + "]"


def term(e) -> tuple:
    """An AST expression as a plain tuple term, the form the theorem checks rewrite."""
    if isinstance(e, S.Var):
        return ("var", e.name + _idx_text(e.index))
    if isinstance(e, S.Apply):
        return ("app", e.name + _idx_text(e.index), term(e.arg))
    if isinstance(e, S.BinOp):
        return ("add" if e.op == "+" else "sub", term(e.left), term(e.right))
    if isinstance(e, S.Scaled):
        return ("scale", e.coef, term(e.arg))
    if isinstance(e, S.Literal):
        return ("const", e.value)
    if isinstance(e, S.Sum):
        return ("sum", e.var, e.bound, term(e.body))
    raise TypeError(e)


@dataclass
class _Grid:
    """The typing rules' view of the model (prims.Grid): errors are located at the primitive's span."""
    el: "Elaborator"
    span: Span | None

    @property
    def J(self) -> int:
        return self.el.J

    @property
    def sizes(self) -> dict:
        return self.el.sizes

    def chan(self, space: str, level: int | None) -> int:
        return self.el.chan(space, level, self.span)

    def apply(self, label: str, x: Ty) -> Ty:
        return self.el.apply_instance(self.el.instances[label], x, self.span)

    def template(self, label: str) -> list:
        return self.el.instances[label].template


@dataclass
class Ctx:
    """Where an expression is evaluated: which equation, which level and step, and what it may read."""
    kind: str
    level: int
    env: dict
    read: object  # callable(Var, level_index, step_index) -> node id
    span: Span | None = None


@dataclass
class Elaborator:
    model: S.Model
    source: Source
    overrides: dict
    diags: list[Diagnostic] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    instances: dict[str, Instance] = field(default_factory=dict)
    states: dict = field(default_factory=dict)
    _stack: list[str] = field(default_factory=list)
    _zero: dict = field(default_factory=dict)
    _cse: dict = field(default_factory=dict)
    _where: tuple = ("init", 1, 0, "down")
    bindings: dict = field(default_factory=dict)

    # ------------------------------------------------------------ errors
    def error(self, message: str, span: Span | None, hint: str | None = None) -> None:
        d = Diagnostic(message, span, hint)
        if not any(x.message == d.message and x.span == d.span for x in self.diags):
            self.diags.append(d)

    def guard(self, fn, *args):
        try:
            return fn(*args)
        except Fail as f:
            self.error(f.diag.message, f.diag.span, f.diag.hint)
            return None

    # ------------------------------------------------------------ settings
    def run(self) -> IR:
        items = self.model.items
        self.params = {}
        for it in items:
            if isinstance(it, S.Param):
                if it.name in self.params:
                    self.error(f"param '{it.name}' is defined twice", it.span)
                self.params[it.name] = it.value
        for name, value in self.overrides.items():
            if name not in self.params:
                hint = did_you_mean(name, self.params) or (
                    f"this spec's params: {', '.join(sorted(self.params))}" if self.params else
                    "this spec declares no `param`")
                self.error(f"-D {name}: the spec has no param '{name}'", None, hint)
            else:
                self.params[name] = value
        settings = {}
        for it in items:
            if isinstance(it, S.Setting):
                if it.key in settings:
                    self.error(f"'{it.key}' is given twice", it.span)
                settings[it.key] = it
        inputs = [it for it in items if isinstance(it, S.Input)]
        spaces = [d for it in items if isinstance(it, S.Spaces) for d in it.decls]
        if not inputs:
            raise SpecError([Diagnostic("the model has no `input` line", self.model.span,
                                        "add e.g. `input x : 3 x 32 x 32`")], self.source)
        inp = inputs[0]
        c, h, w = (self.guard(self.count, n, "input size", MAX_SIZE) for n in (inp.channels, inp.height, inp.width))
        self.classes = self.guard(self.count, settings["classes"].values[0], "classes", 1 << 20) \
            if "classes" in settings else None
        self.cycle = settings["cycle"].values[0] if "cycle" in settings else "none"
        if self.cycle not in ("none", "V", "W"):
            self.error(f"unknown cycle '{self.cycle}'", settings["cycle"].span, "use `cycle V` or `cycle W`")
            self.cycle = "none"
        if None in (c, h, w):
            raise SpecError(self.diags, self.source)
        self.input_name = inp.name
        # grids
        g = settings.get("grids")
        if g is None or g.values[0] == "auto":
            J, n = 1, min(h, w)
            while n > 3 and J < MAX_GRIDS:
                n, J = ceil_half(n), J + 1
        else:
            J = self.guard(self.count, g.values[0], "grids", MAX_GRIDS) or 1
        self.J = J
        self.sizes = {1: (h, w)}
        for lvl in range(2, J + 1):
            self.sizes[lvl] = tuple(map(ceil_half, self.sizes[lvl - 1]))
        if min(self.sizes[J]) < 1:
            self.error("too many grids for the input size", g.span if g else inp.span)
        self.nu = self.per_level(settings.get("smooth"), "smooth", J, default=0)
        self.post = self.per_level(settings.get("postsmooth"), "postsmooth", J, default=0)
        # spaces
        self.spaces: dict[str, list[int]] = {}
        for d in spaces:
            vals = [self.guard(self.count, n, f"channels of {d.name}", MAX_CHANNELS) or 1 for n in d.channels]
            if d.per_level and len(vals) != J:
                self.error(f"space {d.name} lists {len(vals)} channel counts but the model has {J} grids",
                           d.span, "give one count per grid, or a single number for all")
                vals = (vals + vals[-1:] * J)[:J]
            self.spaces[d.name] = vals if d.per_level else vals * J
        in_is_space = inp.name in self.spaces
        if in_is_space and self.spaces[inp.name][0] != c:
            self.error(f"input {inp.name} has {c} channels but space {inp.name} has {self.spaces[inp.name][0]}",
                       inp.span)
        self.input_ty = Ty(inp.name, 1 if in_is_space else 0, c, h, w)
        # operator definitions
        self.defs: dict[str, list[S.OpDef]] = {}
        for it in items:
            if isinstance(it, S.OpDef):
                if it.name in PRIMS or it.name in self.spaces or it.name == inp.name:
                    self.error(f"'{it.name}' is a reserved name (a primitive, space or the input)", it.span)
                    continue
                if it.name in MODULE_ATTRS or it.name.startswith("_"):
                    self.error(f"'{it.name}' would clash with the lowered torch module's own '{it.name}'", it.span,
                               f"rename it, e.g. {it.name.strip('_') or 'op'}_op")
                    continue
                same = [d for d in self.defs.get(it.name, []) if d.index == it.index]
                if same:
                    self.error(f"{it.name} is defined twice with the same index", it.span)
                self.defs.setdefault(it.name, []).append(it)
        for defs in self.defs.values():
            for d in defs:
                self.guard(self.check_def_names, d)
        # equations
        self.eqs: dict[str, dict] = {}
        for it in items:
            if isinstance(it, S.Equation):
                slot = self.eqs.setdefault(it.kind, {})
                if it.guard in slot:
                    self.error(f"a second `{it.kind}` equation" + (f" for [{it.guard}]" if it.guard else ""), it.span)
                slot[it.guard] = it
        outputs = [it for it in items if isinstance(it, S.Output)]
        if "init" not in self.eqs and not in_is_space:
            self.error("the model has no `init` equation", self.model.span, "e.g. `init f = f_in(x); u = 0`")
        if not outputs:
            self.error("the model has no `output`", self.model.span, "e.g. `output fc(avgpool(u))`")
        if self.diags:
            raise SpecError(self.diags, self.source)
        self.state_names = list(self.spaces)
        self.iterated = {a.name for eq in self.eqs.get("step", {}).values() for a in eq.assigns}
        self.iterated |= {a.name for eq in self.eqs.get("poststep", {}).values() for a in eq.assigns}
        for lvl, n in enumerate(self.nu, 1):
            if n and "step" not in self.eqs:
                self.error(f"grid {lvl} smooths {n} times but there is no `step` equation", settings["smooth"].span)
                break
        if self.diags:
            raise SpecError(self.diags, self.source)
        final, out_level = self.schedule()
        self._where = ("output", out_level, 0, "down")
        out = self.guard(self.ev, outputs[0].expr, Ctx("output", out_level, {"l": out_level, "J": J},
                                                       self.reader_final(final), outputs[0].span))
        if self.diags:
            raise SpecError(self.diags, self.source)
        classify_pass(self)
        warnings = self.count_uses(out)
        used = {i.name for i in self.instances.values()}
        for name, defs in self.defs.items():
            if name not in used:
                warnings.append(Diagnostic(f"{name} is defined but never used", defs[0].span, severity="warning"))
        equations = {kind: [(guard, [(a.name, _idx_text(a.index), term(a.expr)) for a in eq.assigns])
                            for guard, eq in sorted(slot.items(), key=lambda kv: (kv[0] is not None, kv[0] or 0))]
                     for kind, slot in self.eqs.items()}
        equations["output"] = [(None, [("output", "", term(outputs[0].expr))])]
        ir = IR(self.model.name, self.source.path, dict(self.params), inp.name, self.input_ty, self.classes, J,
                self.nu, self.post, self.cycle, self.spaces, self.sizes, self.instances, self.nodes, out,
                self.states, self.state_names, warnings, equations, self.bindings)
        return mark_assembled(ir)

    def count_uses(self, out: int) -> list[Diagnostic]:
        """Uses = applications that reach the output, plus references from used instances. An instance
        with no use after zero-folding (A(0) = 0 at a zero start) is dropped, with a warning."""
        live = reachable(self.nodes, [out])
        for inst in self.instances.values():
            inst.uses = 0
        used: set[str] = set()
        for n in live:
            if self.nodes[n].op == "apply":
                self.instances[self.nodes[n].inst].uses += 1
                used.add(self.nodes[n].inst)
        stack = list(used)
        while stack:
            for lay in self.instances[stack.pop()].layers:
                if lay.ref:
                    self.instances[lay.ref].uses += 1
                    if lay.ref not in used:
                        used.add(lay.ref)
                        stack.append(lay.ref)
        warnings = []
        for b in self.bindings.values():
            for name in [k for k, lab in b.items() if lab not in used]:
                del b[name]
        for label in [k for k in self.instances if k not in used]:
            inst = self.instances.pop(label)
            if inst.params:
                warnings.append(Diagnostic(f"{label} is never applied (its only inputs are zero) and is left out",
                                           inst.span, severity="warning"))
        return warnings

    def count(self, n: S.Num, what: str, limit: int) -> int:
        v = self.number(n)
        if isinstance(v, str):
            raise Fail(f"{what} must be a number, but param {n.value} is '{v}'", n.span)
        if not float(v).is_integer():
            raise Fail(f"{what} must be a whole number, got {v}", n.span)
        v = int(v)
        if v <= 0:
            raise Fail(f"{what} must be positive, got {v}", n.span)
        if v > limit:
            raise Fail(f"{what} = {v} is absurdly large (limit {limit})", n.span)
        return v

    def number(self, n: S.Num):
        if isinstance(n.value, str):
            if n.value not in self.params:
                raise Fail(f"undefined param '{n.value}'", n.span, did_you_mean(n.value, self.params))
            return n.coef * self.params[n.value]
        return n.value

    def per_level(self, setting, what, J, default):
        if setting is None:
            return [default] * J
        vals = []
        for n in setting.values:
            v = self.number(n) if not isinstance(n.value, str) or n.value in self.params else None
            if isinstance(v, str):
                self.error(f"{what} counts must be numbers, but param {n.value} is '{v}'", n.span)
                v = default
            if v is None:
                self.error(f"undefined param '{n.value}'", n.span, did_you_mean(n.value, self.params))
                v = default
            if not float(v).is_integer() or v < 0 or v > MAX_STEPS:
                self.error(f"{what} counts must be whole numbers in 0..{MAX_STEPS}, got {v}", n.span)
                v = default
            vals.append(int(v))
        if len(vals) == 1:
            return vals * J
        if len(vals) != J:
            self.error(f"{what} lists {len(vals)} counts but the model has {J} grids", setting.span,
                       "give one count per grid, or one number for all")
            return (vals + [default] * J)[:J]
        return vals

    # ------------------------------------------------------------ definitions
    def check_def_names(self, d: S.OpDef) -> None:
        for t in d.body:
            if isinstance(t, S.OpRef) and t.name not in PRIMS and t.name not in self.defs:
                raise Fail(f"undefined operator '{t.name}'", t.span,
                           did_you_mean(t.name, list(self.defs) + sorted(PRIMS)))
            if isinstance(t, S.Prim) and t.name not in PRIMS:
                raise Fail(f"unknown primitive '{t.name}'", t.span, did_you_mean(t.name, PRIMS))
            if isinstance(t, S.Prim):
                for a in t.args:
                    if isinstance(a, S.Sig):
                        for sp in (a.src, a.dst):
                            if sp not in self.spaces and sp not in (self.input_name, "classes"):
                                raise Fail(f"undefined space '{sp}'", a.span,
                                           did_you_mean(sp, list(self.spaces) + [self.input_name, "classes"]))
                    if isinstance(a, S.RefArg) and a.name not in self.defs:
                        raise Fail(f"undefined operator '{a.name}'", a.span, did_you_mean(a.name, self.defs))

    def index_values(self, index, env, span) -> tuple[int, ...]:
        out = []
        for ix in index:
            if ix.var is None:
                out.append(ix.offset)
            elif ix.var in env:
                out.append(env[ix.var] + ix.offset)
            else:
                raise Fail(f"index variable '{ix.var}' is not bound here", ix.span or span,
                           f"bound here: {', '.join(sorted(env))}")
        return tuple(out)

    def implicit_index(self, name: str, env: dict, span) -> tuple[int, ...]:
        """An operator used without an index takes its scope variables from the context."""
        defs = self.defs[name]
        general = [d for d in defs if d.index is None or all(ix.var not in (None, "J") for ix in d.index)]
        if general:
            names = [ix.var for ix in (general[0].index or ())]
        else:
            names = ["l", "i", "j"][:len(defs[0].index or ())]
        missing = [n for n in names if n not in env]
        if missing:
            raise Fail(f"{name} is indexed [{', '.join(names)}] but '{missing[0]}' is not bound here", span,
                       f"write the index explicitly, e.g. {name}[{', '.join(str(env.get(n, 1)) for n in names)}]")
        return tuple(env[n] for n in names)

    def match(self, d: S.OpDef, values) -> dict | None:
        env = {}
        for ix, v in zip(d.index or (), values):
            if ix.var is None:
                if ix.offset != v:
                    return None
            elif ix.var == "J":
                if self.J + ix.offset != v:
                    return None
            else:
                env[ix.var] = v - ix.offset
        return env

    def instance(self, name: str, values: tuple[int, ...], span) -> Instance:
        if name not in self.defs:
            raise Fail(f"undefined operator '{name}'", span, did_you_mean(name, list(self.defs) + sorted(PRIMS)))
        label = name + (f"[{', '.join(map(str, values))}]" if values else "")
        if label in self.instances:
            return self.instances[label]
        if label in self._stack:
            chain = " -> ".join(self._stack[self._stack.index(label):] + [label])
            raise Fail(f"cycle in definitions: {chain}", span, "give the recursion a base case, e.g. A[1] = ...")
        arities = {len(d.index or ()) for d in self.defs[name]}
        if len(values) not in arities:
            want = " or ".join(str(a) for a in sorted(arities))
            raise Fail(f"{name} takes {want} ind{'ex' if want == '1' else 'ices'} but is used with {len(values)}",
                       span, f"{name} is defined as {name}[{', '.join(ix.var or str(ix.offset) for ix in self.defs[name][0].index or ())}]")
        best, best_env, best_score = None, None, -1
        for d in self.defs[name]:
            if len(d.index or ()) != len(values):
                continue
            env = self.match(d, values)
            if env is None:
                continue
            score = sum(ix.var is None or ix.var == "J" for ix in d.index or ())
            if score > best_score:
                best, best_env, best_score = d, env, score
        if best is None:
            raise Fail(f"no definition of {label}", span, f"add a general definition {name}[l] = ...")
        best_env = dict(best_env, J=self.J)
        self._stack.append(label)
        try:
            inst = Instance(label, name, values, tuple(ix.var or str(ix.offset) for ix in best.index or ()),
                            span=best.span)
            inst.def_text = self.source.lines[best.span.line - 1].strip() if best.span else ""
            inst.template = [self.layer_template(t, best_env) for t in reversed(best.body)]
        finally:
            self._stack.pop()
        self.instances[label] = inst
        return inst

    def layer_template(self, t, env) -> dict:
        if isinstance(t, S.OpRef):
            if t.name in PRIMS:
                p = PRIMS[t.name]
                if p.sig or p.refs:
                    raise Fail(f"{t.name} needs arguments", t.span,
                               f"e.g. {t.name}({', '.join(['A[l]'] * p.refs + ['u -> f'] * p.sig)})")
                return {"kind": t.name, "span": t.span, "opts": {}}
            vals = self.index_values(t.index, env, t.span) if t.index else self.implicit_index(t.name, env, t.span)
            ref = self.instance(t.name, vals, t.span)
            return {"kind": "ref", "ref": ref.label, "span": t.span}
        opts, sig, refs = {}, None, []
        for a in t.args:
            if isinstance(a, S.Sig):
                sig = (a.src, a.dst)
            elif isinstance(a, S.RefArg):
                refs.append(self.instance(a.name, self.index_values(a.index, env, a.span), a.span).label)
            elif a.key in self.defs and a.value is None:
                refs.append(self.instance(a.key, self.implicit_index(a.key, env, a.span), a.span).label)
            elif a.value is None and isinstance(self.params.get(a.key), str):
                opts[self.params[a.key]] = None  # a name-valued param used as an option, e.g. restrict(f -> f, kr)
            else:
                v = a.value
                if isinstance(v, str) and v in self.params:
                    v = self.params[v]
                opts[a.key] = v
        return {"kind": t.name, "sig": sig, "opts": opts, "refs": refs, "span": t.span}

    # ------------------------------------------------------------ typing operators
    def chan(self, space: str, level: int | None, span) -> int:
        if space == "classes":
            if self.classes is None:
                raise Fail("the model maps to classes but declares no `classes N`", span)
            return self.classes
        if space == self.input_name and space not in self.spaces:
            return self.input_ty.channels
        if level is None or level < 1:
            level = 1
        if level > self.J:
            raise Fail(f"{space} on grid {level}, but the model has {self.J} grids", span)
        return self.spaces[space][level - 1]

    def apply_instance(self, inst: Instance, x: Ty, span) -> Ty:
        """The type of `inst(x)`: the first use types the layers; a later use must agree with it."""
        if inst.in_ty is None:
            inst.in_ty, inst.first_use = x, span
            inst.layers, inst.params = [], 0
            y = x
            try:
                for tpl in inst.template:
                    try:
                        lay, y = self.type_layer(tpl, y, inst)
                    except SpaceMismatch as e:
                        if y.space == x.space:  # the operator itself gets the wrong space: point at the use
                            where = f"line {inst.span.line}: {inst.def_text}" if inst.span else inst.def_text
                            raise Fail(f"{inst.label} {e.args[0]}", span,
                                       f"{inst.label} is defined at {where}") from None
                        raise Fail(f"inside {inst.label}: {e.args[0]}", tpl["span"],
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
        if lay.out_ty.height is not None and x.height is None:
            raise Fail(f"{inst.label} needs a grid value but gets a pooled vector", span)
        if lay.kind in UP and (x.level or 0) < 2:
            raise Fail(f"{inst.label} maps grid {x.level} to the next finer grid, which does not exist", span)
        if lay.kind not in UP and lay.stride == 2 and x.level and x.level + 1 > self.J:
            raise Fail(f"{inst.label} maps grid {x.level} to grid {x.level + 1}, but the model has {self.J} grids",
                       span)
        y = layer_at(lay, x, self.sizes)
        if y.level and y.space in self.spaces and self.chan(y.space, y.level, span) != y.channels:
            raise Fail(f"{inst.label} gives {y.channels} channels of {y.space}, but {y.space} on grid {y.level} "
                       f"has {self.chan(y.space, y.level, span)}", span,
                       f"index it (e.g. {inst.name}[l]) to get one instance per grid")
        return y

    def call(self, p, tpl: dict) -> Call:
        """A written primitive checked against its table entry: signature, operator arguments, options."""
        sig, refs = tpl.get("sig"), tuple(tpl.get("refs", ()))
        example = f"{p.name}({', '.join(['A[l]'] * p.refs + ['u -> f'] * p.sig)})"
        if p.sig and sig is None:
            raise PrimError(f"{p.name} needs a signature, e.g. {example}")
        if sig is not None and not p.sig:
            raise PrimError(f"{p.name} takes no signature: it keeps the space of its input", f"write {p.name}")
        if len(refs) != p.refs:
            raise PrimError(f"{p.name} takes {p.refs or 'no'} operator argument{'s' if p.refs != 1 else ''}, "
                            f"got {len(refs)}", f"e.g. {example}")
        return Call(p.name, sig, p.resolve(tpl.get("opts", {})), refs)

    def type_layer(self, tpl: dict, x: Ty, inst: Instance) -> tuple[Layer, Ty]:
        """One part of a definition at input type x, by the primitive table's shape rule."""
        kind, span = tpl["kind"], tpl["span"]
        if kind == "ref":
            ref = self.instances[tpl["ref"]]
            y = self.apply_instance(ref, x, span)
            return Layer("ref", x.channels, y.channels, ref=ref.label, klass="linear", in_ty=x, out_ty=y), y
        p = PRIMS[kind]
        try:
            c = self.call(p, tpl)
            if c.sig and x.space != c.sig[0]:
                raise SpaceMismatch(f"maps {c.sig[0]} -> {c.sig[1]} but is applied to {x.space}")
            lay, y = p.type(p, c, x, _Grid(self, span))
        except PrimSpaceMismatch as e:
            raise SpaceMismatch(str(e)) from None
        except PrimError as e:
            raise Fail(str(e), span, e.hint) from None
        lay.params, lay.klass, lay.in_ty, lay.out_ty = p.params(lay), p.klass(lay), x, y
        return lay, y

    # ------------------------------------------------------------ graph building
    def node(self, op, args, ty, **kw) -> int:
        """Hash-consed: the same pure computation on the same values is one node (CSE)."""
        key = (op, tuple(args), kw.get("inst"), kw.get("prim"), kw.get("coef"))
        pure = op != "apply" or not any(lay.kind == "bn" for lay in self._flat_layers(kw["inst"]))
        if pure and op not in ("input", "zero") and key in self._cse:
            return self._cse[key]
        n = Node(len(self.nodes), op, tuple(args), ty, where=self._where, **kw)
        self.nodes.append(n)
        if pure:
            self._cse[key] = n.id
        return n.id

    def _flat_layers(self, label: str):
        for lay in self.instances[label].layers:
            yield lay
            if lay.ref:
                yield from self._flat_layers(lay.ref)

    def zero(self, ty: Ty) -> int:
        if ty not in self._zero:
            self._zero[ty] = self.node("zero", (), ty)
        return self._zero[ty]

    def is_zero(self, nid: int) -> bool:
        return self.nodes[nid].op == "zero"

    def ev(self, e, ctx: Ctx) -> int:
        if isinstance(e, S.Var):
            return ctx.read(e, ctx)
        if isinstance(e, S.Literal):
            raise Fail(f"a bare number ({e.value:g}) has no type here; only 0 may stand for a state", e.span,
                       "write `0` on the right of an assignment, or `c * value`")
        if isinstance(e, S.Scaled):
            a = self.ev(e.arg, ctx)
            if self.is_zero(a) or e.coef == 0:
                return self.zero(self.nodes[a].ty)
            return a if e.coef == 1 else self.node("scale", (a,), self.nodes[a].ty, coef=e.coef)
        if isinstance(e, S.BinOp):
            a, b = self.ev(e.left, ctx), self.ev(e.right, ctx)
            ta, tb = self.nodes[a].ty, self.nodes[b].ty
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
            if self.is_zero(b):
                return a
            if self.is_zero(a):
                return b if e.op == "+" else self.node("scale", (b,), tb, coef=-1.0)
            return self.node("add" if e.op == "+" else "sub", (a, b), ta)
        if isinstance(e, S.Apply):
            x = self.ev(e.arg, ctx)
            tx = self.nodes[x].ty
            if e.name in INLINE and e.name not in self.defs:
                if e.index:
                    raise Fail(f"{e.name} is a primitive and takes no index", e.span)
                tpl = {"kind": e.name, "span": e.span, "opts": {}}
                dummy = Instance(e.name, e.name, (), ())
                lay, ty = self.type_layer(tpl, tx, dummy)
                if e.name == "id":
                    return x
                if e.name == "relu" and self.is_zero(x):
                    return self.zero(ty)
                return self.node("prim", (x,), ty, prim=e.name)
            if e.name in PRIMS:
                raise Fail(f"{e.name} has parameters or options; define it as an operator", e.span,
                           f"e.g. `N[l] = {e.name}(...)` and use N(...)")
            if e.name not in self.defs:
                raise Fail(f"undefined operator '{e.name}'", e.span,
                           did_you_mean(e.name, list(self.defs) + sorted(INLINE)))
            vals = self.index_values(e.index, ctx.env, e.span) if e.index else \
                self.implicit_index(e.name, ctx.env, e.span)
            inst = self.instance(e.name, vals, e.span)
            w = self._where
            self.bindings.setdefault((w[0], w[1], w[2]), {})[e.name + _idx_text(e.index)] = inst.label
            ty = self.apply_instance(inst, tx, e.span)
            if self.is_zero(x) and inst.params == 0 and all(l.klass == "linear" for l in inst.layers) \
                    and not any(l.ref for l in inst.layers):
                return self.zero(ty)
            if self.is_zero(x) and all(l.kind in ("conv", "deconv") and not l.bias for l in inst.layers):
                return self.zero(ty)  # a bias-free convolution of zero is zero
            return self.node("apply", (x,), ty, inst=inst.label)
        if isinstance(e, S.Sum):
            if e.bound not in ctx.env:
                raise Fail(f"sum bound '{e.bound}' is not bound here", e.span)
            acc = None
            for j in range(ctx.env[e.bound]):
                sub = Ctx(ctx.kind, ctx.level, dict(ctx.env, **{e.var: j}), ctx.read, ctx.span)
                v = self.ev(e.body, sub)
                if acc is None:
                    acc = v
                elif not self.is_zero(v):
                    acc = v if self.is_zero(acc) else self.node("add", (acc, v), self.nodes[acc].ty)
            if acc is None:
                raise Fail("empty sum", e.span)
            return acc
        raise Fail("unsupported expression", getattr(e, "span", None))

    # ------------------------------------------------------------ schedule
    def split_index(self, var: S.Var, ctx: Ctx):
        """`u[l+1, 0]`: indices over l/J select the grid, the others the step."""
        level = step = None
        for ix in var.index or ():
            v = self.index_values((ix,), ctx.env, var.span)[0]
            if ix.var in LEVEL_VARS:
                if level is not None:
                    raise Fail(f"{var.name} has two grid indices", var.span)
                level = v
            else:
                if step is not None:
                    raise Fail(f"{var.name} has two step indices", var.span)
                step = v
        return level, step

    def check_state(self, var: S.Var):
        if var.name not in self.spaces and var.name != self.input_name:
            raise Fail(f"undefined state '{var.name}'", var.span,
                       did_you_mean(var.name, list(self.spaces) + [self.input_name]))

    def reader_steps(self, its: list[dict]):
        def read(var: S.Var, ctx: Ctx) -> int:
            self.check_state(var)
            level, step = self.split_index(var, ctx)
            if level not in (None, ctx.level):
                raise Fail(f"{var.name}[...] reads grid {level} inside a `{ctx.kind}` on grid {ctx.level}", var.span)
            i = ctx.env.get("i", len(its))
            k = i - 1 if step is None else step
            if k < 0 or k >= len(its):
                name = f"{var.name}[{', '.join(ix.var + (f'{ix.offset:+d}' if ix.offset else '') if ix.var else str(ix.offset) for ix in var.index)}]"
                raise Fail(f"{name} at i={i} reads iterate {k}, which does not exist", var.span,
                           f"add a rule for the first steps, e.g. `{ctx.kind}[{i}] ...`")
            if var.name not in its[k]:
                raise Fail(f"{var.name} has no value on grid {ctx.level}", var.span)
            return its[k][var.name]
        return read

    def reader_final(self, vals: dict, extra: dict | None = None):
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

    def assign(self, a: S.Assign, ctx: Ctx, level: int) -> int:
        if a.name not in self.spaces:
            raise Fail(f"'{a.name}' is not a declared space", a.span,
                       did_you_mean(a.name, self.spaces) or "declare it with `space`")
        want = Ty(a.name, level, self.spaces[a.name][level - 1], *self.sizes[level])
        if isinstance(a.expr, S.Literal) and a.expr.value == 0:
            return self.zero(want)
        v = self.ev(a.expr, ctx)
        got = self.nodes[v].ty
        if ctx.kind == "init" and got.level == 0 and got.height is not None:
            v = self.rebase(v)  # the data initialisation defines grid 1
            got = self.nodes[v].ty
            want = Ty(a.name, level, self.spaces[a.name][level - 1], *self.sizes[level])
        if got.space != a.name:
            raise Fail(f"{a.name} is assigned a value in space {got.space}", a.expr.span,
                       f"the right-hand side is {got.describe()}")
        if (got.level, got.height, got.width) != (level, *self.sizes[level]):
            raise Fail(f"{a.name} on grid {level} is assigned a value on another grid", a.expr.span,
                       f"the right-hand side is {got.describe()}; expected grid {level} "
                       f"({self.sizes[level][0]}x{self.sizes[level][1]})")
        if got.channels != want.channels:
            raise Fail(f"{a.name} on grid {level} has {want.channels} channels, the value has {got.channels}",
                       a.expr.span)
        return v

    def rebase(self, v: int) -> int:
        """The first init value fixes grid 1's size (an ImageNet stem shrinks the input before grid 1)."""
        ty = self.nodes[v].ty
        if not getattr(self, "_rebased", False):
            self._rebased = True
            self.sizes = {1: (ty.height, ty.width)}
            for lvl in range(2, self.J + 1):
                self.sizes[lvl] = tuple(map(ceil_half, self.sizes[lvl - 1]))
        n = self.nodes[v]
        n.ty = Ty(ty.space, 1, ty.channels, ty.height, ty.width)
        return v

    def run_eq(self, eq: S.Equation, ctx: Ctx, level: int, into: dict) -> None:
        for a in eq.assigns:
            try:
                into[a.name] = self.assign(a, ctx, level)
            except Fail as f:
                self.error(f.diag.message, f.diag.span, f.diag.hint)
                if a.name in self.spaces:
                    into[a.name] = self.zero(Ty(a.name, level, self.spaces[a.name][level - 1], *self.sizes[level]))

    def smooth(self, level: int, start: dict, count: int, kind: str, phase: str) -> list[dict]:
        its = [start]
        eqs = self.eqs.get(kind) or self.eqs.get("step", {})
        for i in range(1, count + 1):
            eq = eqs.get(i) or eqs.get(None)
            if eq is None:
                self.error(f"no `{kind}` equation for step {i}", self.model.span)
                break
            new = dict(its[-1])
            self._where = (kind, level, i, phase)
            ctx = Ctx(kind, level, {"l": level, "i": i, "J": self.J}, self.reader_steps(its), eq.span)
            self.run_eq(eq, ctx, level, new)
            its.append(new)
        for i, vals in enumerate(its):
            for s, nid in vals.items():
                self.states.setdefault((s, level, phase, i), nid)
                self.nodes[nid].tag = self.nodes[nid].tag or (s, level, phase, i)
        return its

    def init(self) -> dict:
        vals = {}
        if self.input_ty.level == 1:
            vals[self.input_name] = self.node("input", (), self.input_ty)
        x = vals.get(self.input_name) or self.node("input", (), self.input_ty)
        eq = self.eqs.get("init", {}).get(None)
        if eq:
            def read(var, ctx):
                if var.name == self.input_name and not var.index:
                    return x
                if var.name in vals and not var.index:
                    return vals[var.name]
                self.check_state(var)
                raise Fail(f"{var.name} has no value yet in `init`", var.span, "assign it earlier in the init line")
            ctx = Ctx("init", 1, {"l": 1, "J": self.J}, read, eq.span)
            self.run_eq(eq, ctx, 1, vals)
        missing = [s for s in self.state_names if s not in vals]
        if missing:
            self.error(f"`init` does not set {', '.join(missing)}", eq.span if eq else self.model.span,
                       f"add e.g. `; {missing[0]} = 0`")
            for s in missing:
                vals[s] = self.zero(Ty(s, 1, self.spaces[s][0], *self.sizes[1]))
        return vals

    def coarsen(self, level: int, its: list[dict]) -> dict:
        eqs = self.eqs.get("coarsen", {})
        eq = eqs.get(level) or eqs.get(None)
        if eq is None:
            self.error(f"the model has {self.J} grids but no `coarsen` equation", self.model.span,
                       "e.g. `coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])`")
            raise Fail("", None)
        new: dict = {}
        self._where = ("coarsen", level, 0, "down")
        ctx = Ctx("coarsen", level, {"l": level, "J": self.J},
                  self.reader_final(its[-1], {(level + 1, None): new, **{(None, k): v for k, v in enumerate(its)}}),
                  eq.span)
        for a in eq.assigns:
            lvl = self.index_values(a.index, ctx.env, a.span)[0] if a.index else None
            if lvl != level + 1 or len(a.index or ()) != 1:
                self.error(f"coarsen assigns the next grid: write {a.name}[l+1] = ...", a.span)
                continue
            try:
                new[a.name] = self.assign(a, ctx, level + 1)
            except Fail as f:
                self.error(f.diag.message, f.diag.span, f.diag.hint)
                if a.name in self.spaces:
                    new[a.name] = self.zero(Ty(a.name, level + 1, self.spaces[a.name][level], *self.sizes[level + 1]))
        missing = [s for s in self.state_names if s not in new]
        if missing:
            self.error(f"`coarsen` does not set {missing[0]}[l+1]", eq.span,
                       f"add `; {missing[0]}[l+1] = 0` for a zero start")
            for s in missing:
                new[s] = self.zero(Ty(s, level + 1, self.spaces[s][level], *self.sizes[level + 1]))
        return new

    def schedule(self) -> tuple[dict, int]:
        start = self.init()
        if self.cycle == "none":
            cur = start
            for level in range(1, self.J + 1):
                its = self.smooth(level, cur, self.nu[level - 1], "step", "down")
                if level < self.J:
                    try:
                        cur = self.coarsen(level, its)
                    except Fail:
                        return its[-1], level
            return its[-1], self.J
        gamma = 2 if self.cycle == "W" else 1
        if "refine" not in self.eqs:
            self.error(f"`cycle {self.cycle}` needs a `refine` equation", self.model.span,
                       "e.g. `refine u = u + P(u[l+1])`")
            raise SpecError(self.diags, self.source)
        return self.visit(1, start, gamma, 0), 1

    def visit(self, level: int, start: dict, gamma: int, depth: int) -> dict:
        its = self.smooth(level, start, self.nu[level - 1], "step", "down")
        if level == self.J:
            return its[-1]
        coarse0 = self.coarsen(level, its)
        cur = coarse0
        for _ in range(gamma):
            final = self.visit(level + 1, cur, gamma, depth + 1)
            cur = {**coarse0, **{s: final[s] for s in self.iterated if s in final}}
        eq = self.eqs["refine"].get(level) or self.eqs["refine"].get(None)
        new = dict(its[-1])
        self._where = ("refine", level, 0, "up")
        ctx = Ctx("refine", level, {"l": level, "J": self.J},
                  self.reader_final(its[-1], {(level + 1, None): final, (level + 1, 0): coarse0}), eq.span)
        self.run_eq(eq, ctx, level, new)
        post = self.smooth(level, new, self.post[level - 1], "poststep", "up")
        return post[-1]


def elaborate(model: S.Model, source: Source, overrides: dict | None = None) -> IR:
    """AST to IR; raises SpecError with every diagnostic found."""
    return Elaborator(model, source, dict(overrides or {})).run()
