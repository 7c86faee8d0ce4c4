"""Numerical confirmation of the relations: always two different models, in float64, eval mode.

The spec is lowered and run as it is (its own generated forward). The target is the canonical spec of
the target family (mgdsl/families/*.mg), or a target spec file, whose written equations are evaluated
here with its own sharing: each of its operator slots receives the spec's operator the correspondence
names (a tying gives every per-step slot ξ^{l,i} of iResNet the spec's ξ^l: in eval mode one module and its
copies compute the same), or, for a target file with fixed operators, the target's own. Every random
choice (weights, BN statistics, inputs) comes from the seed."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from . import normal as N
from .lowering import Delta, Split, SubId, default_dtype, lower_ir
from .prims import PRIMS

TOL = 1e-9


class Uncarried(Exception):
    """An operator whose layers the lowering fused, so it cannot be carried factor by factor."""


class Carried(nn.Module):
    """coef · f_1 ∘ ... ∘ f_k of the spec's layer modules (applied innermost first)."""

    def __init__(self, mods: list[nn.Module], coef: float, text: str):
        super().__init__()
        self.mods = nn.ModuleList(mods)
        self.coef = float(coef)
        self.text = text

    def forward(self, x):
        for m in self.mods:
            x = m(x)
        return x if self.coef == 1 else self.coef * x


class SumOf(nn.Module):
    """A1 + A2 + ...: a linear operator written as a sum of terms."""

    def __init__(self, parts: list[nn.Module], text: str):
        super().__init__()
        self.parts = nn.ModuleList(parts)
        self.text = text

    def forward(self, x):
        out = self.parts[0](x)
        for p in self.parts[1:]:
            out = out + p(x)
        return out


class Const(nn.Module):
    def __init__(self, c: float):
        super().__init__()
        self.c = c

    def forward(self, x):
        return self.c * x


class Prim(nn.Module):
    """A parameter-free primitive (relu, id, a pool) built as the lowering builds it, from prims.PRIMS: the
    target side computes it with the very module the spec side runs (one table, not a second copy)."""

    def __init__(self, name: str):
        super().__init__()
        self.mod = PRIMS[name].lower(None, None)

    def forward(self, x):
        return self.mod(x)


class Lin(nn.Module):
    """W of an affine module m(x) = W x + b: m(x) − m(0)."""

    def __init__(self, m: nn.Module):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m(x) - self.m(torch.zeros_like(x))


class Bias(nn.Module):
    """b = m(0) of an affine module whose input has `cin` channels, at the spatial size of the argument
    the composite operator is applied to (b does not depend on that argument's values)."""

    def __init__(self, m: nn.Module, cin: int):
        super().__init__()
        self.m, self.cin = m, cin

    def forward(self, x):
        return self.m(x.new_zeros((x.shape[0], self.cin) + tuple(x.shape[2:])))


class Seq(nn.Module):
    def __init__(self, *mods, text: str | None = None):
        super().__init__()
        self.mods = nn.ModuleList(mods)
        self.text = text

    def forward(self, x):
        for m in self.mods:
            x = m(x)
        return x


# ------------------------------------------------------------------ the spec side

class SpecRun:
    """The spec lowered in float64 with seeded random weights, BN statistics and inputs."""

    def __init__(self, ir, seed: int):
        self.ir = ir
        self.seed = seed
        with default_dtype(torch.float64):
            torch.manual_seed(seed)
            self.model = lower_ir(ir).double().eval()
        randomise(self.model, seed)

    def inputs(self, trial: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 7919 + trial)
        return torch.randn(2, *self.ir.input_ty.shape, generator=g, dtype=torch.float64)

    def states(self, trial: int) -> dict:
        with torch.no_grad():
            return self.model.forward_states(self.inputs(trial))

    def leaf(self, f: N.Factor) -> nn.Module:
        if f.key[0] == "prim":
            return Prim(f.kind)
        if f.kind == "const":
            return Const(f.key[1])
        if f.key[0] == "unbound":
            raise Uncarried(f"{f.name} is never applied to a non-zero value")
        label, k = f.key[:2]
        m = self.model.instance(label)
        if isinstance(m, nn.Sequential):
            m = m[k]
        elif len(self.ir.instances[label].layers) != 1:
            raise Uncarried(f"{label} is lowered as one fused module")
        if f.part == "lin":
            return Lin(m)
        if f.part == "off":
            return Bias(m, self.ir.instances[label].layers[k].cin)
        return m

    def carry(self, op) -> nn.Module:
        """A role (an Op or a sum of Ops) as a module that computes with the spec's own layers."""
        if isinstance(op, tuple):
            parts = [self.carry(o) for o in op]
            return SumOf(parts, " + ".join(p.text for p in parts))
        return Carried([self.leaf(f) for f in reversed(op.fs)], op.coef, op.show())


