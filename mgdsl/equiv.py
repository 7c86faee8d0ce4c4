"""The paper's theorems as checks: classify a spec's scheme, derive the relation to a target by guarded
rewriting (Theorems 6.1, 8.1, 8.3, Lemma 8.2, chain (8.7)), then confirm it numerically in float64.

Why a small rewriting core of our own rather than egglog or z3: the terms are a handful of operator
applications, sums and ReLUs; the rewrites are five guarded rules whose guards are facts the IR already
knows (an operator's linearity class and sharing scope). A 40-line bottom-up rewriter with a derivation
log does exactly this with no extra dependency, and the log is what the user reads."""
from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass, field

FAMILIES = ["mg0", "linear-mgnet", "mgnet", "mg-iresnet", "iresnet", "mg-resnet", "sigma-resnet", "resnet",
            "classic-cnn"]
TOL = 1e-9

# ------------------------------------------------------------------ terms

def show(t) -> str:
    """Terms in the paper's notation."""
    h = t[0]
    if h == "var":
        return t[1]
    if h == "const":
        return f"{t[1]:g}"
    if h == "app":
        return f"{t[1]}({show(t[2])})"
    if h in ("add", "sub"):
        right = show(t[2])
        if h == "sub" and t[2][0] in ("add", "sub"):
            right = f"({right})"
        return f"{show(t[1])} {'+' if h == 'add' else '−'} {right}"
    if h == "scale":
        return f"{t[1]:g}·({show(t[2])})"
    if h == "sum":
        return f"Σ_{{{t[1]}<{t[2]}}} {show(t[3])}"
    return str(t)


def subst(t, name: str, by):
    if t[0] == "var" and t[1] == name:
        return by
    if t[0] in ("app",):
        return (t[0], t[1], subst(t[2], name, by))
    if t[0] in ("add", "sub"):
        return (t[0], subst(t[1], name, by), subst(t[2], name, by))
    if t[0] == "scale":
        return (t[0], t[1], subst(t[2], name, by))
    return t


def contains(t, name: str) -> bool:
    if t[0] == "var":
        return t[1] == name
    return any(contains(c, name) for c in t[1:] if isinstance(c, tuple))


# ------------------------------------------------------------------ the rewriting core

@dataclass
class Rule:
    name: str
    equation: str
    fn: object  # term -> term | None


@dataclass
class Step:
    rule: str
    equation: str
    term: str


def rewrite(t, rules: list[Rule], log: list[Step], limit: int = 64):
    """Apply the first rule that matches anywhere (bottom-up) until none does; log every step."""
    def once(x):
        if isinstance(x, tuple) and x and x[0] in ("app", "add", "sub", "scale"):
            kids = list(x)
            for k in range(1, len(x)):
                if isinstance(x[k], tuple):
                    new, r = once(x[k])
                    if r:
                        kids[k] = new
                        return tuple(kids), r
        for rule in rules:
            y = rule.fn(x)
            if y is not None and y != x:
                return y, rule
        return x, None
    for _ in range(limit):
        t, rule = once(t)
        if rule is None:
            return t
        log.append(Step(rule.name, rule.equation, show(t)))
    return t


# ------------------------------------------------------------------ classification

@dataclass
class Premise:
    text: str
    status: str  # "ok" | "failed" | "assumed"
    where: str = ""
    detail: str = ""


@dataclass
class Shape:
    """What the spec's scheme is: its family, the operators in their roles, the premises checked."""
    family: str
    state: str = ""
    const: str = ""
    roles: dict = field(default_factory=dict)
    step: tuple = ()
    premises: list = field(default_factory=list)
    note: str = ""


def _op(t):
    return t[1] if t[0] == "app" else None


def _scope(ir, name: str, kind="step") -> tuple:
    for (k, lvl, i), b in ir.bindings.items():
        if k == kind and name in b and b[name] in ir.instances:
            return ir.instances[b[name]].scope
    return ()


def _where(ir, label: str) -> str:
    inst = ir.instances[label]
    return f"{ir.path}:{inst.span.line}" if inst.span else ir.path


def _labels(ir, name: str, kind="step") -> dict:
    """(level, i) -> instance label of a written operator name in `kind` equations."""
    return {(lvl, i): b[name] for (k, lvl, i), b in ir.bindings.items() if k == kind and name in b}


