"""Which form of Table 1 a spec's scheme has, read from the normal form of every step on every grid, and
the premises of that form proved (or refuted) from IR facts. No torch here.

A Reading names the roles the paper's theorems speak of (A, B, ξ, η, χ) as composite operators per
(grid, step), and lists the premises in the order a derivation needs them; a premise that fails carries a
`witness` that the numerics evaluate to confirm the failure (a linearity counterexample, a state that moves,
two steps whose operators differ)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from . import normal as N

DATA_FAMILIES = ("iresnet", "mg-iresnet", "sigma-resnet", "mg-resnet", "resnet", "classic-cnn")
FEATURE_FAMILIES = ("mgnet", "linear-mgnet", "mg0")


@dataclass(frozen=True)
class Witness:
    """What the numerics evaluate when a premise fails: `model` (the relation's own numerics), `fixed` (a
    state that should not move), `relu-input` (a grid input that should be a ReLU output), `linear-op`
    (op at keys[0] on the state), `tied` (role at keys[0] against keys[1] on the state)."""
    kind: str
    state: str = ""
    keys: tuple = ()
    role: str = ""
    op: object = None


MODEL = Witness("model")


@dataclass
class Premise:
    """One hypothesis of a form or theorem: ok, failed (refuted from the IR), or unproved."""
    text: str
    status: str = "ok"  # ok | failed | unproved
    where: str = ""
    detail: str = ""
    witness: Witness | None = None  # what the numerics evaluate when it fails


@dataclass
class Reading:
    """The spec's scheme in the paper's terms: the form, its roles per (grid, step), its premises."""
    family: str                     # a family of Table 1 / section 5, or "unknown"
    state: str = ""                 # the iterated state (u for MgNet, f for data-space forms)
    data: str = ""                  # MgNet's f
    roles: dict = field(default_factory=dict)   # (level, i) -> {role: Op | tuple[Op, ...]}
    premises: list = field(default_factory=list)
    note: str = ""                  # why the form is unknown
    shape: str = ""                 # the form in words, for the derivation log
    # level -> {slot: Op}: the transition's operators (MgNet's R and Π, a data form's D) that the numerics
    # carry to the target's coarsening, so that both networks run from the same input through every grid
    trans: dict = field(default_factory=dict)
    # states proved ≥ 0 on every state the network reaches, whose relu(s) the reading took as s
    nonneg: tuple = ()

    @property
    def ok(self) -> bool:
        return all(p.status == "ok" for p in self.premises)

    def first_failure(self) -> Premise | None:
        return next((p for p in self.premises if p.status != "ok"), None)


def where(ir, label: str) -> str:
    inst = ir.instances.get(label)
    if inst is None or inst.span is None:
        return ir.path
    return f"{ir.path}:{inst.span.line}"


def _def(ir, label: str) -> str:
    inst = ir.instances.get(label)
    return f"{label} = {inst.def_text.split('=', 1)[-1].split('#')[0].strip()}" if inst and inst.def_text else label


def steps(ir):
    for level in range(1, ir.grids + 1):
        for i in range(1, ir.nu[level - 1] + 1):
            yield level, i


def _same(a, b) -> bool:
    return a == b


# ------------------------------------------------------------------ MgNet (6.4)

class MgStep(NamedTuple):
    """One step read as u + c·B(f − A(u)), A(u) = Σ xi(u) + Σ b."""
    u: str            # the iterated state
    f: str            # the state B's residual reads
    B: N.Op
    xi: tuple         # the linear terms of A (Ops applied to u)
    residual: bool    # B acts on the residual (False: B(f) − B(A(u)), applied to the parts)
    b: tuple = ()     # the offsets of A's affine layers (Ops ending in an offset factor)


class DataStep(NamedTuple):
    """One step read in a data-space form of Table 1."""
    family: str
    roles: dict
    problems: list


def _mgnet_step(m: dict, states) -> MgStep | None:
    """u + c·B(g − A(u)) with g another state: (u, g, B, xi_terms, form_ok, offsets) or None, A(u) = ξ(u) + b
    with ξ the terms that read u and b the offsets of affine layers. Reads of earlier iterates (u[i-2]) or
    of other grids are not states here: those schemes have another form."""
    for u, lc in sorted(m.items()):
        me = (N.Atom((), N.Var(u)), 1.0)
        if me not in lc:
            continue
        rest = tuple(t for t in lc if t != me)
        if not rest:
            continue
        op, base = N.chain(rest)
        if isinstance(base, tuple) and op.fs:
            g = [(a, c) for a, c in base if isinstance(a.base, N.Var) and not a.ops and a.base.name != u
                 and a.base.name in states]
            others = [(a, c) for a, c in base if (a, c) not in g]
            if len(g) == 1 and others:
                (ga, gc), = g
                if gc == 1 or all(f_.linear for f_ in op.fs):  # c·B(gc·r) = c·gc·B(r) for a linear B only
                    B = N.Op(op.coef * gc, op.fs)
                else:  # B(−r) of a non-linear B: the sign stays inside, B' = B∘(gc·id)
                    B = N.Op(op.coef, op.fs + (N.Factor(("const", gc), "const", "linear", f"{gc:g}"),))
                lin = [(a, c) for a, c in others if N.chain(((a, 1.0),))[1] == N.Var(u)]
                offs = [(a, c) for a, c in others if isinstance(N.chain(((a, 1.0),))[1], N.Offset)]
                if lin and len(lin) + len(offs) == len(others):
                    xi = tuple(N.chain(((a, -c / gc),))[0] for a, c in lin)
                    b = tuple(N.chain(((a, -c / gc),))[0] for a, c in offs)
                    return MgStep(u, ga.base.name, B, xi, True, b)
        # B applied to the parts of the residual separately: u + B(g) − B(A(u))
        if len(rest) >= 2:
            cs = [(N.chain((t,)), t[1]) for t in rest]
            fss = [op.fs for (op, _), _ in cs]
            k = 0
            while all(len(fs) > k for fs in fss) and len({fs[k] for fs in fss}) == 1:
                k += 1
            if k:
                gs = [(op, base) for (op, base), _ in cs if len(op.fs) == k and isinstance(base, N.Var)
                      and base.name != u and base.name in states]
                us = [(op, base) for (op, base), _ in cs if len(op.fs) > k and base == N.Var(u)]
                if len(gs) == 1 and len(us) == len(cs) - 1:
                    gop = gs[0][0]
                    B = N.Op(gop.coef, fss[0][:k])
                    xi = tuple(N.Op(-op.coef / gop.coef, op.fs[k:]) for op, _ in us)
                    return MgStep(u, gs[0][1].name, B, xi, False)
    return None


def _show_xi(xi: tuple) -> str:
    return " + ".join(x.show() for x in xi)


def _coarsen_map(ir, rd: Reading, level: int) -> dict:
    """The normal forms of the transition from grid `level`, with relu(s) = s for the states proved ≥ 0."""
    m = {s: N.normalise(ir, t, "coarsen", level, 0) for s, _, t in N.equation(ir, "coarsen", level)}
    pos = rd.nonneg + tuple(f"{s}[l+1]" for s in rd.nonneg)  # u[l+1] = u^{l+1,0}, ≥ 0 as well
    return {s: relu_is_id(lc, pos) for s, lc in m.items()}


def starts_relu(ir, s: str, level: int) -> bool:
    """Grid `level` starts s at 0 or at a ReLU output (read from the IR graph)."""
    nid = ir.states.get((s, level, "down", 0))
    if nid is None:
        return False
    n = ir.nodes[nid]
    if n.op == "zero" or (n.op == "prim" and n.prim == "relu"):
        return True
    if n.op == "apply":
        fs = N.factors(ir, n.inst)
        return bool(fs) and fs[-1].kind == "relu"
    return False


def nonneg(ir, maps: dict, s: str) -> bool:
    """s ≥ 0 on every state the network reaches: each grid starts it at 0 or at a ReLU output, and each step
    adds to it only non-negative multiples of ReLU outputs (u + B(r) with B ending in ReLU)."""
    if not all(starts_relu(ir, s, level) for level in range(1, ir.grids + 1)):
        return False
    me = (N.Atom((), N.Var(s)), 1.0)
    for m in maps.values():
        lc = m.get(s)
        if lc is None or lc == N.var(s):
            continue
        if me not in lc or not all(c > 0 and not a.ops and isinstance(a.base, N.Wrap) and a.base.factor.kind == "relu"
                                   for a, c in lc if (a, c) != me):
            return False
    return True


def relu_is_id(lc: tuple, states: tuple) -> tuple:
    """lc with relu(s) replaced by s for the given states (each proved ≥ 0 where the network goes)."""
    if not states:
        return lc
    out: dict = {}
    for a, c in lc:
        base = a.base
        if isinstance(base, N.Wrap):
            arg = relu_is_id(base.arg, states)
            if base.factor.kind == "relu" and len(arg) == 1 and arg[0][1] == 1.0 and not arg[0][0].ops \
                    and isinstance(arg[0][0].base, N.Var) and arg[0][0].base.name in states:
                base = arg[0][0].base
            else:
                base = N.Wrap(base.factor, arg)
        key = N.Atom(a.ops, base)
        out[key] = out.get(key, 0.0) + c
    return N.lincomb(out)


def read_mgnet(ir, maps: dict, pos: tuple = ()) -> Reading | None:
    per = {}
    for key, m in maps.items():
        r = _mgnet_step(m, set(ir.spaces))
        if r is None:
            return None
        per[key] = r
    us = {r.u for r in per.values()}
    gs = {r.f for r in per.values()}
    if len(us) != 1 or len(gs) != 1:
        return None
    u, f = us.pop(), gs.pop()
    rd = Reading("mgnet", u, f, shape=f"{u} + B({f} − A({u})) (6.4)", nonneg=pos)
    for key, r in per.items():
        rd.roles[key] = {"A": r.xi, "B": r.B, "b": r.b}
    # premises, in the order the derivation uses them
    if pos:
        rd.premises.append(Premise(
            f"{u} ≥ 0 on every state the network reaches (each grid starts it at 0 or at a ReLU output, each "
            f"step adds B(r) ending in ReLU), so relu({u}) = {u} there and A reads {u}", "ok", ir.path))
    moved = sorted({s for key, m in maps.items() for s in N.changed(m)} - {u})
    rd.premises.append(Premise(
        f"the step changes only {u}: {f} stays fixed within a grid (6.4)", "failed" if moved else "ok",
        ir.path, f"the step also assigns {', '.join(moved)}" if moved else "",
        Witness("fixed", moved[0]) if moved else None))
    bad_form = [key for key, r in per.items() if not r.residual]
    rd.premises.append(Premise(
        f"the extractor B acts on the residual {f} − A({u}) (6.4)", "failed" if bad_form else "ok", ir.path,
        (f"grid {bad_form[0][0]}, step {bad_form[0][1]}: B is applied to {f} and to A({u}) separately "
         f"(B({f}) − B(A({u}))); equal only for a linear B") if bad_form else "", MODEL if bad_form else None))
    nonlin = [(key, x, f_) for key, r in per.items() for x in r.xi for f_ in x.fs
              if not f_.linear and f_.kind != "unbound"]
    if nonlin:
        key, x, f_ = nonlin[0]
        why = {"affine": "affine (a bias or BN)", "nonlinear": "non-linear", "unknown": "not known here"}[f_.klass]
        rd.premises.append(Premise(
            "A is linear: a convolution with no bias, no BN, no activation (3.17)", "failed", where(ir, f_.owner),
            f"{f_.kind} in {_def(ir, f_.owner)} is {why}", Witness("linear-op", u, (key,), op=x)))
    else:
        k0 = next(iter(per))
        off = next(((key, r.b) for key, r in per.items() if r.b), None)
        if off is None:
            rd.premises.append(Premise("A is linear: a convolution with no bias, no BN, no activation (3.17)", "ok",
                                       where(ir, (per[k0].xi[0].owners() or [""])[0])))
        else:
            rd.premises.append(Premise(
                "A is affine, A(u) = W u + b with W linear: ξ := W; b cancels in r − W B(r) (3.17)", "ok",
                where(ir, (per[k0].xi[0].owners() or [""])[0]),
                f"grid {off[0][0]}: b = {_show_xi(off[1])}"))
    untied = _untied(rd.roles, "A") or _untied(rd.roles, "b")
    rd.premises.append(Premise(
        "A is one operator per grid, shared by all its steps (6.4)", "failed" if untied else "ok",
        where(ir, (rd.roles[untied[0]]["A"][0].owners() or [""])[0]) if untied else "",
        (f"grid {untied[0][0]}: step {untied[0][1]} uses {_show_xi(rd.roles[untied[0]]['A'])}, "
         f"step {untied[1][1]} uses {_show_xi(rd.roles[untied[1]]['A'])}") if untied else "",
        Witness("tied", u, untied, "A") if untied else None))
    if not untied and not nonlin and not bad_form and not moved:
        rd.premises.append(transition(ir, rd, linear_R=False))
    return rd


def _unbound(x) -> bool:
    ops = x if isinstance(x, tuple) else (x,)
    return any(f_.kind == "unbound" for o in ops for f_ in o.fs)


def _untied(roles: dict, role: str) -> tuple | None:
    """Two steps of one grid whose `role` differs (the operator or its coefficient). An operator the IR
    dropped because it is only ever applied to zero (u^{l,0} = 0) contributes nothing and matches any."""
    first: dict = {}
    for (level, i), r in sorted(roles.items()):
        if _unbound(r[role]):
            continue
        if level not in first:
            first[level] = (level, i)
        elif not _same(roles[first[level]][role], r[role]):
            return first[level], (level, i)
    return None


def linear_mgnet_premises(ir, rd: Reading) -> list[Premise]:
    """What Theorem 6.1 adds to an MgNet: B linear and one per grid (B^{l,i} = S^l), the transition (6.5)/(6.6)
    with a linear R and the smoothing A on both grids."""
    out = []
    off = next(((key, r["b"]) for key, r in sorted(rd.roles.items()) if r.get("b")), None)
    if off is not None:
        return [Premise("A is linear, no offset (Theorem 6.1)", "failed", ir.path,
                        f"grid {off[0][0]}: A has the offset {_show_xi(off[1])}", MODEL)]
    nonlin = [(key, f_) for key, r in rd.roles.items() for f_ in r["B"].fs if not f_.linear]
    if nonlin:
        key, f_ = nonlin[0]
        out.append(Premise("B = S is linear (Theorem 6.1)", "failed", where(ir, f_.owner),
                           f"{f_.kind} in {_def(ir, f_.owner)} is {f_.klass}", Witness("linear-op", rd.data, (key,), op=rd.roles[key]["B"])))
        return out
    out.append(Premise("B = S is linear (Theorem 6.1)", "ok"))
    untied = _untied(rd.roles, "B")
    out.append(Premise("B = S^l is one operator per grid (Theorem 6.1)", "failed" if untied else "ok",
                       ir.path, f"grid {untied[0][0]} uses different B in steps {untied[0][1]} and {untied[1][1]}"
                       if untied else "", Witness("tied", rd.data, untied, "B") if untied else None))
    if untied:
        return out
    co = transition(ir, rd)
    out.append(co)
    return out


def transition(ir, rd: Reading, linear_R: bool = True) -> Premise:
    """f[l+1] = R(f − A^l u) + A^{l+1} u[l+1] with A^l, A^{l+1} the smoothing A's: Algorithm 3's transition,
    which makes r^{l+1,0} = R(r^{l,ν}) (Theorem 8.1); with R linear it is (6.6) (Theorem 6.1)."""
    u, f = rd.state, rd.data
    text = (f"the transition is {f}[l+1] = R({f} − A^l({u})) + A^{{l+1}}({u}[l+1]) with R linear (6.6)" if linear_R
            else f"the transition is {f}[l+1] = R({f} − A^l({u})) + A^{{l+1}}({u}[l+1]), so the next grid starts "
                 f"from R of the residual (Algorithm 3)")
    for level in range(1, ir.grids):
        try:
            m = _coarsen_map(ir, rd, level)
        except N.Unsupported as e:
            return Premise(text, "unproved", ir.path, f"grid {level}: {e}")
        lc = m.get(f)
        A_l, A_n = _full_A(rd, level), _full_A(rd, level + 1)
        if lc is None or A_l is None:
            return Premise(text, "unproved", ir.path, f"grid {level}: no smoothing A or no {f}[l+1]")
        nxt = N.Var(f"{u}[l+1]")
        # r^{l+1,0} = f^{l+1} − A^{l+1}(u^{l+1,0}): subtract A^{l+1}(u[l+1]) (its offset too) and what is left
        # must be R(f − A^l(u)); a u[l+1] that starts at 0 makes the terms that read it vanish
        down = N.add(lc, _applied(A_n, nxt), scale=(1.0, -1.0)) if A_n is not None else lc
        if A_n is None or not _starts_nonzero(ir, u, level + 1):  # no A^{l+1} to compare (a grid without steps)
            down = tuple(t for t in down if N.chain((t,))[1] != nxt)
        left = [t for t in down if N.chain((t,))[1] == nxt]
        if left:
            got = [N.chain((t,))[0] for t in lc if N.chain((t,))[1] == nxt]
            why = (f"{f}[l+1] has no term A^{{l+1}}({u}[l+1]) though {u}[l+1] does not start at 0" if not got else
                   f"the added term uses {_show_xi(tuple(got))}, the smoothing A is {_show_xi(A_n[0])}")
            return Premise(text, "failed", ir.path, f"grid {level + 1}: {why}", MODEL)
        R, base = N.chain(down)
        bad = [x for x in R.fs if not x.linear] if linear_R else []
        if bad:
            return Premise(text, "failed", where(ir, bad[0].owner),
                           f"{bad[0].kind} in {_def(ir, bad[0].owner)} is {bad[0].klass}", MODEL)
        want = N.add(N.var(f), _applied(A_l, N.Var(u)), scale=(1.0, -1.0))
        if not isinstance(base, tuple) or N.add(base, scale=(R.coef,)) != N.add(want, scale=(R.coef,)):
            shown = N.show(base) if isinstance(base, tuple) else getattr(base, "name", "?")
            return Premise(text, "failed", ir.path,
                           f"grid {level}: R is applied to {shown}, not to the residual {f} − A^l({u}) of the "
                           f"smoothing" + (f" (grid {level + 1} starts from R(r) − A^{{{level + 1}}}(0): the offset "
                                           "of A^{l+1} does not cancel)" if N.chain(down)[0] == N.IDENTITY else ""),
                           MODEL)
    return Premise(text, "ok")


def _full_A(rd: Reading, level: int):
    """(ξ terms, offsets) of grid `level`'s smoothing A, or None."""
    key = next((k for k in sorted(rd.roles) if k[0] == level), None)
    return (rd.roles[key]["A"], rd.roles[key].get("b", ())) if key else None


