"""Stage 1 of elaboration: resolve params, settings, grids and spaces, and bind operator definitions to
their sharing scopes (one Instance per distinct index). Reads the AST; knows nothing of types or graphs."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import syntax as S
from .diagnostics import Diagnostic, Fail, Reporter, Source, Span, SpecError, did_you_mean
from .ir import Instance, Ty
from .prims import PRIMS, ceil_half

MAX_CHANNELS = 1 << 16
MAX_SIZE = 1 << 15
MAX_GRIDS = 24
MAX_STEPS = 256
MAX_NESTING = 64  # operator definitions referring to definitions
LEVEL_VARS = {"l", "J"}  # index variables that select a grid; any other selects a step
# operator names that would shadow an attribute of the lowered torch module
MODULE_ATTRS = {"forward", "forward_states", "train", "eval", "training", "to", "cuda", "cpu", "double", "float",
                "half", "bfloat16", "type", "apply", "state_dict", "load_state_dict", "parameters", "buffers",
                "children", "modules", "named_parameters", "named_buffers", "named_modules", "named_children",
                "zero_grad", "requires_grad_", "register_buffer", "register_parameter", "register_module",
                "add_module", "get_submodule", "get_parameter", "get_buffer", "extra_repr", "compile", "share_memory",
                "code", "instance", "input_shape", "output_shape", "spec_name", "state_keys", "dump_patches",
                "call_super_init", "ipu", "xpu", "mtia", "T_destination", "get_extra_state", "set_extra_state",
                "register_backward_hook", "register_forward_hook", "register_forward_pre_hook",
                "register_full_backward_hook", "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
                "register_load_state_dict_pre_hook", "register_state_dict_post_hook", "register_state_dict_pre_hook",
                "set_submodule", "states_code", "to_empty"}  # tests/test_lower.py checks it against torch


@dataclass
class Resolved:
    """The spec with every name and number resolved: what the later stages read (and `sizes`, which the
    unrolling may rebase once when an ImageNet stem shrinks the input before grid 1)."""
    model: S.Model
    params: dict
    settings: dict[str, S.Setting]
    input_name: str
    input_ty: Ty
    classes: int | None
    cycle: str
    J: int
    sizes: dict[int, tuple[int, int]]
    nu: list[int]
    post: list[int]
    spaces: dict[str, list[int]]
    defs: dict[str, list[S.OpDef]]
    eqs: dict[str, dict]  # kind -> guard (step number or None) -> Equation
    output: S.Output
    iterated: set[str]  # states the steps assign: what a coarse visit hands back to the finer grid

    @property
    def state_names(self) -> list[str]:
        return list(self.spaces)


def _number(params: dict, n: S.Num):
    if isinstance(n.value, str):
        if n.value not in params:
            raise Fail(f"undefined param '{n.value}'", n.span, did_you_mean(n.value, params))
        v = params[n.value]
        if isinstance(v, str):  # a name-valued param (-D kr=linear) is never multiplied: 2 * 'abc' is not 'abcabc'
            if n.coef != 1:
                raise Fail(f"{n.coef:g} * {n.value} needs a number, but param {n.value} is '{v}'", n.span)
            return v
        if isinstance(v, (tuple, list)):  # a list param: one value per grid, `2 * chans` scales each
            return tuple(n.coef * x for x in v)
        return n.coef * v
    return n.value


def _count(params: dict, n: S.Num, what: str, limit: int) -> int:
    """A positive whole number (a size, a channel count) within a sanity limit."""
    v = _number(params, n)
    if isinstance(v, str):
        raise Fail(f"{what} must be a number, but param {n.value} is '{v}'", n.span)
    if isinstance(v, tuple):
        raise Fail(f"{what} must be one number, but param {n.value} is the list {_show_list(v)}", n.span,
                   "a list param gives one value per grid where a list is allowed: `space u = chans`, "
                   "`smooth steps`")
    if not float(v).is_integer():
        raise Fail(f"{what} must be a whole number, got {v}", n.span)
    v = int(v)
    if v <= 0:
        raise Fail(f"{what} must be positive, got {v}", n.span)
    if v > limit:
        raise Fail(f"{what} = {v} is absurdly large (limit {limit})", n.span)
    return v


def _show_list(v: tuple) -> str:
    return "[" + ", ".join(f"{x:g}" for x in v) + "]"


def _spread(params: dict, values: tuple) -> tuple:
    """A single list param (`smooth steps`, `space u = chans`) as its elements, each a Num at the param's use."""
    if len(values) == 1 and isinstance(values[0].value, str) and isinstance(params.get(values[0].value), (tuple, list)):
        n = values[0]
        return tuple(S.Num(x, n.span) for x in _number(params, n))
    return values