def classify(ir) -> Shape:
    steps = ir.equations.get("step") or []
    general = [a for g, eq in steps if g is None for a in eq]
    if not general:
        return Shape("unknown", note="the spec has no general `step` equation")
    state, _, t = general[0]
    S = ("var", state)
    # MgNet: u + B(f - A(u))
    if t[0] == "add" and t[1] == S and t[2][0] == "app" and t[2][2][0] == "sub" and t[2][2][1][0] == "var" \
            and t[2][2][2][0] == "app" and t[2][2][2][2] == S:
        A, B, f = t[2][2][2][1], t[2][1], t[2][2][1][1]
        shape = Shape("mgnet", state, f, {"A": A, "B": B}, t)
        A_l, B_l = _labels(ir, A), _labels(ir, B)
        fixed = all(ir.instances[x].fixed for x in list(A_l.values()) + list(B_l.values()))
        if fixed:
            shape.family = "linear-mgnet"
            co = [a for g, eq in ir.equations.get("coarsen", []) if g is None for a in eq]
            if any(lhs == state and term == ("const", 0.0) for lhs, _, term in co):
                shape.family = "mg0"
            R = next((term[1][1] for lhs, _, term in co if lhs == f and term[0] == "add" and term[1][0] == "app"),
                     None) or next((term[1] for lhs, _, term in co if lhs == f and term[0] == "app"), None)
            shape.roles["R"] = R
        bad = [x for x in sorted(set(A_l.values())) if ir.instances[x].klass != "linear"]
        shape.premises.append(Premise(
            f"the data-feature map {A} is linear: a convolution with no bias, no BN, no activation (3.17)",
            "failed" if bad else "ok", _where(ir, bad[0]) if bad else _where(ir, next(iter(A_l.values()))),
            f"{bad[0]} is {ir.instances[bad[0]].klass} ({ir.instances[bad[0]].def_text})" if bad else ""))
        per_grid = {}
        for (lvl, i), lab in A_l.items():
            per_grid.setdefault(lvl, set()).add(lab)
        untied = [lvl for lvl, labs in per_grid.items() if len(labs) > 1]
        shape.premises.append(Premise(
            f"{A} is one operator per grid, shared by all its steps", "failed" if untied else "ok",
            _where(ir, next(iter(A_l.values()))),
            f"grid {untied[0]} uses {', '.join(sorted(per_grid[untied[0]]))}" if untied else ""))
        shape.premises.append(Premise(f"the extractor {B} acts on the residual {f} − {A}({state})", "ok"))
        return shape
    # data-space forms
    def resid(x):  # X(T) with T depending on the state
        return x[0] == "app" and x[1] not in ("relu", "id") and contains(x[2], state)
    if t[0] in ("add", "sub") and resid(t[2]) and t[1] in (S, ("app", "relu", S)):
        X = t[2][1]
        per_step = "i" in _scope(ir, X)
        if t[1] == S:
            fam = "iresnet" if per_step else "mg-iresnet"
        else:
            fam = "sigma-resnet" if per_step else "mg-resnet"
        return Shape(fam, state, "", {"xi": X, "T": t[2][2], "sign": t[0]}, t)
    if t[0] == "app" and t[1] == "relu" and t[2][0] in ("add", "sub") and t[2][1] == S and resid(t[2][2]):
        X = t[2][2][1]
        return Shape("resnet", state, "", {"xi": X, "T": t[2][2][2], "sign": t[2][0]}, t)
    if t[0] == "app" and t[1] != "relu" and t[2] == ("app", "relu", S):
        return Shape("classic-cnn", state, "", {"chi": t[1]}, t)
    return Shape("unknown", state, note=f"the step {state} = {show(t)} has none of the forms of Table 1")


# ------------------------------------------------------------------ the relations of section 8 (and 6.1)

# (a, b, kind, theorem, relation, both_ways): "special-case" means a is b with tied weights (one way only)
EDGES = [
    ("mgnet", "mg-iresnet", "equivalent", "Theorem 8.1",
     "change of variables r^{l,i} = f^l − ξ^l u^{l,i} (8.2), ξ^l = A^l", True),
    ("mg-iresnet", "iresnet", "special-case", "(8.7)", "tying ξ^{l,i} = ξ^l for every step i", False),
    ("resnet", "sigma-resnet", "equivalent", "Lemma 8.2",
     "change of variables f̃^{l,i} = f^{l,i−1} + ξ^{l,i} σ η^{l,i} f^{l,i−1} (8.4), f^{l,i} = σ(f̃^{l,i})", True),
    ("mg-resnet", "sigma-resnet", "special-case", "(8.7)", "tying ξ^{l,i} = ξ^l for every step i", False),
    ("classic-cnn", "mg-resnet", "equivalent", "Theorem 8.3",
     "constructive: ξ^l = δ̂ (8.12), η^{l,i} = [id, −id]∘(χ^{l,i} − id) (8.13)", False),
    ("linear-mgnet", "mg0", "equivalent", "Theorem 6.1",
     "ũ^{l,i} = u^{l,i} + ũ^{l,0}, f̃^l = f^l + A^l ũ^{l,0} (6.10), for any Π", True),
    ("linear-mgnet", "mgnet", "equivalent", "definition", "a linear MgNet is an MgNet", False),
]