def randomise(model: nn.Module, seed: int) -> None:
    """BN statistics and affine parameters, trained scalars: random too, else BN is the identity."""
    from .lowering import Scale
    g = torch.Generator().manual_seed(seed + 1234)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g, dtype=torch.float64) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g, dtype=torch.float64) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g, dtype=torch.float64) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g, dtype=torch.float64) - 0.5)
            elif isinstance(m, Scale):
                m.weight.copy_(torch.rand((), generator=g, dtype=torch.float64) + 0.5)


def trajectory(ir, st: dict, names) -> dict:
    """level -> [ {state: value} for i = 0..nu_l ] from the spec's forward states."""
    out = {}
    for level in range(1, ir.grids + 1):
        its = []
        for i in range(ir.nu[level - 1] + 1):
            its.append({s: st[(s, level, "down", i)] for s in names if (s, level, "down", i) in st})
        out[level] = its
    return out


# ------------------------------------------------------------------ the target side

@dataclass
class Target:
    """A target spec's IR evaluated with its own equations and sharing; `slots` maps instance labels to
    the modules that fill them."""
    ir: object
    slots: dict = field(default_factory=dict)

    def op(self, kind: str, level: int, i: int, name: str) -> nn.Module:
        label = self.ir.bindings.get((kind, level, i), {}).get(name)
        if label is None:
            label = slot_label(self.ir, name, level, i)
        return self.slots[label]

    def ev(self, t, env: dict, kind: str, level: int, i: int):
        h = t[0]
        if h == "var":
            return env[t[1]]
        if h == "const":
            return None
        if h == "app":
            x = self.ev(t[2], env, kind, level, i)
            if t[1] in N.INLINE_PRIMS:
                return Prim(t[1])(x)
            return self.op(kind, level, i, t[1])(x)
        if h in ("add", "sub"):
            a, b = self.ev(t[1], env, kind, level, i), self.ev(t[2], env, kind, level, i)
            return a + b if h == "add" else a - b
        if h == "scale":
            return t[1] * self.ev(t[2], env, kind, level, i)
        raise ValueError(f"cannot evaluate {t[0]}")

    def step(self, env: dict, level: int, i: int) -> dict:
        new = dict(env)
        for state, _, term in N.equation(self.ir, "step", i):
            new[state] = self.ev(term, env, "step", level, i)
        return new

    def coarsen(self, env: dict, level: int) -> dict:
        new: dict = {}
        for state, _, term in N.equation(self.ir, "coarsen", level):
            scope = dict(env, **{f"{s}[l+1]": v for s, v in new.items()})
            v = self.ev(term, scope, "coarsen", level, 0)
            new[state] = v if v is not None else torch.zeros_like(env[state])
        return new


def ties(t: Target) -> dict:
    """label -> what it holds, for the target's slots that share a trained parameter with another of its
    slots: there the spec ties what the target family leaves free (8.7), so the spec is a special case."""
    owners: dict = {}
    for label, m in t.slots.items():
        for p in m.parameters():
            owners.setdefault(id(p), set()).add(label)
    tied = {label for labels in owners.values() if len(labels) > 1 for label in labels}
    return {label: getattr(t.slots[label], "text", label) for label in sorted(tied)}