def _per_level(rep: Reporter, params: dict, setting, what: str, J: int, default: int) -> list[int]:
    """`smooth 2`, `smooth 3, 4, 6, 3` or `smooth steps` with `param steps = [3, 4, 6, 3]`: one count per grid."""
    if setting is None:
        return [default] * J
    vals = []
    for n in _spread(params, setting.values):
        v = _number(params, n) if not isinstance(n.value, str) or n.value in params else None
        if isinstance(v, str):
            rep.error(f"{what} counts must be numbers, but param {n.value} is '{v}'", n.span)
            v = default
        if isinstance(v, tuple):
            rep.error(f"{what} counts must be numbers, but param {n.value} is the list {_show_list(v)}", n.span,
                      f"a list param stands alone: `{what} {n.value}`")
            v = default
        if v is None:
            rep.error(f"undefined param '{n.value}'", n.span, did_you_mean(n.value, params))
            v = default
        if not float(v).is_integer() or v < 0 or v > MAX_STEPS:
            rep.error(f"{what} counts must be whole numbers in 0..{MAX_STEPS}, got {v}", n.span)
            v = default
        vals.append(int(v))
    if len(vals) == 1:
        return vals * J
    if len(vals) != J:
        rep.error(f"{what} lists {len(vals)} counts but the model has {J} grids", setting.span,
                  "give one count per grid, or one number for all")
        return (vals + [default] * J)[:J]
    return vals


def grid_sizes(h: int, w: int, J: int) -> dict[int, tuple[int, int]]:
    """Grid l has ceil-half the size of grid l-1."""
    sizes = {1: (h, w)}
    for lvl in range(2, J + 1):
        sizes[lvl] = tuple(map(ceil_half, sizes[lvl - 1]))
    return sizes


def _spaces(rep: Reporter, params: dict, items, J: int, overrides: dict) -> dict[str, list[int]]:
    """`space u = width, f = [width, 2 * width]`: each state's channels per grid."""
    spaces: dict[str, list[int]] = {}
    bad: list[tuple[str, int | None, S.Num, Fail]] = []
    for d in (d for it in items if isinstance(it, S.Spaces) for d in it.decls):
        channels = _spread(params, d.channels)
        per_level = d.per_level or channels is not d.channels
        vals = []
        for k, n in enumerate(channels, 1):
            try:
                vals.append(_count(params, n, f"channels of {d.name}", MAX_CHANNELS))
            except Fail as f:
                bad.append((d.name, k if per_level else None, n, f))
                vals.append(1)
        if per_level and len(vals) != J:
            rep.error(f"space {d.name} lists {len(vals)} channel counts but the model has {J} grids",
                      d.span, "give one count per grid, or a single number for all")
            vals = (vals + vals[-1:] * J)[:J]
        spaces[d.name] = vals if per_level else vals * J
    _report_once(rep, bad, overrides)
    return spaces


_VALUE = re.compile(r"(got |= )(-?[0-9][0-9.e+]*)")  # the number in _count's messages


def _report_once(rep: Reporter, bad: list, overrides: dict) -> None:
    """One cause, one error: channel counts that fail alike through one param (-D width=0 reaches every entry
    of `space f = [width, 2 * width, ...]`, and u and f) are one error that names the spaces and the grids."""
    groups: dict[tuple, list] = {}
    for space, grid, n, f in bad:
        cause = n.value if isinstance(n.value, str) else id(n)
        kind = _VALUE.sub(r"\1", f.diag.message.replace(f"channels of {space}", "channels of"))
        groups.setdefault((cause, kind), []).append((space, grid, n, f))
    for (cause, _), group in groups.items():
        space, _, n, f = group[0]
        if len(group) == 1:
            rep.add(f)
            continue
        names = " and ".join(dict.fromkeys(s for s, *_ in group))
        grids = [str(g) for _, g, *_ in group if g is not None]
        where = f"channels of {names}" + (f" on grids {', '.join(dict.fromkeys(grids))}" if len(grids) > 1 else "")
        got = ", ".join(dict.fromkeys(m.group(2) for *_, x in group if (m := _VALUE.search(x.diag.message))))
        message = _VALUE.sub(lambda m: m.group(1) + got, f.diag.message.replace(f"channels of {space}", where), 1)
        last = group[-1][2].span
        span = Span(n.span.line, n.span.col, last.end_line, last.end_col) \
            if n.span and last and last.line == n.span.line else n.span
        hint = f"{cause} = {overrides[cause]} comes from -D {cause}={overrides[cause]}" if cause in overrides \
            else f.diag.hint
        rep.error(message, span, hint)