def _applied(A: tuple, x: N.Var) -> tuple:
    """The normal form of A(x) = Σ ξ_k(x) + Σ b_k with A read as (ξ terms, offsets)."""
    xi, offs = A
    terms = [((N.Atom(op.fs, x), op.coef),) for op in xi]
    terms += [((N.Atom(op.fs[:-1], N.Offset(_whole(op.fs[-1]))), op.coef),) for op in offs]
    return N.add(*terms)


def _whole(off: N.Factor) -> N.Factor:
    """The affine layer an offset factor was taken from."""
    from dataclasses import replace
    return replace(off, key=off.key[:-1], klass="affine", part="")


def transition_ops(ir, rd: Reading) -> dict:
    """level -> {R, Pi} (MgNet: r^{l+1,0} = R(...) once A^{l+1}(u[l+1]) is taken off) or {D} (a data form:
    f[l+1] = D(f)), each an Op or missing where the coarsening is not one operator applied to one state."""
    out: dict = {}
    feature = rd.family in FEATURE_FAMILIES
    for level in range(1, ir.grids):
        try:
            m = _coarsen_map(ir, rd, level)
        except N.Unsupported:
            continue
        ops: dict = {}
        lc = m.get(rd.data if feature else rd.state)
        if feature and lc is not None:
            nxt = N.Var(f"{rd.state}[l+1]")
            A_n = _full_A(rd, level + 1)
            down = N.add(lc, _applied(A_n, nxt), scale=(1.0, -1.0)) if A_n is not None else lc
            down = tuple(t for t in down if N.chain((t,))[1] != nxt)
            R, base = N.chain(down)
            if not R.fs:  # an offset left over (grid l+1 starts from R(r) − b): R is the operator term
                R, base = N.chain(tuple(t for t in down if not isinstance(N.chain((t,))[1], N.Offset)))
            if R.fs and (isinstance(base, tuple) or base == N.Var(rd.data)):
                ops["R"] = R
            P, pb = N.chain(m.get(rd.state, ()))
            if P.fs and pb == N.Var(rd.state):
                ops["Pi"] = P
        elif lc is not None:
            D, base = N.chain(lc)
            if D.fs and base == N.Var(rd.state):
                ops["D"] = D
        out[level] = ops
    return out