def relate(src: str, tgt: str):
    """Shortest path src -> tgt; a path of equivalences is `equivalent`, one tying makes it `special-case`."""
    if src == tgt:
        return "equivalent", []
    frontier, seen = [(src, [])], {src}
    while frontier:
        nxt = []
        for node, path in frontier:
            for a, b, kind, thm, rel, both in EDGES:
                for x, y, ok in ((a, b, True), (b, a, both)):
                    if x == node and ok and y not in seen:
                        seen.add(y)
                        p = path + [(x, y, kind, thm, rel, x != a)]
                        if y == tgt:
                            return ("special-case" if any(e[2] == "special-case" for e in p) else "equivalent"), p
                        nxt.append((y, p))
        frontier = nxt
    return "not-equivalent", []


def why_not(src: str, tgt: str) -> str:
    pair = {src, tgt}
    if pair == {"mg-resnet", "mg-iresnet"}:
        return "the step of (8.7) between Mg-ResNet and Mg-iResNet replaces σ(f) by f: the same only for f ≥ 0"
    general = {"iresnet": {"mg-iresnet", "mgnet", "linear-mgnet", "mg0"}, "sigma-resnet": {"mg-resnet", "classic-cnn"},
               "mg-resnet": {"classic-cnn"}, "mgnet": {"linear-mgnet", "mg0"}, "mg-iresnet": {"linear-mgnet", "mg0"}}
    if tgt in general.get(src, ()):
        return (f"{tgt} is a special case of {src} (tied or a-priori weights), not the other way round: "
                f"a general {src} is not a {tgt}")
    return f"no chain of the paper's relations (Theorems 6.1, 8.1, 8.3, Lemma 8.2, (8.7)) links {src} to {tgt}"


# ------------------------------------------------------------------ symbolic derivations

def derive_81(ir, shape: Shape) -> tuple[list[Step], bool]:
    A, B, f, u = shape.roles["A"], shape.roles["B"], shape.const, shape.state
    lin = next(p for p in shape.premises if p.text.startswith(f"the data-feature map {A} is linear"))
    shared = next(p for p in shape.premises if "one operator per grid" in p.text)
    log = [Step("definition of the residual", "(8.2)", f"r^{{l,i}} = {f} − {A}({u}^{{l,i}})")]
    step_u = subst(shape.step, u, ("var", f"{u}^{{l,i−1}}"))
    t = ("sub", ("var", f), ("app", A, step_u))
    log.append(Step("substitute the smoothing step", "(6.4)", show(t)))

    def linear(x):  # A(a ± b) -> A(a) ± A(b), guarded by A being linear
        if x[0] == "app" and x[1] == A and x[2][0] in ("add", "sub") and lin.status == "ok":
            return (x[2][0], ("app", A, x[2][1]), ("app", A, x[2][2]))
    def regroup(x):  # f − (a + b) -> (f − a) − b
        if x[0] == "sub" and x[2][0] == "add":
            return ("sub", ("sub", x[1], x[2][1]), x[2][2])
    def residual(x):  # f − A(u) -> r, guarded by A being the grid's one A
        if x[0] == "sub" and x[1] == ("var", f) and x[2] == ("app", A, ("var", f"{u}^{{l,i−1}}")) \
                and shared.status == "ok":
            return ("var", "r^{l,i−1}")
    t = rewrite(t, [Rule(f"linearity of ξ = {A}", "(3.17)", linear), Rule("regroup", "", regroup),
                    Rule("definition r = f − ξu", "(8.2)", residual)], log)
    ok = t == ("sub", ("var", "r^{l,i−1}"), ("app", A, ("app", B, ("var", "r^{l,i−1}"))))
    if ok:
        log.append(Step("Mg-iResNet form with ξ^l = " + A + ", σ∘η^{l,i}∘σ = " + B, "(8.1), Table 1",
                        f"r^{{l,i}} = r^{{l,i−1}} − {A}∘{B}(r^{{l,i−1}})"))
    else:
        failed = [p.text for p in (lin, shared) if p.status == "failed"]
        log.append(Step("stuck: premise fails", "", (failed[0] if failed else "no rule applies") +
                        f"; the term stays {show(t)}"))
    return log, ok