def slot_label(ir, name: str, level: int, i: int) -> str:
    """The instance a canonical family spec uses for `name` at (level, step), from its index scope; for one the
    elaborator dropped because it was only ever applied to zero, a slot of its own, name[level, step]."""
    for label, inst in ir.instances.items():
        if inst.name != name:
            continue
        want = tuple({"l": level, "i": i}.get(v) for v in inst.scope)
        if all(w is None or w == x for w, x in zip(want, inst.index)):
            return label
    return f"{name}[{level}, {i}]"


def fill(target: Target, roles: dict, names: dict) -> dict:
    """Give each slot instance of the target the carried role (a tying, iResNet's ξ^{l,i} := the spec's ξ^l,
    fills each per-step slot). Returns label -> what it holds, the tying map the user reads."""
    tying = {}
    for (level, i), r in sorted(roles.items()):
        for slot, role in names.items():
            if role not in r:
                continue
            label = slot_label(target.ir, slot, level, i)
            if label in target.slots:
                continue
            target.slots[label] = r[role]
            tying[label] = r[role].text
    return tying


def _err(a, b) -> float:
    if a.shape != b.shape:
        return float("inf")
    return (a - b).abs().max().item()


@dataclass
class Outcome:
    """max |a − b| over trials, grids and steps of what a relation equates, and where it was largest."""
    error: float = 0.0
    where: dict = field(default_factory=dict)
    first: dict = field(default_factory=dict)  # the first (trial, grid, step) in running order past TOL

    def see(self, e: float, **where) -> None:
        if (e > TOL or e != e) and not self.first:
            self.first = where
        if e > self.error or (e != e):
            self.error, self.where = e, where


# ------------------------------------------------------------------ canonical family specs

_CANON: dict = {}


def canonical(family: str, grids: int, nu: int):
    """The IR of mgdsl/families/<family>.mg with as many grids and steps as the spec."""
    key = (family, grids, nu)
    if key not in _CANON:
        from importlib.resources import files

        from . import compile_spec
        res = files("mgdsl") / "families" / f"{family}.mg"
        _CANON[key] = compile_spec(f"<mgdsl>/families/{family}.mg", {"J": grids, "nu": max(nu, 1)},
                                   text=res.read_text())
    return _CANON[key]


# the slot names of each canonical spec -> the role of a Reading that fills them
SLOTS = {
    "mgnet": {"A": "A", "B": "B"}, "linear-mgnet": {"A": "A", "B": "B"},
    "mg-iresnet": {"xi": "xi", "B": "B"}, "iresnet": {"xi": "xi", "B": "B"},
    "mg-resnet": {"xi": "xi", "T": "T"}, "sigma-resnet": {"xi": "xi", "T": "T"}, "resnet": {"xi": "xi", "T": "T"},
    "classic-cnn": {"chi": "chi"}, "mg0": {"A": "A", "S": "B", "R": "R"},
}
FEATURE = ("mgnet", "linear-mgnet", "mg0")


# the transition slots of each canonical spec -> the name of the carried transition operator that fills them
TRANS = {
    "mgnet": {"R": "R", "Pi": "Pi"}, "linear-mgnet": {"R": "R", "Pi": "Pi"},
    "mg-iresnet": {"D": "D"}, "iresnet": {"D": "D"}, "mg-resnet": {"D": "D"}, "sigma-resnet": {"D": "D"},
    "resnet": {"D": "D"}, "classic-cnn": {"D": "D"},
}


