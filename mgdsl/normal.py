"""Normal forms of a scheme's equations: what the theorems speak of, independent of how a spec spells it.

An equation's right-hand side becomes a linear combination with constant coefficients of atoms; an atom is a
composition of linear factors applied either to a state or to a non-linear factor applied to a normal form.
Factors are the layers of operator instances (a reference to another instance is unfolded into its layers),
so `0.5 * A(u)`, `A(0.5 * u)`, `C(D(u))` with C, D bias-free convolutions, or an operator renamed or defined
elsewhere all normalise by their meaning. Linearity, bias and BN come from the IR's Layer records; which
operator is shared where comes from the instance labels the IR bound at each (level, step).
No torch here: `mgdsl check` without --equiv must start fast."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from .prims import PRIMS

# what an equation may apply without a definition (relu, id, the pools), and which of those are linear maps
# (the others, relu and max pooling, are not): both read off the primitive table
INLINE_PRIMS = frozenset(name for name, p in PRIMS.items() if p.inline)
LINEAR_PRIMS = frozenset(name for name in INLINE_PRIMS if PRIMS[name].klass(None) == "linear")


class Unsupported(Exception):
    """A construct the normal form does not cover (a sum over earlier iterates, a constant other than 0)."""


@dataclass(frozen=True)
class Factor:
    """One primitive map: a layer of an operator instance (`owner`, position `pos`) or an inline primitive."""
    key: tuple          # identity: (owner label, pos) for a layer, ("prim", name) for an inline primitive
    kind: str           # conv, bn, relu, stencil, ...
    klass: str          # linear | affine | nonlinear
    name: str           # the operator name as written in the spec (for messages)
    owner: str = ""     # instance label ("A[2]"); "" for inline primitives
    # for display only: the instance the equation applied (B[1, 1], also for the eta[1] it refers to) and the
    # factor's place in that instance's layers, so that a printed normal form names what the spec wrote
    via: str = field(default="", compare=False)
    seq: int = field(default=0, compare=False)
    part: str = ""      # "" the whole layer; "lin" the linear part W of an affine layer; "off" its offset b

    @property
    def linear(self) -> bool:
        return self.klass == "linear"

    def show(self) -> str:
        base = self.owner or self.name
        return {"lin": f"lin({base})", "off": f"{base}(0)"}.get(self.part, base)


def lin_part(f: Factor) -> Factor:
    """W of an affine layer x -> W x + b: linear, so it distributes over sums."""
    return replace(f, key=f.key + ("lin",), klass="linear", part="lin")


def offset_part(f: Factor) -> Factor:
    """b = f(0) of an affine layer, as a map that ignores its argument (for carrying an offset term)."""
    return replace(f, key=f.key + ("off",), klass="offset", part="off")


@dataclass(frozen=True)
class Var:
    """A state read: `name` as written (u, f, u[i-2])."""
    name: str


@dataclass(frozen=True)
class Wrap:
    """A factor that does not distribute over sums (affine or non-linear) applied to a normal form."""
    factor: Factor
    arg: tuple  # LinComb


@dataclass(frozen=True)
class Offset:
    """The constant b = F(0) of an affine layer F: F(x) = lin(F)(x) + b keeps the two apart, so that
    F(x + y) = lin(F)x + lin(F)y + b (never F(x) + F(y)) and F(x) − F(y) = lin(F)(x − y) exactly."""
    factor: Factor


@dataclass(frozen=True)
class Atom:
    """ops[0] ∘ ops[1] ∘ ... applied to base; every op is linear (outermost first)."""
    ops: tuple
    base: object  # Var | Wrap | Offset


# a LinComb is a tuple of (Atom, coefficient) pairs in canonical order, like atoms merged, zeros dropped


def _key(x) -> tuple:
    """A total order on atoms so that a normal form does not depend on the order of the written terms."""
    if isinstance(x, Atom):
        return (0, tuple(f.key for f in x.ops), _key(x.base))
    if isinstance(x, Var):
        return (1, x.name)
    if isinstance(x, Wrap):
        return (2, x.factor.key, tuple((_key(a), c) for a, c in x.arg))
    if isinstance(x, Offset):
        return (3, x.factor.key)
    raise TypeError(x)


def lincomb(terms: dict) -> tuple:
    return tuple(sorted(((a, c) for a, c in terms.items() if c != 0), key=lambda ac: (_key(ac[0]), ac[1])))


def add(*parts, scale: tuple = ()) -> tuple:
    acc: dict = {}
    for k, lc in enumerate(parts):
        s = scale[k] if scale else 1.0
        for a, c in lc:
            acc[a] = acc.get(a, 0.0) + s * c
    return lincomb(acc)


def apply(f: Factor, lc: tuple) -> tuple:
    """f(lc): a linear factor distributes over the combination; an affine one is its linear part, which
    distributes, plus its offset once (whatever the coefficients of lc sum to); any other wraps it."""
    if f.kind == "id":
        return lc
    if f.linear:
        return lincomb({Atom((f,) + a.ops, a.base): c for a, c in lc}) if lc else lc
    if f.klass == "affine":
        return add(apply(lin_part(f), lc), ((Atom((), Offset(f)), 1.0),))
    return ((Atom((), Wrap(f, lc)), 1.0),)


def var(name: str) -> tuple:
    return ((Atom((), Var(name)), 1.0),)


# ------------------------------------------------------------------ factors of operator instances

def factors(ir, label: str) -> list[Factor]:
    """The layers of an instance in application order (innermost first), references unfolded."""
    return [replace(f, via=label, seq=j) for j, f in enumerate(_layers(ir, label))]


_CLASS_ORDER = {"linear": 0, "affine": 1, "nonlinear": 2}


def _layers(ir, label: str) -> list[Factor]:
    inst = ir.instances[label]
    out: list[Factor] = []
    for k, lay in enumerate(inst.layers):
        if lay.kind == "ref" and lay.ref in ir.instances:
            out.extend(_layers(ir, lay.ref))
            continue
        klass = lay.klass
        if lay.ref and lay.ref in ir.instances:  # sub_id(chi), transpose(R), jacobi(A): no better than what it reads
            klass = max(klass, ir.instances[lay.ref].klass, key=lambda c: _CLASS_ORDER.get(c, 3))
        out.append(Factor((label, k), lay.kind, klass, inst.name, label))
    return out


def prim_factor(name: str) -> Factor:
    return Factor(("prim", name), name, "linear" if name in LINEAR_PRIMS else "nonlinear", name)


def unbound_factor(name: str) -> Factor:
    """An operator the IR did not bind here (it was only ever applied to zero): its meaning is unknown."""
    return Factor(("unbound", name), "unbound", "unknown", name)


def normalise(ir, t, kind: str, level: int, step: int) -> tuple:
    """The normal form of a written term at one (equation kind, level, step), with the IR's bindings."""
    h = t[0]
    if h == "var":
        return var(t[1])
    if h == "const":
        if t[1] == 0:
            return ()
        raise Unsupported(f"the constant {t[1]:g}")
    if h in ("add", "sub"):
        a = normalise(ir, t[1], kind, level, step)
        b = normalise(ir, t[2], kind, level, step)
        return add(a, b, scale=(1.0, 1.0 if h == "add" else -1.0))
    if h == "scale":
        return add(normalise(ir, t[2], kind, level, step), scale=(float(t[1]),))
    if h == "app":
        x = normalise(ir, t[2], kind, level, step)
        name = t[1]
        if name.split("[")[0] in INLINE_PRIMS and \
                name not in ir.bindings.get((kind, level, step), {}):
            return apply(prim_factor(name), x)
        label = ir.bindings.get((kind, level, step), {}).get(name)
        fs = factors(ir, label) if label in ir.instances else [unbound_factor(name)]
        for f in fs:
            x = apply(f, x)
        return x
    raise Unsupported("a sum over earlier iterates" if h == "sum" else f"the term {h}")