def derive_82(shape: Shape) -> list[Step]:
    s = shape.state
    log = [Step("definition of the pre-activation state", "(8.4)",
                f"f̃^{{l,i}} = {show(shape.step[2])}, so {s}^{{l,i}} = relu(f̃^{{l,i}})")]
    t = shape.step[2]

    def sigma_sub(x):  # every f^{l,i-1} is relu(f̃^{l,i-1})
        if x == ("var", s):
            return ("app", "relu", ("var", "f̃"))
    t = rewrite(t, [Rule(f"{s}^{{l,i−1}} = relu(f̃^{{l,i−1}})", "(8.4)", sigma_sub)], log, limit=8)
    log.append(Step("σ-ResNet form", "(8.3)", show(t)))
    log.append(Step("ReLU idempotence at i = 1: relu(relu(x)) = relu(x)", "premise",
                    "f̃^{l,0} := f^{l,0} works when f^{l,0} is itself a ReLU output"))
    return log


def derive_83(shape: Shape) -> list[Step]:
    chi, s = shape.roles["chi"], shape.state
    return [Step("choose ξ^l = δ̂ with δ̂([X, Y]) = Y − X", "(8.12)", "δ̂ maps 2c channels to c"),
            Step("choose η^{l,i} = [id, −id]∘(χ − id)", "(8.13)", f"η = split∘sub_id({chi})"),
            Step("[id, −id] splitting: relu(x) − relu(−x) = x", "(8.17), (8.21)",
                 "δ̂∘σ∘[id, −id] = −id (the paper prints relu(x) + relu(−x); that is |x|)"),
            Step("substitute", "(8.22)",
                 f"relu({s}) − δ̂(σ(η(relu({s})))) = relu({s}) + ({chi} − id)(relu({s})) = {chi}(relu({s}))")]


def derive_61(shape: Shape) -> list[Step]:
    A, S = shape.roles["A"], shape.roles["B"]
    return [Step("induction hypothesis", "(6.10)", "f̃^l = f^l + A^l ũ^{l,0},  u^{l,i} = ũ^{l,i} − ũ^{l,0}"),
            Step(f"linearity of {A}, R", "(6.11)", "f̃^{l+1} = R(f̃^l − A ũ^{l,ν}) + A ũ^{l+1,0} = f^{l+1} + A ũ^{l+1,0}"),
            Step(f"linearity of {A}, B = {S}", "(6.14)",
                 "ũ^{l,i} − ũ^{l,0} = u^{l,i−1} + S(f^l − A u^{l,i−1}): the MG0 step (5.12)")]


# ------------------------------------------------------------------ numerics

class Runner:
    """The source spec lowered in float64, eval mode, with its per-grid states and term evaluation."""

    def __init__(self, ir):
        import torch

        from .lowering import lower_ir
        self.torch = torch
        self.ir = ir
        with _f64():
            self.model = lower_ir(ir).double().eval()
        # random weights everywhere: BN statistics and affine parameters too (else BN is the identity)
        g = torch.Generator().manual_seed(1234)
        with torch.no_grad():
            for m in self.model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                    m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
                    m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                    m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)

    def states(self, seed: int) -> dict:
        torch = self.torch
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(2, *self.ir.input_ty.shape, generator=g, dtype=torch.float64)
        with torch.no_grad():
            return self.model.forward_states(x)

    def op(self, kind: str, level: int, i: int, name: str):
        label = self.ir.bindings[(kind, level, i)][name]
        return self.model.instance(label)

    def ev(self, t, env: dict, kind: str, level: int, i: int):
        F = self.torch.nn.functional
        h = t[0]
        if h == "var":
            return env[t[1]]
        if h == "app":
            x = self.ev(t[2], env, kind, level, i)
            if t[1] == "relu":
                return F.relu(x)
            if t[1] == "id":
                return x
            return self.op(kind, level, i, t[1])(x)
        if h == "add":
            return self.ev(t[1], env, kind, level, i) + self.ev(t[2], env, kind, level, i)
        if h == "sub":
            return self.ev(t[1], env, kind, level, i) - self.ev(t[2], env, kind, level, i)
        if h == "scale":
            return t[1] * self.ev(t[2], env, kind, level, i)
        raise ValueError(f"cannot evaluate {show(t)}")