class Run:
    """One relation (edge of the chain) evaluated numerically on the networks' own states: the target runs
    from the spec's input through every grid, step and transition (its transition operators carried from
    the spec's), and what the relation equates is compared at every (grid, step). A grid whose transition
    could not be carried restarts from the spec's state. The source trajectory and roles go in, the
    target's come out (for the next relation of a chain)."""

    def __init__(self, spec: SpecRun, grids: int, nu: int):
        self.spec, self.grids, self.nu = spec, grids, nu
        self.trans: dict = {}  # level -> {name: module}: the current source's transition operators

    def target(self, family: str, roles: dict, trans: dict | None = None) -> Target:
        t = Target(canonical(family, self.grids, self.nu))
        self.tying = fill(t, roles, SLOTS[family])
        self.last = t
        for level, ops in (self.trans if trans is None else trans).items():
            for slot, name in TRANS.get(family, {}).items():
                if name in ops:
                    t.slots[slot_label(t.ir, slot, level, 0)] = ops[name]
        return t

    @staticmethod
    def coarsen(t: Target, env: dict, level: int) -> dict | None:
        """The target's transition from grid `level`, or None where an operator of it was not carried."""
        try:
            return t.coarsen(env, level)
        except KeyError:
            return None

    # ---- Theorem 8.1: r^{l,i} = f^l − A^l(u^{l,i}), the target's ξ^l the linear part W of A^l
    def thm81(self, traj, roles, out: Outcome, trial: int, names):
        u, f = names
        t = self.target("mg-iresnet", {k: {"xi": r.get("W", r["A"]), "B": r["B"]} for k, r in roles.items()},
                        {lv: {"D": ops["R"]} for lv, ops in self.trans.items() if "R" in ops})
        new_traj, new_roles, r = {}, {}, None
        for level, its in sorted(traj.items()):
            key = min((k for k in roles if k[0] == level), default=None)
            A = roles[key]["A"] if key else None
            nxt = self.coarsen(t, {"f": r}, level - 1) if r is not None else None
            if A is None:  # a grid without steps: nothing to compare, the transition carries on
                r = nxt["f"] if nxt is not None else None
                new_traj[level] = [{"f": r}]
                continue
            r0 = its[0][f] - A(its[0][u])
            if nxt is not None:
                out.see(_err(nxt["f"], r0), grid=level, step=0, trial=trial)
            r = nxt["f"] if nxt is not None else r0
            seq = [{"f": r}]
            for i in range(1, len(its)):
                r = t.step({"f": r}, level, i)["f"]
                if f in its[i] and u in its[i]:  # a state that feeds nothing is not computed
                    out.see(_err(r, its[i][f] - A(its[i][u])), grid=level, step=i, trial=trial)
                seq.append({"f": r})
                new_roles[(level, i)] = {"xi": roles[key].get("W", A), "B": roles[(level, i)]["B"]}
            new_traj[level] = seq
        self.trans = {lv: {"D": ops["R"]} for lv, ops in self.trans.items() if "R" in ops}
        return new_traj, new_roles, ("f",)

    def thm81_back(self, traj, roles, out: Outcome, trial: int, names):
        """Ends every chain it is in (equiv.RELATIONS: terminal): compares only, returns no trajectory for a next relation.
        The MgNet's R and Π are the iResNet's D: r^{l+1,0} = R(r^{l,ν}) whatever Π is."""
        (s,) = names
        t = self.target("mgnet", {k: {"A": r["xi"], "B": r["B"]} for k, r in roles.items()},
                        {lv: {"R": ops["D"], "Pi": copy.deepcopy(ops["D"])}  # any Π: a copy, not a tying
                         for lv, ops in self.trans.items() if "D" in ops})
        env = None
        for level, its in sorted(traj.items()):
            key = min((k for k in roles if k[0] == level), default=None)
            nxt = self.coarsen(t, env, level - 1) if env is not None else None
            env = dict(env, **nxt) if nxt is not None else {"u": torch.zeros_like(its[0][s]), "f": its[0][s]}
            if key is None:
                continue
            xi = roles[key]["xi"]
            if nxt is not None:
                out.see(_err(its[0][s], env["f"] - xi(env["u"])), grid=level, step=0, trial=trial)
            for i in range(1, len(its)):
                env = t.step(env, level, i)
                out.see(_err(its[i][s], env["f"] - xi(env["u"])), grid=level, step=i, trial=trial)
        return None, None, None

    # ---- identity correspondence: the same family, a tying (8.7), a definition
    def same(self, family: str):
        def run(traj, roles, out: Outcome, trial: int, names):
            t = self.target(family, roles)
            canon = ("u", "f") if family in FEATURE else ("f",)
            new_traj, env = {}, None
            for level, its in sorted(traj.items()):
                nxt = self.coarsen(t, env, level - 1) if env is not None else None
                if nxt is None:
                    env = {c: its[0][n] for c, n in zip(canon, names)}
                else:
                    env = dict(env, **nxt)
                    for c, n in zip(canon, names):
                        if n in its[0]:
                            out.see(_err(env[c], its[0][n]), grid=level, step=0, trial=trial, state=n)
                seq = [dict(env)]
                for i in range(1, len(its)):
                    env = t.step(env, level, i)
                    for c, n in zip(canon, names):
                        if n in its[i]:
                            out.see(_err(env[c], its[i][n]), grid=level, step=i, trial=trial, state=n)
                    seq.append(dict(env))
                new_traj[level] = seq
            return new_traj, roles, canon
        return run

    # ---- Lemma 8.2: f^{l,i} = σ(f̃^{l,i}); forwards from a ResNet, backwards from a σ-ResNet
    def lemma82(self, traj, roles, out: Outcome, trial: int, names):
        """The σ-ResNet's D is the ResNet's D∘σ, so that f̃^{l+1,0} = D(f^{l,ν}) = f^{l+1,0}. Hands on the
        σ-ResNet's own states f̃^{l,i} (same roles, transitions D∘σ) to a next relation of the chain, e.g. the
        definition of Mg-ResNet (8.6)."""
        (s,) = names
        trans = {lv: {"D": Seq(Prim("relu"), ops["D"])} for lv, ops in self.trans.items() if "D" in ops}
        t = self.target("sigma-resnet", roles, trans)
        relu = torch.nn.functional.relu
        g, new_traj = None, {}
        for level, its in sorted(traj.items()):
            nxt = self.coarsen(t, {"f": g}, level - 1) if g is not None else None
            g = nxt["f"] if nxt is not None else its[0][s]  # f̃^{l,0} := f^{l,0}: needs f^{l,0} = σ(f^{l,0})
            out.see(_err(relu(g), its[0][s]), grid=level, step=0, trial=trial)
            seq = [{"f": g}]
            for i in range(1, len(its)):
                g = t.step({"f": g}, level, i)["f"]
                out.see(_err(relu(g), its[i][s]), grid=level, step=i, trial=trial)
                seq.append({"f": g})
            new_traj[level] = seq
        self.trans = trans
        return new_traj, roles, ("f",)

    def lemma82_back(self, traj, roles, out: Outcome, trial: int, names):
        """Ends every chain it is in (equiv.RELATIONS: terminal): compares only. Each grid starts from σ of the spec's state
        (the ResNet's transition would have to read σ(f̃), which a σ-ResNet's D need not)."""
        (s,) = names
        t = self.target("resnet", roles, {})
        relu = torch.nn.functional.relu
        for level, its in traj.items():
            if len(its) < 2:
                continue
            x = relu(its[0][s])
            for i in range(1, len(its)):
                x = t.step({"f": x}, level, i)["f"]
                out.see(_err(x, relu(its[i][s])), grid=level, step=i, trial=trial)
        return None, None, None

    # ---- Theorem 8.3: ξ = δ̂ (8.12), η = [id, −id]∘(χ − id) (8.13)
    def thm83(self, traj, roles, out: Outcome, trial: int, names):
        built = {k: {"xi": Delta(), "T": Seq(SubId(r["chi"]), Split(), Prim("relu"),
                                             text=f"relu ∘ [id, −id] ∘ ({r['chi'].text} − id)")}
                 for k, r in roles.items()}
        for r in built.values():
            r["xi"].text = "δ̂"
        run = self.same("mg-resnet")
        new_traj, _, canon = run(traj, built, out, trial, names)
        return new_traj, built, canon

    # ---- (8.7) σ(f) ↔ f between Mg-ResNet and Mg-iResNet: the same weights, σ(f) replaced by f
    def sigma_swap(self, traj, roles, out: Outcome, trial: int, names):
        swapped = {k: {"xi": r["xi"], "B": Seq(Prim("relu"), r["T"])} for k, r in roles.items()}
        return self.same("iresnet")(traj, swapped, out, trial, names)