def _starts_nonzero(ir, u: str, level: int) -> bool:
    nid = ir.states.get((u, level, "down", 0))
    return nid is not None and ir.nodes[nid].op != "zero"


def _grid_role(rd: Reading, level: int, role: str):
    key = next((k for k in sorted(rd.roles) if k[0] == level), None)
    return rd.roles[key][role] if key else None


def pi_is_zero(ir, rd: Reading) -> bool:
    """Algorithm 1 restarts u at zero on every coarser grid: u[l+1] = 0."""
    for level in range(1, ir.grids):
        key = (rd.state, level + 1, "down", 0)
        nid = ir.states.get(key)
        if nid is None or ir.nodes[nid].op != "zero":
            return False
    return True


# ------------------------------------------------------------------ data-space forms (Table 1)

def _split_at_relu(fs: tuple) -> tuple[tuple, tuple] | None:
    """fs = ξ + (relu,) + rest with ξ the factors before the first ReLU."""
    for k, f_ in enumerate(fs):
        if f_.kind == "relu":
            return fs[:k], fs[k:]
    return None


def _affine(fs) -> bool:
    return bool(fs) and all(f_.klass in ("linear", "affine") and f_.kind != "relu" for f_ in fs)


def _data_step(m: dict, s: str) -> DataStep | None:
    """The data-space reading of one step's normal form: (family, roles, structural problems)."""
    lc = m[s]
    me = (N.Atom((), N.Var(s)), 1.0)
    relu_s = N.apply(N.prim_factor("relu"), N.var(s))[0]
    op, base = N.chain(lc)  # one composite operator (an affine layer's two parts put back together)
    if op.fs:
        if isinstance(base, tuple) and op.coef == 1 and len(op.fs) == 1 and op.fs[0].kind == "relu" \
                and me in base:
            xop, xb = N.chain(tuple(t for t in base if t != me))
            if xb == N.Var(s):
                cut = _split_at_relu(xop.fs)
                probs = []
                if cut is None or not cut[0] or not _affine(cut[1][1:]) or not _affine(cut[0]):
                    probs.append("F = ξ∘σ∘η with ξ, η affine (7.8)")
                xi, rest = cut if cut else ((), xop.fs)
                return DataStep("resnet", {"xi": N.Op(-xop.coef, xi), "T": N.Op(1.0, rest)}, probs)
        if isinstance(base, N.Var) and base.name == s and op.fs[-1].kind == "relu" and len(op.fs) > 1:
            chi = op.fs[:-1]  # (8.8): chi a convolution with BN; Theorem 8.3's eta = [id, -id](chi - id) needs it
            probs = [] if _affine(chi) else ["χ is affine: a convolution (with BN), no activation (8.8)"]
            return DataStep("classic-cnn", {"chi": N.Op(op.coef, chi)}, probs)
        if len(lc) == 1:
            return None
    if me in lc:
        lead, fam = me, "iresnet"
    elif relu_s in lc:
        lead, fam = relu_s, "sigma-resnet"
    else:
        return None
    if len(lc) < 2:
        return None
    xop, xb = N.chain(tuple(t for t in lc if t != lead))
    if xb != N.Var(s):
        return None
    cut = _split_at_relu(xop.fs)
    xi, rest = cut if cut else ((), xop.fs)
    probs = []
    if fam == "iresnet":
        # rest = relu, eta (affine), relu, [BN before sigma]
        r = list(rest)
        ok = len(r) >= 3 and r[0].kind == "relu"
        k = 1
        while ok and k < len(r) and r[k].kind != "relu":
            k += 1
        ok = ok and k > 1 and k < len(r) and _affine(r[1:k]) and (k + 1 == len(r) or _affine(r[k + 1:]))
        if not ok:
            probs.append("the extractor is σ∘η∘σ with η affine (7.9)")
        return DataStep(fam, {"xi": N.Op(-xop.coef, xi), "B": N.Op(1.0, rest)}, probs)
    # sigma-ResNet: relu(f) − ξ σ η σ(f): the extractor reads σ(f); ξ affine as in the ResNet it comes from (7.8)
    if xi and not _affine(xi):  # an empty ξ is the identity: affine
        probs.append("ξ is affine: a convolution (with BN), no activation or max pool (7.8), (8.3)")
    r = list(rest)
    if not (len(r) >= 2 and r[0].kind == "relu" and _affine(r[1:-1]) and r[-1].kind == "relu"):
        if len(r) >= 2 and r[0].kind == "relu" and _affine(r[1:]):
            probs.append("the extractor reads σ(f), i.e. ξ∘σ∘η∘σ(f) (8.3)")
            return DataStep(fam, {"xi": N.Op(-xop.coef, xi), "T": N.Op(1.0, rest), "reads": "f"}, probs)
        probs.append("the step is σ(f) − ξ∘σ∘η∘σ(f) with η affine (8.3)")
        return DataStep(fam, {"xi": N.Op(-xop.coef, xi), "T": N.Op(1.0, rest[:-1]), "reads": "relu"}, probs)
    return DataStep(fam, {"xi": N.Op(-xop.coef, xi), "T": N.Op(1.0, rest[:-1]), "reads": "relu"}, probs)