def _f64():
    import torch

    from .lowering import default_dtype
    return default_dtype(torch.float64)


def _err(a, b) -> float:
    return (a - b).abs().max().item()


def _worst(run: Runner, seeds, pairs) -> tuple[float, dict]:
    """Max |a - b| over seeds and the (grid, step, a, b) values a theorem relates, and where it happened."""
    worst, where = 0.0, {}
    with _f64(), run.torch.no_grad():
        for seed in seeds:
            for level, i, a, b in pairs(run.states(seed), seed):
                e = _err(a, b)
                if e > worst:
                    worst, where = e, {"grid": level, "step": i, "seed": seed}
    return worst, where


def _steps(ir):
    for level in range(1, ir.grids + 1):
        for i in range(1, ir.nu[level - 1] + 1):
            yield level, i


def numeric_81(run: Runner, shape: Shape, per_step_xi: bool, seeds) -> tuple[float, dict]:
    """Per-grid residuals r^{l,i} = f^l − A u^{l,i} of the MgNet run vs the (Mg-)iResNet iteration with
    xi transferred through the tying map (a copy per step for iResNet)."""
    ir, A, B, u, f = run.ir, shape.roles["A"], shape.roles["B"], shape.state, shape.const

    def pairs(st, seed):
        for level in range(1, ir.grids + 1):
            with_a = [i for i in range(1, ir.nu[level - 1] + 1) if A in ir.bindings.get(("step", level, i), {})]
            if not with_a:
                continue
            xi = run.op("step", level, with_a[0], A)
            fl = st[(f, level, "down", 0)]
            r = fl - xi(st[(u, level, "down", 0)])
            for i in range(1, ir.nu[level - 1] + 1):
                xi_i = copy.deepcopy(xi) if per_step_xi else xi  # tying map: xi^{l,i} := A^l
                r = r - xi_i(run.op("step", level, i, B)(r))
                yield level, i, r, fl - xi(st[(u, level, "down", i)])
    return _worst(run, seeds, pairs)


def numeric_82(run: Runner, shape: Shape, seeds) -> tuple[float, dict]:
    """ResNet states f^{l,i} vs relu of the sigma-ResNet states run from f̃^{l,0} = f^{l,0}."""
    ir, s, X, T = run.ir, shape.state, shape.roles["xi"], shape.roles["T"]
    sign = 1.0 if shape.roles["sign"] == "add" else -1.0
    relu = run.torch.nn.functional.relu

    def pairs(st, seed):
        for level in range(1, ir.grids + 1):
            if not ir.nu[level - 1]:
                continue
            g = st[(s, level, "down", 0)]
            yield level, 0, relu(g), g  # the premise: the grid's input state is a ReLU output
            for i in range(1, ir.nu[level - 1] + 1):
                x = relu(g)
                g = x + sign * run.op("step", level, i, X)(run.ev(T, {s: x}, "step", level, i))
                yield level, i, relu(g), st[(s, level, "down", i)]
    return _worst(run, seeds, pairs)


def numeric_83(run: Runner, shape: Shape, seeds) -> tuple[float, dict]:
    """Classic CNN states vs the Mg-ResNet form with xi = delta-hat and eta = [id, -id](chi - id)."""
    ir, s, chi, torch = run.ir, shape.state, shape.roles["chi"], run.torch

    def pairs(st, seed):
        for level, i in _steps(ir):
            x = torch.nn.functional.relu(st[(s, level, "down", i - 1)])
            c = run.op("step", level, i, chi)
            eta = torch.cat([c(x) - x, -(c(x) - x)], 1)
            a, b = torch.nn.functional.relu(eta).chunk(2, 1)
            yield level, i, x - (b - a), st[(s, level, "down", i)]
    return _worst(run, seeds, pairs)