def thm61(spec_traj, roles, out: Outcome, trial: int, names, target: Target, tnames, tnu):
    """Theorem 6.1 over the whole fine-to-coarse pass: MG0's u^{l,i} = ũ^{l,i} − ũ^{l,0} and
    f^l = f̃^l − A^l ũ^{l,0}, MG0 run from f^1 on its own (its own transitions, its own number of steps).
    Each step is compared where both take the same number of steps on a grid; where they do not, the grid's
    last iterates (what the coarser grid and the output read)."""
    u, f = names
    tu, tf = tnames
    fl = None  # what MG0 is handed on this grid: f^1 on the first, then its own coarsening
    for level in sorted(spec_traj):
        its = spec_traj[level]
        k = min((k for k in roles if k[0] == level), default=None)
        if k is None:
            raise Uncarried(f"grid {level} has no step, so no A^{level} to form "
                            f"f^{level} − A^{level} u^{{{level},0}}")
        start = its[0][f] - roles[k]["A"](its[0][u])
        if fl is None:
            fl = start
        out.see(_err(fl, start), grid=level, step=0, trial=trial, state=f)
        env = {tu: torch.zeros_like(its[0][u]), tf: fl}
        m, n = len(its) - 1, tnu[level - 1]
        for i in range(1, n + 1):
            env = target.step(env, level, i)
            if m == n:
                out.see(_err(env[tu], its[i][u] - its[0][u]), grid=level, step=i, trial=trial, state=u)
        if m != n:
            out.see(_err(env[tu], its[m][u] - its[0][u]), grid=level, step=m, trial=trial, state=u)
        fl = target.coarsen(env, level)[tf] if level < len(spec_traj) else None
    return out