# ------------------------------------------------------------------ the step as a map of states

def equation(ir, kind: str, step: int):
    """The assignments of iterate `step` (of a step) or of grid `step` (of a coarsen): a guarded equation
    (`step[1]`, `coarsen[2]`) wins over the general one, as in elaboration."""
    eqs = ir.equations.get(kind) or []
    chosen = next((a for g, a in eqs if g == step), None)
    if chosen is None:
        chosen = next((a for g, a in eqs if g is None), None)
    return chosen or []


def step_map(ir, level: int, step: int, kind: str = "step") -> dict:
    """state -> normal form of its new value at (level, step); all assignments read the previous iterate."""
    out = {}
    for state, index, term in equation(ir, kind, step):
        if index:
            raise Unsupported(f"an assignment to {state}{index}")
        out[state] = normalise(ir, term, kind, level, step)
    return out


def changed(m: dict) -> list[str]:
    """The states a step changes: every assigned state whose new value is not itself."""
    return sorted(s for s, lc in m.items() if lc != var(s))


# ------------------------------------------------------------------ views

@dataclass(frozen=True)
class Op:
    """A composite operator coef · fs[0] ∘ fs[1] ∘ ... (outermost first): what numerics carry to a target."""
    coef: float
    fs: tuple

    @property
    def linear(self) -> bool:
        return all(f.linear for f in self.fs)

    def owners(self) -> list[str]:
        return list(dict.fromkeys(f.owner for f in self.fs if f.owner))

    def then(self, inner: "Op") -> "Op":
        return Op(self.coef * inner.coef, self.fs + inner.fs)

    def show(self) -> str:
        names = list(dict.fromkeys(f.show() for f in self.fs)) or ["id"]
        body = " ∘ ".join(names)
        return body if self.coef == 1 else f"{self.coef:g}·({body})"