def numeric_61(run: Runner, shape: Shape, seeds, target=None) -> tuple[float, dict]:
    """All grid iterates: MG0's u^{l,i} vs MgNet's u^{l,i} − u^{l,0}, and f^l vs f̃^l − A ũ^{l,0}."""
    ir, A, S, R, u, f = run.ir, shape.roles["A"], shape.roles["B"], shape.roles.get("R"), shape.state, shape.const

    def pairs(st, seed):
        mg0 = target.states(seed) if target is not None else None
        fl = st[(f, 1, "down", 0)]
        for level in range(1, ir.grids + 1):
            a = run.op("step", level, 1, A)
            u0 = st[(u, level, "down", 0)]
            f_mg = mg0[(f, level, "down", 0)] if mg0 else fl
            yield level, 0, st[(f, level, "down", 0)], f_mg + a(u0)
            uu = run.torch.zeros_like(u0)
            for i in range(0, ir.nu[level - 1] + 1):
                if i:
                    uu = uu + run.op("step", level, i, S)(f_mg - a(uu))
                yield level, i, st[(u, level, "down", i)] - u0, mg0[(u, level, "down", i)] if mg0 else uu
            if level < ir.grids and not mg0:
                fl = run.op("coarsen", level, 0, R)(f_mg - a(uu))
    return _worst(run, seeds, pairs)


# ------------------------------------------------------------------ the check

def _small(ir):
    """Numerics at reduced width (the relations do not depend on it); returns (ir, note)."""
    from . import compile_ir
    small = {k: 16 for k in ("width", "fwidth") if k in ir.params and ir.params[k] > 16}
    if "n" in ir.params and ir.params["n"] > 33:
        small["n"] = 33
    if not small:
        return ir, ""
    params = dict(ir.params, **small)
    return compile_ir(ir.path, **params), "numerics at reduced size " + ", ".join(f"{k}={v}" for k, v in small.items())