def _params(items, rep: Reporter, overrides: dict) -> dict:
    """The spec's params, each -D override applied (a -D of no param is an error with a did-you-mean)."""
    params: dict = {}
    for it in items:
        if isinstance(it, S.Param):
            if it.name in params:
                rep.error(f"param '{it.name}' is defined twice", it.span)
            params[it.name] = it.value
    for name, value in overrides.items():
        if name not in params:
            hint = did_you_mean(name, params) or (
                f"this spec's params: {', '.join(sorted(params))}" if params else "this spec declares no `param`")
            rep.error(f"-D {name}: the spec has no param '{name}'", None, hint)
        else:
            params[name] = value
    return params


def _settings(items, rep: Reporter) -> dict[str, S.Setting]:
    """The settings lines (classes, grids, smooth, cycle, ...) by key; each may be given once."""
    settings: dict[str, S.Setting] = {}
    for it in items:
        if isinstance(it, S.Setting):
            if it.key in settings:
                rep.error(f"'{it.key}' is given twice", it.span)
            settings[it.key] = it
    return settings


def _grids(rep: Reporter, params: dict, g: S.Setting | None, h: int, w: int, span) -> tuple[int, dict]:
    """The number of grids J (`grids auto`: halve down to 3 pixels) and each grid's size."""
    if g is None or g.values[0] == "auto":
        J, n = 1, min(h, w)
        while n > 3 and J < MAX_GRIDS:
            n, J = ceil_half(n), J + 1
    else:
        J = rep.guard(_count, params, g.values[0], "grids", MAX_GRIDS) or 1
    sizes = grid_sizes(h, w, J)
    if min(sizes[J]) < 1:
        rep.error("too many grids for the input size", g.span if g else span)
    return J, sizes


def resolve(model: S.Model, rep: Reporter, overrides: dict) -> Resolved:
    """Params (with -D overrides), settings, the input, grids, spaces, definitions and equations."""
    items = model.items
    params = _params(items, rep, overrides)
    settings = _settings(items, rep)
    inputs = [it for it in items if isinstance(it, S.Input)]
    if not inputs:
        raise SpecError([Diagnostic("the model has no `input` line", model.span,
                                    "add e.g. `input x : 3 x 32 x 32`")], rep.source)
    inp = inputs[0]
    dims, bad = [], []
    for n in (inp.channels, inp.height, inp.width):  # `1 x n x n` with -D n=abc: one error, not one per n
        try:
            dims.append(_count(params, n, "input size", MAX_SIZE))
        except Fail as f:
            bad.append(("input", None, n, f))
            dims.append(None)
    _report_once(rep, bad, overrides)
    c, h, w = dims
    classes = rep.guard(_count, params, settings["classes"].values[0], "classes", 1 << 20) \
        if "classes" in settings else None
    cycle = settings["cycle"].values[0] if "cycle" in settings else "none"
    if cycle not in ("none", "V", "W"):
        rep.error(f"unknown cycle '{cycle}'", settings["cycle"].span, "use `cycle V` or `cycle W`")
        cycle = "none"
    if None in (c, h, w):
        rep.stop_if_any()
    J, sizes = _grids(rep, params, settings.get("grids"), h, w, inp.span)
    nu = _per_level(rep, params, settings.get("smooth"), "smooth", J, default=0)
    post = _per_level(rep, params, settings.get("postsmooth"), "postsmooth", J, default=0)
    spaces = _spaces(rep, params, items, J, overrides)
    in_is_space = inp.name in spaces
    if in_is_space and spaces[inp.name][0] != c:
        rep.error(f"input {inp.name} has {c} channels but space {inp.name} has {spaces[inp.name][0]}", inp.span)
    input_ty = Ty(inp.name, 1 if in_is_space else 0, c, h, w)
    defs = _definitions(model, rep, spaces, inp.name)
    eqs: dict[str, dict] = {}
    for it in items:
        if isinstance(it, S.Equation):
            slot = eqs.setdefault(it.kind, {})
            if it.guard in slot:
                rep.error(f"a second `{it.kind}` equation" + (f" for [{it.guard}]" if it.guard else ""), it.span)
            slot[it.guard] = it
    outputs = [it for it in items if isinstance(it, S.Output)]
    if "init" not in eqs and not in_is_space:
        rep.error("the model has no `init` equation", model.span, "e.g. `init f = f_in(x); u = 0`")
    if not outputs:
        rep.error("the model has no `output`", model.span, "e.g. `output fc(avgpool(u))`")
    rep.stop_if_any()
    iterated = {a.name for kind in ("step", "poststep") for eq in eqs.get(kind, {}).values() for a in eq.assigns}
    for lvl, n in enumerate(nu, 1):
        if n and "step" not in eqs:
            rep.error(f"grid {lvl} smooths {n} times but there is no `step` equation", settings["smooth"].span)
            break
    rep.stop_if_any()
    return Resolved(model, params, settings, inp.name, input_ty, classes, cycle, J, sizes, nu, post, spaces, defs,
                    eqs, outputs[0], iterated)