IDENTITY = Op(1.0, ())


def chain(lc: tuple) -> tuple[Op, object]:
    """Read a single-term normal form as one composite operator applied to a base (a Var or a LinComb of
    several terms, from which a common linear left factor has been pulled out)."""
    if len(lc) != 1:
        prefix, rest = common_prefix(lc)
        if prefix:
            op, base = chain(rest)
            return Op(op.coef, prefix + op.fs), base
        folded = refold(lc)
        if folded is not None:
            f, c, inner = folded
            op, base = chain(inner)
            return Op(c * op.coef, (f,) + op.fs), base
        return IDENTITY, lc
    atom, c = lc[0]
    ops = atom.ops
    if isinstance(atom.base, Var):
        return Op(c, ops), atom.base
    if isinstance(atom.base, Offset):
        return Op(c, ops + (offset_part(atom.base.factor),)), atom.base
    inner, base = chain(atom.base.arg) if atom.base.arg else (IDENTITY, atom.base.arg)
    const = () if inner.coef == 1 else (Factor(("const", inner.coef), "const", "linear", f"{inner.coef:g}"),)
    return Op(c, ops + (atom.base.factor,) + const + inner.fs), base


def refold(lc: tuple):
    """lin(F)(X) + c·F(0) read back as c·F(X / c): (F, c, X / c), or None. Exact for an affine F, and the
    only way an affine layer's two parts are put together again (for reading a composite operator)."""
    for a, c in lc:
        if not isinstance(a.base, Offset) or a.ops:
            continue
        w = lin_part(a.base.factor)
        others = [(b, d) for b, d in lc if b != a]
        if others and all(b.ops and b.ops[0] == w for b, _ in others):
            return a.base.factor, c, lincomb({Atom(b.ops[1:], b.base): d / c for b, d in others})
    return None


def common_prefix(lc: tuple) -> tuple[tuple, tuple]:
    """P, rest with lc = P(rest), P the longest linear left factor shared by every term."""
    prefix: tuple = ()
    while lc and all(a.ops for a, _ in lc) and len({a.ops[0] for a, _ in lc}) == 1:
        prefix += (lc[0][0].ops[0],)
        lc = lincomb({Atom(a.ops[1:], a.base): c for a, c in lc})
    return prefix, lc


def linear_part(lc: tuple, state: str) -> tuple[Op | None, list, tuple]:
    """Split lc into (sum of linear operators applied to `state`) + the rest.

    Returns (xi, xi_terms, rest) with xi the single linear operator when all such terms share one chain
    (c·A, or C∘D), else None with the terms listed (A1(u) + A2(u) is linear but not one chain)."""
    lin = [(a, c) for a, c in lc if isinstance(a.base, Var) and a.base.name == state and a.ops]
    rest = tuple((a, c) for a, c in lc if (a, c) not in lin)
    if len(lin) == 1:
        a, c = lin[0]
        return Op(c, a.ops), lin, rest
    return None, lin, rest


def show(lc: tuple) -> str:
    """A normal form in the paper's notation (for derivation logs)."""
    if not lc:
        return "0"
    parts = []
    for a, c in lc:
        s = _show_atom(a)
        if c == 1:
            parts.append(("+", s))
        elif c == -1:
            parts.append(("−", s))
        else:
            parts.append(("+" if c > 0 else "−", f"{abs(c):g}·{s}"))
    text = parts[0][1] if parts[0][0] == "+" else "−" + parts[0][1]
    for sign, s in parts[1:]:
        text += f" {sign} {s}"
    return text


def _show_atom(a: Atom) -> str:
    op, base = chain(((a, 1.0),))
    names: list[str] = []
    prev = None  # (instance, place) of the factor before, outermost first
    lin = {f.via for f in op.fs if f.part == "lin"}  # an instance seen through its linear part W
    for f in op.fs:
        if f.kind == "const":
            names.append(f"{f.name}·")
            prev = None
            continue
        name = f.via or f.show()
        if f.via in lin and f.part != "off":
            name = f"lin({name})"
        if prev is None or prev[0] != name or f.seq >= prev[1]:  # a new application (A(A(u)) shows A twice)
            names.append(name)
        prev = (name, f.seq)
    if isinstance(base, Offset):
        names = names[:-1]
        last = op.fs[-1]
        inner = f"{last.via or last.owner or last.name}(0)"
    else:
        inner = base.name if isinstance(base, Var) else show(base)
    for name in reversed(names):
        inner = f"{name}{inner}" if name.endswith("·") else f"{name}({inner})"
    return inner