def check_equiv(ir, target: str, trials: int = 3, seed: int = 0) -> dict:
    from . import compile_ir
    shape = classify(ir)
    tgt_ir = None
    if target.endswith(".mg"):
        tgt_ir = compile_ir(target)
        tfam = classify(tgt_ir).family
    else:
        if target not in FAMILIES:
            from .diagnostics import Diagnostic, SpecError, did_you_mean
            raise SpecError([Diagnostic(f"unknown equivalence target '{target}'", None,
                                        did_you_mean(target, FAMILIES) or "use a spec file or one of "
                                        + ", ".join(FAMILIES))])
        tfam = target
    src = shape.family
    premises = list(shape.premises)
    verdict, path = relate(src, tfam) if src != "unknown" else ("not-equivalent", [])
    relation = "; ".join(f"{x} → {y}: {rel} [{thm}{', read backwards' if rev else ''}]"
                         for x, y, kind, thm, rel, rev in path)
    if src == tfam and src != "unknown":
        relation = f"both have the {src} form of Table 1"
    theorem = next((e for e in path if e[3] not in ("(8.7)", "definition")), None)
    failed = [p for p in premises if p.status == "failed"]
    if failed and theorem and theorem[3] == "Theorem 8.1":
        verdict = "not-equivalent"
    if theorem and theorem[5] and tgt_ir is not None and verdict != "not-equivalent":
        # the theorem runs from the target's form: confirm it on the target spec
        inner = check_equiv(tgt_ir, src, trials, seed)
        inner.update(spec=ir.path, target=target, source_family=src, target_family=tfam,
                     relation=relation + " (confirmed on the target spec)")
        if inner["verdict"] != "not-equivalent":
            inner["verdict"] = verdict
        return inner
    seeds = [seed + k for k in range(trials)]
    small, note = _small(ir)
    sshape = classify(small)
    run = Runner(small)
    derivation: list[Step] = []
    tying: dict = {}
    max_error, where = None, {}
    thm = theorem[3] if theorem else None
    rev = bool(theorem and theorem[5])
    per_step = any(e[3] == "(8.7)" and e[1] in ("iresnet", "sigma-resnet") for e in path)
    if src == "unknown":
        relation = shape.note
        guess = _guess_mgnet(small)
        if guess and tfam in ("mg-iresnet", "iresnet", "mgnet"):
            max_error, where = numeric_81(run, guess, tfam == "iresnet", seeds)
            premises.append(Premise("the step has the MgNet form u + B(f − A(u)) (6.4)", "failed", ir.path,
                                    shape.note))
    elif thm == "Theorem 8.1" and not rev:
        derivation, ok = derive_81(ir, shape)
        if per_step:
            derivation.append(Step("tie ξ^{l,i} = ξ^l", "(8.7)", f"iResNet's ξ^{{l,i}} := {shape.roles['A']}[l], all i"))
            tying = _tying(ir, shape.roles["A"], "xi")
        else:
            tying = {f"xi[{lvl}]": lab for (lvl, i), lab in sorted(_labels(ir, shape.roles["A"]).items()) if i == 1}
        max_error, where = numeric_81(run, sshape, per_step, seeds)
    elif thm == "Theorem 8.1":
        derivation = [Step("definition of the features (reading (8.2) backwards)", "(8.2)",
                           "u^{l,0} = 0, f^l = r^{l,0}, u^{l,i} = u^{l,i−1} + B^{l,i}(r^{l,i−1}) gives r^{l,i} = f^l − ξ^l u^{l,i}"),
                      Step("linearity of ξ", "(3.17)", "ξ(u + B r) = ξu + ξBr")]
        lin = _xi_linear(ir, shape)
        premises.append(lin)
        max_error, where = numeric_81_reverse(run, sshape, seeds)
        if lin.status == "failed":
            verdict = "not-equivalent"
    elif thm == "Lemma 8.2":
        derivation = derive_82(shape) if not rev else [Step("f^{l,i} := relu(f̃^{l,i})", "(8.4)",
                                                            "the σ-ResNet states give ResNet states (7.8)")]
        max_error, where = numeric_82(run, sshape, seeds) if not rev else numeric_82_reverse(run, sshape, seeds)
        ok = max_error <= TOL
        premises.append(Premise("the state fed to each grid is a ReLU output (f_in / the transition ends in relu)",
                                "ok" if ok else "failed", _where(ir, next(iter(ir.instances))),
                                "" if ok else "f^{l,0} = relu(f̃^{l,0}) has no solution with f̃^{l,0} = f^{l,0}: relu(f) ≠ f"))
        if not ok:
            verdict = "not-equivalent"
        if per_step:
            tying = _tying(ir, shape.roles["xi"], "xi")
    elif thm == "Theorem 8.3":
        derivation = derive_83(shape)
        max_error, where = numeric_83(run, sshape, seeds)
        tying = {"xi[l]": "delta", "eta[l, i]": f"split . sub_id({shape.roles['chi']}[l, i])"}
    elif thm == "Theorem 6.1":
        derivation = derive_61(shape)
        target_run = Runner(_small(tgt_ir)[0]) if tgt_ir is not None and tfam == "mg0" and src != "mg0" else None
        max_error, where = numeric_61(run, sshape, seeds, target_run)
        if src == "mg0":
            tying = {"Pi[l]": "0"}
    elif path or src == tfam:
        # only tyings between data-space forms: the states coincide with xi copied per step
        derivation = [Step("tie ξ^{l,i} = ξ^l", "(8.7)", relation)] if path else []
        if shape.roles.get("xi"):
            tying = _tying(ir, shape.roles["xi"], "xi") if path else {}
            max_error, where = numeric_tied(run, sshape, seeds)
    if verdict == "not-equivalent" and not path and src != "unknown":
        relation = why_not(src, tfam)
    if max_error is not None and verdict == "not-equivalent" and max_error <= TOL and \
            any(p.status == "failed" for p in premises):
        raise RuntimeError(f"a premise fails but the numerics found no counterexample (max error {max_error:.3g}): "
                           "this is a bug in mgdsl, please report it")
    if max_error is not None and verdict != "not-equivalent" and max_error > TOL:
        raise RuntimeError(f"the symbolic verdict ({verdict}) and the numerics (max error {max_error:.3g}) "
                           "disagree: this is a bug in mgdsl, please report it")
    return {
        "spec": ir.path, "source_family": src, "target": target, "target_family": tfam, "verdict": verdict,
        "relation": relation, "tying": tying,
        "derivation": [{"rule": s.rule, "equation": s.equation, "term": s.term} for s in derivation],
        "premises": [{"premise": p.text, "status": p.status, "where": p.where, "detail": p.detail} for p in premises],
        "max_error": max_error, "counterexample": where if (max_error or 0) > TOL else None,
        "numerics": {"trials": trials, "seed": seed, "dtype": "float64", "mode": "eval", "note": note},
    }


def _xi_linear(ir, shape: Shape) -> Premise:
    labs = sorted(set(_labels(ir, shape.roles["xi"]).values()))
    bad = [x for x in labs if ir.instances[x].klass != "linear"]
    return Premise(f"ξ = {shape.roles['xi']} is linear (no bias, no BN, no activation)", "failed" if bad else "ok",
                   _where(ir, bad[0] if bad else labs[0]), f"{bad[0]} is {ir.instances[bad[0]].klass}" if bad else "")