def read_data(ir, maps: dict) -> Reading | None:
    states = {s for m in maps.values() for s in N.changed(m)}
    if len(states) != 1:
        return None
    s = states.pop()
    per = {}
    for key, m in maps.items():
        if s not in m:
            return None
        r = _data_step(m, s)
        if r is None:
            return None
        reads = {a.base.name for a in _vars(m[s])}
        if reads - {s}:
            return None
        per[key] = r
    fams = {r.family for r in per.values()}
    if len(fams) != 1:
        return None
    fam = fams.pop()
    rd = Reading(fam, s, shape={"iresnet": f"{s} − ξ∘σ∘η∘σ({s}) (7.9)",
                                "sigma-resnet": f"σ({s}) − ξ∘σ∘η∘σ({s}) (8.3)",
                                "resnet": f"σ({s} − ξ∘σ∘η({s})) (7.8)",
                                "classic-cnn": f"χ∘σ({s}) (8.8)"}[fam])
    for key, r in per.items():
        rd.roles[key] = r.roles
    probs = [(key, p) for key, r in per.items() for p in r.problems]
    if fam == "iresnet":
        bad = [(key, f_) for key, r in per.items() for f_ in r.roles["xi"].fs if not f_.linear]
        empty = [key for key, r in per.items() if not r.roles["xi"].fs]
        if bad or empty:
            key = (bad or [(empty[0], None)])[0][0]
            X = per[key].roles
            f_ = bad[0][1] if bad else X["B"].fs[0]
            owner = f_.owner or f_.name
            detail = (f"{f_.kind} in {_def(ir, owner)} is {f_.klass}" if bad else
                      f"the term subtracted from {s} ends in {f_.kind} ({_def(ir, owner)}): ξ would be the identity "
                      f"and the extractor not σ∘η∘σ")
            full = X["xi"].fs + X["B"].fs
            cand = N.Op(1.0, X["xi"].fs) if bad else N.Op(1.0, _prefix_owned(full))
            rd.premises.append(Premise(f"ξ = {f_.name} is linear: no bias, no BN, no activation (7.9)", "failed",
                                       where(ir, owner), detail, Witness("linear-op", s, (key,), op=cand)))
            return rd
        rd.premises.append(Premise("ξ is linear: no bias, no BN, no activation (7.9)", "ok",
                                   where(ir, (next(iter(rd.roles.values()))["xi"].owners() or [""])[0])))
    if probs:
        key, p = probs[0]
        rd.premises.append(Premise(p, "failed", ir.path, f"grid {key[0]}, step {key[1]}: the step is "
                                   f"{s} = {N.show(maps[key][s])}", MODEL))
        return rd
    if fam == "iresnet" and not _untied(rd.roles, "xi"):
        rd.family = "mg-iresnet"
    if fam == "sigma-resnet" and not _untied(rd.roles, "xi"):
        rd.family = "mg-resnet"
    return rd