def _definitions(model: S.Model, rep: Reporter, spaces: dict, input_name: str) -> dict[str, list[S.OpDef]]:
    """Operator definitions by name; reserved names and undefined names inside them are errors."""
    defs: dict[str, list[S.OpDef]] = {}
    for it in model.items:
        if isinstance(it, S.OpDef):
            if it.name in PRIMS or it.name in spaces or it.name == input_name:
                rep.error(f"'{it.name}' is a reserved name (a primitive, space or the input)", it.span)
                continue
            if it.name in MODULE_ATTRS or it.name.startswith("_"):
                rep.error(f"'{it.name}' would clash with the lowered torch module's own '{it.name}'", it.span,
                          f"rename it, e.g. {it.name.strip('_') or 'op'}_op")
                continue
            if any(d.index == it.index for d in defs.get(it.name, [])):
                rep.error(f"{it.name} is defined twice with the same index", it.span)
            defs.setdefault(it.name, []).append(it)
    known_spaces = list(spaces) + [input_name, "classes"]
    for ds in defs.values():
        for d in ds:
            for t in d.body:
                rep.guard(_check_names, t, defs, known_spaces)
    return defs


def _check_names(t, defs: dict, known_spaces: list[str]) -> None:
    if isinstance(t, S.OpRef) and t.name not in PRIMS and t.name not in defs:
        raise Fail(f"undefined operator '{t.name}'", t.span, did_you_mean(t.name, list(defs) + sorted(PRIMS)))
    if isinstance(t, S.PrimApp) and t.name not in PRIMS:
        raise Fail(f"unknown primitive '{t.name}'", t.span, did_you_mean(t.name, PRIMS))
    if isinstance(t, S.PrimApp):
        for a in t.args:
            if isinstance(a, S.Sig):
                for sp in (a.src, a.dst):
                    if sp not in known_spaces:
                        raise Fail(f"undefined space '{sp}'", a.span, did_you_mean(sp, known_spaces))
            if isinstance(a, S.RefArg) and a.name not in defs:
                raise Fail(f"undefined operator '{a.name}'", a.span, did_you_mean(a.name, defs))


# ---------------------------------------------------------------- binding definitions to sharing scopes

@dataclass
class Part:
    """One term of a definition, names resolved, before typing: a primitive call or a reference."""
    kind: str  # a primitive's name, or "ref"
    span: Span | None
    sig: tuple[str, str] | None = None
    opts: dict = field(default_factory=dict)
    refs: tuple[str, ...] = ()  # the instances named as operator arguments: transpose(R[l])
    ref: str | None = None  # kind "ref": the referenced instance


def index_values(index, env: dict, span) -> tuple[int, ...]:
    """Index expressions (l+1, i-2, 3) evaluated in an environment of bound variables."""
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