def numeric_81_reverse(run: Runner, shape: Shape, seeds) -> tuple[float, dict]:
    """From an (Mg-)iResNet run: u^{l,i} = u^{l,i-1} + T(r^{l,i-1}) with u^0 = 0, f = r^0; check r^i = f - xi u^i."""
    ir, s, X, T = run.ir, shape.state, shape.roles["xi"], shape.roles["T"]
    sign = -1.0 if shape.roles["sign"] == "sub" else 1.0

    def pairs(st, seed):
        for level in range(1, ir.grids + 1):
            r0 = st[(s, level, "down", 0)]
            uu = run.torch.zeros_like(r0)
            for i in range(1, ir.nu[level - 1] + 1):
                uu = uu + run.ev(T, {s: st[(s, level, "down", i - 1)]}, "step", level, i)
                yield level, i, st[(s, level, "down", i)], r0 + sign * run.op("step", level, i, X)(uu)
    return _worst(run, seeds, pairs)


def numeric_82_reverse(run: Runner, shape: Shape, seeds) -> tuple[float, dict]:
    """From a sigma-ResNet run g: f^i := relu(g^i) must satisfy the ResNet step f^i = relu(f + X(T(f)))."""
    ir, s, X, T = run.ir, shape.state, shape.roles["xi"], shape.roles["T"]
    sign = 1.0 if shape.roles["sign"] == "add" else -1.0
    relu = run.torch.nn.functional.relu

    def pairs(st, seed):
        for level, i in _steps(ir):
            f_prev = relu(st[(s, level, "down", i - 1)])
            inner = run.ev(T, {s: st[(s, level, "down", i - 1)]}, "step", level, i)
            yield level, i, relu(f_prev + sign * run.op("step", level, i, X)(inner)), relu(st[(s, level, "down", i)])
    return _worst(run, seeds, pairs)


def numeric_tied(run: Runner, shape: Shape, seeds) -> tuple[float, dict]:
    """Re-evaluate each written step with xi^{l,i} := the grid's xi^l (the tying map): the states must agree."""
    ir, s, t = run.ir, shape.state, shape.step

    def pairs(st, seed):
        for level, i in _steps(ir):
            yield level, i, run.ev(t, {s: st[(s, level, "down", i - 1)]}, "step", level, i), st[(s, level, "down", i)]
    return _worst(run, seeds, pairs)


def _tying(ir, name: str, target_name: str) -> dict:
    """iResNet's per-step xi^{l,i} -> the one instance the spec uses on grid l."""
    return {f"{target_name}[{lvl}, {i}]": lab for (lvl, i), lab in sorted(_labels(ir, name).items())}


def _guess_mgnet(ir) -> Shape | None:
    names = set().union(*(b for (k, _, _), b in ir.bindings.items() if k == "step")) if ir.bindings else set()
    if {"A", "B"} <= names and "u" in ir.spaces and "f" in ir.spaces:
        return Shape("mgnet", "u", "f", {"A": "A", "B": "B"})
    return None


def main(ir, args) -> int:
    out = check_equiv(ir, args.equiv, args.trials, args.seed)
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        print(f"{out['spec']} ({out['source_family']}) vs {out['target']} ({out['target_family']}): {out['verdict']}")
        if out["relation"]:
            print(f"  relation: {out['relation']}")
        if out["tying"]:
            print("  tying: " + ", ".join(f"{k} := {v}" for k, v in out["tying"].items()))
        if out["derivation"]:
            print("  derivation:")
            for k, s in enumerate(out["derivation"], 1):
                eq = f" {s['equation']}" if s["equation"] else ""
                print(f"    {k}. [{s['rule']}{eq}]  {s['term']}")
        for p in out["premises"]:
            mark = {"ok": "ok", "failed": "FAILED", "assumed": "assumed"}[p["status"]]
            extra = f" — {p['detail']}" if p["detail"] else ""
            where = f" ({p['where']})" if p["where"] else ""
            print(f"  premise {mark}: {p['premise']}{where}{extra}")
        if out["max_error"] is not None:
            n = out["numerics"]
            print(f"  numerics: max error {out['max_error']:.3g} over {n['trials']} float64 trials"
                  + (f" ({n['note']})" if n["note"] else ""))
        if out["counterexample"]:
            print(f"  counterexample: {out['counterexample']}")
    sys.stdout.flush()
    return 0 if out["verdict"] in ("equivalent", "special-case") else 1