def _prefix_owned(fs: tuple) -> tuple:
    """The outermost factors that belong to one written operator instance (the candidate ξ)."""
    out = []
    for x in fs:
        if out and x.owner != out[0].owner:
            break
        out.append(x)
        if not x.owner:
            break
    return tuple(out)


def _vars(lc):
    for a, _ in lc:
        if isinstance(a.base, N.Var):
            yield a
        elif isinstance(a.base, N.Wrap):
            yield from _vars(a.base.arg)


# ------------------------------------------------------------------ the reading of a spec

def read(ir) -> Reading:
    """The most specific form of the spec's scheme, with its premises; `unknown` with the reason otherwise."""
    if ir.cycle != "none" or ir.equations.get("refine") or ir.equations.get("poststep"):
        return Reading("unknown", note=f"the spec is a {ir.cycle}-cycle (Algorithm 2/4): the theorems relate "
                                       "the fine-to-coarse pass of Algorithms 1 and 3 only")
    keys = list(steps(ir))
    if not keys:
        return Reading("unknown", note="the spec has no smoothing step")
    maps = {}
    try:
        for level, i in keys:
            maps[(level, i)] = N.step_map(ir, level, i)
    except N.Unsupported as e:
        return Reading("unknown", note=f"the step uses {e}, which none of the forms of Table 1 has")
    except (KeyError, IndexError) as e:
        return Reading("unknown", note=f"the step could not be read ({type(e).__name__}: {e})")
    rd = read_mgnet(ir, maps)
    if rd is not None and not rd.ok and nonneg(ir, maps, rd.state):
        # an operator applied to relu(u), every reachable u ≥ 0: on the network's states it reads u
        kept = {k: {s: relu_is_id(lc, (rd.state,)) for s, lc in m.items()} for k, m in maps.items()}
        again = read_mgnet(ir, kept, (rd.state,))
        if again is not None and again.ok and kept != maps:
            rd = again
    if rd is not None:
        if rd.ok:
            extra = linear_mgnet_premises(ir, rd)
            if all(p.status == "ok" for p in extra):
                rd.family = "mg0" if pi_is_zero(ir, rd) else "linear-mgnet"
                rd.premises += extra
        rd.trans = transition_ops(ir, rd)
        return rd
    rd = read_data(ir, maps)
    if rd is not None:
        rd.trans = transition_ops(ir, rd)
        return rd
    states = set(ir.spaces)
    k = next((k for k in keys if _mgnet_step(maps[k], states) is None), keys[0])
    text = "; ".join(f"{s} = {N.show(lc)}" for s, lc in maps[k].items())
    return Reading("unknown", note=f"the step ({text}, grid {k[0]} step {k[1]}) has none of the forms of Table 1")