def _iterates(st: dict, s: str) -> list:
    """(level, step, value) of every iterate of state s on the way down, from the spec's forward states."""
    return [(k[1], k[3], v) for k, v in st.items() if isinstance(k, tuple) and k[0] == s and k[2] == "down"]


def witness(spec: SpecRun, rd, premise, trial: int) -> float:
    """Evaluate what refutes a premise: a linearity counterexample, a state that moves, two operators that
    should be one. 0 when nothing refutes it."""
    st = spec.states(trial)
    w = premise.witness
    kind = w.kind if w else None
    g = torch.Generator().manual_seed(spec.seed * 31 + trial)
    with torch.no_grad():
        if kind == "fixed":  # every iterate of the state on its grid against the grid's first
            s = w.state
            return max((_err(v, st[(s, lv, "down", 0)]) for lv, i, v in _iterates(st, s) if i > 0), default=0.0)
        if kind == "relu-input":  # the grid's first iterate of the state is left as it is by σ
            s = w.state
            return max((_err(torch.relu(v), v) for _, i, v in _iterates(st, s) if i == 0), default=0.0)
        if kind == "linear-op":
            ((level, i),), s, op = w.keys, w.state, w.op
            try:
                m = spec.carry(op)
            except Uncarried:
                return 0.0
            x = st[(s, level, "down", i - 1)]
            x = x + torch.randn(x.shape, generator=g, dtype=x.dtype)
            y = torch.randn(x.shape, generator=g, dtype=x.dtype)
            return _err(m(0.7 * x - 1.3 * y), 0.7 * m(x) - 1.3 * m(y))
        if kind == "tied":
            (k1, k2), role, s = w.keys, w.role, w.state
            try:
                a, b = spec.carry(rd.roles[k1][role]), spec.carry(rd.roles[k2][role])
            except Uncarried:
                return 0.0
            x = st[(s, k2[0], "down", k2[1] - 1)]
            x = x + torch.randn(x.shape, generator=g, dtype=x.dtype)
            return _err(a(x), b(x))
    return 0.0