@dataclass
class Binder:
    """Definitions -> instances: `A[2]` is created once, from the most specific matching definition."""
    r: Resolved
    source: Source
    instances: dict[str, Instance] = field(default_factory=dict)
    _stack: list[str] = field(default_factory=list)

    def scope_names(self, name: str) -> list[str]:
        """The index variables an operator's definition is written with, e.g. ['l', 'i'] for B[l, i]."""
        defs = self.r.defs[name]
        general = [d for d in defs if d.index is None or all(ix.var not in (None, "J") for ix in d.index)]
        if general:
            return [ix.var for ix in (general[0].index or ())]
        return ["l", "i", "j"][:len(defs[0].index or ())]

    def implicit_index(self, name: str, env: dict, span) -> tuple[int, ...]:
        """An operator used without an index takes its scope variables from the context."""
        names = self.scope_names(name)
        missing = [n for n in names if n not in env]
        if missing:
            raise Fail(f"{name} is indexed [{', '.join(names)}] but '{missing[0]}' is not bound here", span,
                       f"write the index explicitly, e.g. {name}[{', '.join(str(env.get(n, 1)) for n in names)}]")
        return tuple(env[n] for n in names)

    def match(self, d: S.OpDef, values) -> dict | None:
        """The definition's index variables bound to the values, or None if its literals do not match."""
        env = {}
        for ix, v in zip(d.index or (), values):
            if ix.var is None:
                if ix.offset != v:
                    return None
            elif ix.var == "J":
                if self.r.J + ix.offset != v:
                    return None
            else:
                env[ix.var] = v - ix.offset
        return env

    def instance(self, name: str, values: tuple[int, ...], span) -> Instance:
        """The instance name[values], created (with its referenced instances) on first use."""
        defs = self.r.defs
        if name not in defs:
            raise Fail(f"undefined operator '{name}'", span, did_you_mean(name, list(defs) + sorted(PRIMS)))
        label = name + (f"[{', '.join(map(str, values))}]" if values else "")
        if label in self.instances:
            return self.instances[label]
        if label in self._stack:
            chain = " -> ".join(self._stack[self._stack.index(label):] + [label])
            raise Fail(f"cycle in definitions: {chain}", span, "give the recursion a base case, e.g. A[1] = ...")
        arities = {len(d.index or ()) for d in defs[name]}
        if len(values) not in arities:
            want = " or ".join(str(a) for a in sorted(arities))
            written = ", ".join(ix.var or str(ix.offset) for ix in defs[name][0].index or ())
            raise Fail(f"{name} takes {want} ind{'ex' if want == '1' else 'ices'} but is used with {len(values)}",
                       span, f"{name} is defined as {name}[{written}]")
        best, best_env, best_score = None, None, -1
        for d in defs[name]:
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
        for ix, v in zip(best.index or (), values):
            if ix.var == "l" and not 1 <= v <= self.r.J:
                raise Fail(f"{label} is on grid {v}, which does not exist (the model has {self.r.J} grids)", span,
                           f"the grid index of {name} runs over 1..{self.r.J}; check the offset")
        if len(self._stack) >= MAX_NESTING:
            chain = " -> ".join(self._stack[:3] + ["..."] + self._stack[-2:] + [label])
            raise Fail(f"definitions nest more than {MAX_NESTING} deep: {chain}", span,
                       "give the recursion a base case, e.g. A[1] = ...")
        best_env = dict(best_env, J=self.r.J)
        self._stack.append(label)
        try:
            inst = Instance(label, name, values, tuple(ix.var or str(ix.offset) for ix in best.index or ()),
                            span=best.span)
            inst.def_text = self.source.lines[best.span.line - 1].strip() if best.span else ""
            inst.template = [self.part(t, best_env) for t in reversed(best.body)]
        finally:
            self._stack.pop()
        self.instances[label] = inst
        return inst

    def part(self, t, env: dict) -> Part:
        """One term of a definition with its names bound: referenced instances exist afterwards."""
        if isinstance(t, S.OpRef):
            if t.name in PRIMS:
                p = PRIMS[t.name]
                if p.sig or p.refs:
                    raise Fail(f"{t.name} needs arguments", t.span,
                               f"e.g. {t.name}({', '.join(['A[l]'] * p.refs + ['u -> f'] * p.sig)})")
                return Part(t.name, t.span)
            vals = index_values(t.index, env, t.span) if t.index else self.implicit_index(t.name, env, t.span)
            return Part("ref", t.span, ref=self.instance(t.name, vals, t.span).label)
        opts, sig, refs = {}, None, []
        params = self.r.params
        for a in t.args:
            if isinstance(a, S.Sig):
                if sig is not None:
                    raise Fail(f"{t.name} has two signatures", a.span, f"write one, e.g. {t.name}(u -> f)")
                sig = (a.src, a.dst)
            elif isinstance(a, S.RefArg):
                refs.append(self.instance(a.name, index_values(a.index, env, a.span), a.span).label)
            elif a.key in self.r.defs and a.value is None:
                refs.append(self.instance(a.key, self.implicit_index(a.key, env, a.span), a.span).label)
            elif a.value is None and isinstance(params.get(a.key), str):
                opts[params[a.key]] = None  # a name-valued param used as an option, e.g. restrict(f -> f, kr)
            else:
                v = a.value
                if isinstance(v, str) and v in params:
                    v = params[v]
                if a.key in opts:
                    raise Fail(f"{t.name} is given {a.key} twice", a.span)
                opts[a.key] = v
        return Part(t.name, t.span, sig, opts, tuple(refs))
