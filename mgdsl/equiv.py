"""The paper's theorems as checks: read the spec's scheme (forms.read, from the normal form of every step),
find the chain of relations to the target (Theorems 6.1, 8.1, 8.3, Lemma 8.2, the tyings of (8.7)),
check each premise from IR facts and stop at the first that fails, then confirm numerically by comparing
the spec with an independently built target model (numerics.py).

Verdicts: equivalent / special-case (a derivation whose premises all hold and whose numerics agree),
not-equivalent (a premise fails and the numerics confirm it, or the relation's two models differ),
undecided (no relation applies, or a premise fails without a numerical counterexample). Why not egglog or
z3: the terms are a handful of operator applications and the guards are facts about operator instances
(linearity class, sharing) that the IR already records; the normal form and a path search over the ten
relations of the paper are the whole algorithm, and the derivation log is what the user reads."""
from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass

from . import forms
from . import normal as N
from .forms import Premise, Reading, Witness
from .ir import shape_text

FAMILIES = ["mg0", "linear-mgnet", "mgnet", "mg-iresnet", "iresnet", "mg-resnet", "sigma-resnet", "resnet",
            "classic-cnn"]
TOL = 1e-9
MAX_PARAMS = 20_000_000  # numerics beyond this size would take minutes: undecided, with how to make it small
MAX_PIXELS = 128 * 128
EXIT = {"equivalent": 0, "special-case": 0, "not-equivalent": 1, "undecided": 3}


@dataclass
class Step:
    rule: str
    equation: str
    term: str


# ------------------------------------------------------------------ premises of the relations themselves

def extractor_premise(ir, rd: Reading) -> Premise:
    """Theorem 8.1 takes B^{l,i} = σ∘η^{l,i}∘σ: then the image is the Mg-iResNet form (7.9)."""
    for key, r in sorted(rd.roles.items()):
        fs = r["B"].fs
        lead = list(fs)
        ok = len(lead) >= 3 and lead[0].kind == "relu"
        k = 1
        while ok and k < len(lead) and lead[k].kind != "relu":
            k += 1
        ok = ok and 1 < k < len(lead) and all(x.klass in ("linear", "affine") for x in lead[1:k]) and \
            all(x.klass in ("linear", "affine") and x.kind != "relu" for x in lead[k + 1:])
        if not ok:
            return Premise("B = σ∘η∘σ with η affine, the hypothesis of Theorem 8.1 (6.26)", "failed",
                           forms.where(ir, (r["B"].owners() or [""])[0]),
                           f"grid {key[0]}, step {key[1]}: B = {r['B'].show()}; the data-space iteration "
                           "r ← r − ξB(r) is then not of the form (7.9)")
    return Premise("B = σ∘η∘σ with η affine, the hypothesis of Theorem 8.1 (6.26)", "ok")


def relu_input_premise(ir, rd: Reading) -> Premise:
    """Lemma 8.2 starts σ-ResNet at f̃^{l,0} := f^{l,0}: every grid's input state must be a ReLU output."""
    text = "the state entering each grid is a ReLU output, so f̃^{l,0} := f^{l,0} (Lemma 8.2)"
    for level in range(1, ir.grids + 1):
        nid = ir.states.get((rd.state, level, "down", 0))
        if nid is None:
            continue
        n = ir.nodes[nid]
        if n.op == "zero" or (n.op == "prim" and n.prim == "relu"):
            continue
        if n.op == "apply":
            fs = N.factors(ir, n.inst)
            if fs and fs[-1].kind == "relu":
                continue
            return Premise(text, "failed", forms.where(ir, n.inst),
                           f"grid {level} starts from {n.inst}, whose last layer is {fs[-1].kind if fs else '?'}",
                           Witness("relu-input", rd.state))
        return Premise(text, "failed", ir.path, f"grid {level} starts from a {n.op} node, not a ReLU output",
                       Witness("relu-input", rd.state))
    return Premise(text, "ok")


def tied_xi_premise(ir, rd: Reading) -> Premise:
    """(8.6), (8.7): the Mg- forms hold one ξ^l per grid, shared by its steps; a spec whose ξ^{l,i} differ is freer."""
    text = "ξ is one operator per grid, shared by its steps (8.6), (8.7)"
    pair = forms._untied(rd.roles, "xi")
    if pair is None:
        return Premise(text, "ok")
    xi = rd.roles[pair[0]]["xi"]
    return Premise(text, "failed", forms.where(ir, (xi.owners() or [""])[0]),
                   f"grid {pair[0][0]}: step {pair[0][1]} uses {xi.show()}, step {pair[1][1]} uses "
                   f"{rd.roles[pair[1]]['xi'].show()}", Witness("tied", rd.state, pair, "xi"))


# ------------------------------------------------------------------ the relations of the paper, one record each

@dataclass(frozen=True)
class Relation:
    """One relation of the paper between two forms: everything the check does with it, in one record (like
    prims.PRIMS for primitives): the rule, the premises it adds (functions of the spec's IR and reading,
    each returning a Premise with its own witness), the derivation it writes, the numerics that run it
    (a Run method, or `same`: the identity correspondence to `dst`), and whether it ties weights."""
    src: str
    dst: str
    kind: str  # equivalent | special-case (a tying of (8.7))
    rule: str
    relation: str
    numerics: str
    derivation: tuple = ()
    premises: tuple = ()
    terminal: bool = False  # compares only and hands no trajectory to a next relation: ends every chain
    tying: tuple = ()       # the target roles whose slots the tying map lists
    fixes: bool = False     # its construction fixes operators (the stencils): shared slots are no tying

    @property
    def ties(self) -> bool:
        return self.kind == "special-case"

    def runner(self, run):
        """The numerics of this relation on a numerics.Run."""
        return run.same(self.dst) if self.numerics == "same" else getattr(run, self.numerics)


def _tie(src: str, dst: str) -> Relation:
    return Relation(src, dst, "special-case", "(8.7)", "tying ξ^{l,i} = ξ^l for every step i", "same",
                    (Step("tie ξ^{l,i} = ξ^l", "(8.7)", f"{src} is {dst} with one ξ per grid"),), tying=("xi",))


RELATIONS = [
    Relation("mgnet", "mg-iresnet", "equivalent", "Theorem 8.1",
             "r^{l,i} = f^l − ξ^l u^{l,i} (8.2) with ξ^l = A^l", "thm81",
             (Step("change of variables r = f − ξu, ξ^l := A^l", "(8.2)", "r^{l,i} = f^l − A^l(u^{l,i})"),
              Step("linearity of ξ^l, one ξ^l per grid", "(3.17)",
                   "A(u + B(r)) = A(u) + A(B(r)), so r^{l,i} = r^{l,i−1} − ξ^l B^{l,i}(r^{l,i−1})"),
              Step("Mg-iResNet form", "(8.1), Table 1", "f^{l,i} = f^{l,i−1} − ξ^l∘σ∘η^{l,i}∘σ(f^{l,i−1})")),
             (extractor_premise,), tying=("xi",)),
    Relation("mg-iresnet", "mgnet", "equivalent", "Theorem 8.1, read backwards",
             "f^l = r^{l,0}, u^{l,0} = 0, u^{l,i} = u^{l,i−1} + B^{l,i}(r^{l,i−1}), A^l = ξ^l", "thm81_back",
             (Step("definition of the features", "(8.2)",
                   "u^{l,0} = 0, f^l = r^{l,0}, u^{l,i} = u^{l,i−1} + B^{l,i}(r^{l,i−1})"),
              Step("linearity of ξ", "(3.17)", "f^l − ξu^{l,i} = r^{l,i−1} − ξB(r^{l,i−1}) = r^{l,i}: (6.4)")),
             terminal=True),
    _tie("mg-iresnet", "iresnet"),
    _tie("mg-resnet", "sigma-resnet"),
    Relation("resnet", "sigma-resnet", "equivalent", "Lemma 8.2",
             "f̃^{l,i} = f^{l,i−1} − ξ^{l,i}ση^{l,i}(f^{l,i−1}) (8.4), f^{l,i} = σ(f̃^{l,i})", "lemma82",
             (Step("pre-activation state", "(8.4)", "f̃^{l,i} = f^{l,i−1} − ξση(f^{l,i−1}), f^{l,i} = σ(f̃^{l,i})"),
              Step("substitute f^{l,i−1} = σ(f̃^{l,i−1})", "(8.5)", "f̃^{l,i} = σ(f̃^{l,i−1}) − ξσησ(f̃^{l,i−1})"),
              Step("σ-ResNet form", "(8.3)", "with f̃^{l,0} := f^{l,0}, a ReLU output")),
             (relu_input_premise,)),
    Relation("sigma-resnet", "mg-resnet", "equivalent", "definition (8.6)",
             "a σ-ResNet whose ξ^{l,i} = ξ^l for every step is an Mg-ResNet", "same",
             (Step("definition of Mg-ResNet", "(8.6)", "σ-ResNet with one ξ^l per grid, shared by its steps"),),
             (tied_xi_premise,)),
    Relation("sigma-resnet", "resnet", "equivalent", "Lemma 8.2, read backwards", "f^{l,i} = σ(f̃^{l,i}) (8.4)",
             "lemma82_back",
             (Step("f^{l,i} := σ(f̃^{l,i})", "(8.4)",
                   "σ(f̃^{l,i}) = σ(f^{l,i−1} − ξση(f^{l,i−1})): the ResNet step (7.8)"),), terminal=True),
    Relation("classic-cnn", "mg-resnet", "special-case", "Theorem 8.3, Remark 8.4",
             "ξ^l = δ̂ (8.12), η^{l,i} = [id, −id]∘(χ^{l,i} − id) (8.13)", "thm83",
             (Step("choose ξ^l = δ̂ with δ̂([X, Y]) = Y − X", "(8.12)", "δ̂ maps 2c channels to c"),
              Step("choose η^{l,i} = [id, −id]∘(χ^{l,i} − id)", "(8.13)", "η = split∘sub_id(χ)"),
              Step("relu(x) − relu(−x) = x", "(8.17), (8.21)", "δ̂∘σ∘[id, −id] = −id (the paper prints "
                   "relu(x) + relu(−x), which is |x|)"),
              Step("substitute", "(8.22)", "σ(f) − δ̂ση(σf) = σ(f) + (χ − id)(σf) = χ(σ(f))")),
             tying=("xi", "T")),
    Relation("linear-mgnet", "mg0", "equivalent", "Theorem 6.1",
             "ũ^{l,i} = u^{l,i} + ũ^{l,0}, f̃^l = f^l + A^l ũ^{l,0} (6.10), for any Π", "thm61",
             (Step("induction hypothesis", "(6.10)", "f̃^l = f^l + A^l ũ^{l,0},  u^{l,i} = ũ^{l,i} − ũ^{l,0}"),
              Step("linearity of A, R", "(6.11)", "f̃^{l+1} = R(f̃^l − Aũ^{l,ν}) + Aũ^{l+1,0} = f^{l+1} + Aũ^{l+1,0}"),
              Step("linearity of A, B = S", "(6.14)", "ũ^{l,i} − ũ^{l,0} = u^{l,i−1} + S(f^l − Au^{l,i−1}): (5.12)")),
             fixes=True),
    Relation("mg0", "linear-mgnet", "equivalent", "definition", "MG0 is a linear MgNet with Π = 0", "same",
             (Step("definition", "", "MG0 is a linear MgNet with Π = 0"),)),
    Relation("linear-mgnet", "mgnet", "equivalent", "definition", "a linear MgNet is an MgNet", "same",
             (Step("definition", "", "a linear MgNet is an MgNet"),)),
]
EDGES = RELATIONS  # the name before issue 19
Edge = Relation


def relate(src: str, tgt: str) -> list[Relation] | None:
    """The shortest chain of relations src -> tgt ([] when they are the same form); None when there is none."""
    if src == tgt:
        return []
    frontier, seen = [(src, [])], {src}
    while frontier:
        nxt = []
        for node, path in frontier:
            for e in RELATIONS:
                if e.src == node and e.dst not in seen:
                    seen.add(e.dst)
                    if e.dst == tgt:
                        return path + [e]
                    nxt.append((e.dst, path + [e]))
        frontier = nxt
    return None


def combine(path: list[Relation]) -> str:
    return "special-case" if any(e.ties for e in path) else "equivalent"


def _guarded(path: list[Relation]) -> list[int]:
    """For each premise edge_premises lists, in its order: how many relations of the chain, from its start,
    that premise guards (up to the first relation that adds it)."""
    first: dict = {}
    for k, e in enumerate(path or []):
        for fn in e.premises:
            first.setdefault(fn, k + 1)
    return list(first.values())


def edge_premises(ir, rd: Reading, path: list[Relation]) -> list[Premise]:
    """The premises the relations on the chain add, in order, each once."""
    fns = list(dict.fromkeys(fn for e in path or [] for fn in e.premises))
    return [fn(ir, rd) for fn in fns]


def derive(rd: Reading, path: list[Relation]) -> list[Step]:
    """The rules a derivation applies, in order, in the paper's notation."""
    return [step for e in path for step in e.derivation]


# ------------------------------------------------------------------ the check

def _small(ir):
    """Numerics at reduced width (the relations do not depend on it); returns (ir, note)."""
    from . import recompile
    small = {k: 16 for k in ("width", "fwidth") if isinstance(ir.params.get(k), (int, float)) and ir.params[k] > 16}
    if isinstance(ir.params.get("n"), (int, float)) and ir.params["n"] > 33:
        small["n"] = 33
    if not small:
        return ir, ""
    return recompile(ir, params=small), \
        "numerics at reduced size " + ", ".join(f"{k}={v}" for k, v in small.items())


def _target(target: str):
    """A family name or a spec file -> (family, target IR or None, its reading or None)."""
    from .diagnostics import Diagnostic, SpecError, did_you_mean
    from pathlib import Path

    from .library import bundled
    named = target.endswith(".mg") or "/" in target or Path(target).exists() or \
        target in {s.name for s in bundled()}  # a file, or a bundled spec by name (a family's name means the family)
    if target not in FAMILIES and named:
        from . import compile_ir
        tir = compile_ir(target)
        return None, tir, forms.read(tir)
    if target not in FAMILIES:
        raise SpecError([Diagnostic(f"unknown equivalence target '{target}'", None,
                                    did_you_mean(target, FAMILIES) or "use a spec file or one of "
                                    + ", ".join(FAMILIES))])
    return target, None, None


def check_equiv(ir, target: str, trials: int = 3, seed: int = 0) -> dict:
    """Decide the relation of the spec to the target; never raises except SpecError for bad input."""
    from .diagnostics import Diagnostic, SpecError
    if trials < 1:
        raise SpecError([Diagnostic(f"--trials {trials}: the numerics need at least one trial", None,
                                    "e.g. --trials 3")])
    if not -2**31 <= seed < 2**31:
        raise SpecError([Diagnostic(f"--seed {seed}: use a number between -2^31 and 2^31", None)])
    tfam, tir, trd = _target(target)
    models = _as_models(ir, tir, trials, seed) if tir is not None else None  # spec against spec: models.py
    if models is not None and models["verdict"] in ("equivalent", "special-case"):
        return models
    res = Result(ir.path, target, trials, seed)
    try:
        with contextlib.ExitStack() as stack:
            _check(ir, tfam, tir, trd, res, trials, seed, stack)
    except SpecError:
        raise
    except Exception as e:  # never an internal error: say what could not be decided
        if os.environ.get("MGDSL_DEBUG"):
            raise
        res.verdict = "undecided"
        res.reason = f"the check could not be completed ({type(e).__name__}: {e}); this is a bug in mgdsl"
    if models is not None and res.verdict == "undecided":
        return models  # a theorem relating the two files (6.1) decides first; else what running both found
    return res.as_dict()


def _as_models(ir, tir, trials: int, seed: int) -> dict:
    """Two specs compared as models (mgdsl/models.py); never an internal error."""
    from . import models
    try:
        return models.compare(ir, tir, trials, seed)
    except Exception as e:
        if os.environ.get("MGDSL_DEBUG"):
            raise
        res = Result(ir.path, tir.path, trials, seed)
        res.reason = f"the models could not be compared ({type(e).__name__}: {e}); this is a bug in mgdsl"
        return res.as_dict()


@contextlib.contextmanager
def _one_thread():
    """The numerics are tiny tensors: one thread is faster than several on a shared machine, and the
    results do not depend on the thread count. Restores the caller's setting."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@dataclass
class Result:
    spec: str
    target: str
    trials: int
    seed: int
    source_family: str = "unknown"
    target_family: str = "unknown"
    verdict: str = "undecided"
    reason: str = ""
    relation: str = ""
    max_error: float | None = None
    counterexample: dict | None = None
    note: str = ""

    def __post_init__(self):
        self.tying: dict = {}
        self.ties: dict = {}  # target slots the spec ties together (found on the target model)
        self.derivation: list[Step] = []
        self.premises: list[Premise] = []

    def as_dict(self) -> dict:
        return {
            "spec": self.spec, "source_family": self.source_family, "target": self.target,
            "target_family": self.target_family, "verdict": self.verdict, "reason": self.reason,
            "relation": self.relation, "tying": self.tying,
            "derivation": [{"rule": s.rule, "equation": s.equation, "term": s.term} for s in self.derivation],
            "premises": [{"premise": p.text, "status": p.status, "where": p.where, "detail": p.detail}
                         for p in self.premises],
            "max_error": self.max_error, "counterexample": self.counterexample,
            "numerics": {"trials": self.trials, "seed": self.seed, "dtype": "float64", "mode": "eval",
                         "note": self.note},
        }


SWAP_TEXT = "(8.7) replaces σ(f) by f between Mg-ResNet and Mg-iResNet: the same function only where f ≥ 0"


def _check(ir, tfam, tir, trd, res: Result, trials: int, seed: int, stack: contextlib.ExitStack) -> None:
    rd = forms.read(ir)
    res.source_family = rd.family
    if trd is not None and _shapes_differ(ir, tir, res):  # other inputs or outputs: whatever the forms
        res.target_family = trd.family
        return
    if trd is not None and tir.source.text == ir.source.text and tir.params == ir.params:
        res.target_family, res.verdict = trd.family, "equivalent"  # the same text and values: the same model
        res.reason = f"the target {tir.path} is the same spec, with the same parameters"
        return
    if trd is not None:
        if trd.family == "unknown" or not trd.ok:
            res.target_family = trd.family
            why = trd.note or f"{trd.first_failure().text}: {trd.first_failure().detail}"
            res.reason = f"the target spec {tir.path} is not a recognised form: {why}"
            return
        tfam = trd.family
    res.target_family = tfam
    if rd.family == "unknown":
        res.reason = rd.note
        return
    if rd.shape:
        res.derivation.append(Step("normal form of the step", "", _normal_text(ir, rd)))
    path = relate(rd.family, tfam)
    premises, swap = list(rd.premises), None
    if path is None:
        path, extra, swap = _narrowing(ir, rd, tfam)
        premises += extra
        if path is None and swap is None:
            res.reason = f"no relation of the paper leads from {rd.family} to {tfam}"
            return
        path = path or []  # a swap alone: no relation before it
    res.relation = "; ".join([f"{e.src} → {e.dst}: {e.relation} [{e.rule}]" for e in path] +
                             ([] if swap is None else [SWAP_TEXT])) or f"both have the {tfam} form ({rd.shape})"
    chained = edge_premises(ir, rd, path)  # a relation's premise guards the chain up to that relation
    premises, guards = premises + chained, {id(p): k for p, k in zip(chained, _guarded(path))}
    if trd is not None:
        premises.append(Premise(f"the target {tir.path} has the {tfam} form ({trd.shape})", "ok"))
    small, res.note = _small(ir)
    if _too_large(small, premises, res):
        return
    srd = forms.read(small) if small is not ir else rd
    from . import numerics as X
    stack.enter_context(_one_thread())
    spec = X.SpecRun(small, seed)
    # premises in order; the derivation stops at the first that fails
    for p in premises:
        res.premises.append(p)
        if p.status == "ok":
            continue
        _refute(spec, srd, p, path, swap, trials, tfam, small, res, guards.get(id(p)))
        return
    if swap is not None:
        _swap(spec, srd, path, swap, trials, tfam, small, res)
        return
    res.derivation += derive(rd, path)
    file_target = tir if (trd is not None and path and path[-1].numerics == "thm61") or \
        (trd is not None and not path and tfam == "mg0") else None
    if file_target is not None and _file_differs(ir, tir, res):
        return
    err, where = _numerics(spec, srd, path, None, trials, tfam, small, file_target, res)
    res.max_error = err
    if err > TOL:
        if file_target is not None:
            res.verdict, res.counterexample = "not-equivalent", where
            res.reason = (f"the spec and {tir.path} differ where Theorem 6.1 equates them (their operators or "
                          "numbers of steps are not the same)")
            return
        res.verdict = "undecided"
        res.counterexample = where
        res.reason = (f"the derivation and the numerics disagree (max error {err:.3g}): this is a bug in mgdsl, "
                      "please report it")
        return
    if trd is not None and file_target is None:
        _against_file(ir, tir, tfam, combine(path), res)
        return
    res.verdict = combine(path)
    _tied(path, res)


def _too_large(small, premises: list, res: Result) -> bool:
    """A model too large to run in seconds: undecided, saying how to make it small."""
    h, w = (small.input_ty.shape + (1, 1))[1:3]
    if small.total_params <= MAX_PARAMS and h * w <= MAX_PIXELS:
        return False
    res.premises = premises
    res.reason = (f"the numerics would run the model at full size ({small.total_params:,} parameters, "
                  f"input {h}x{w}); give the spec a `param width` (and `n`) so that they can run small")
    return True


def _swap(spec, srd: Reading, path, swap, trials: int, tfam: str, small, res: Result) -> None:
    """Mg-ResNet ↔ Mg-iResNet: the same weights with σ(f) replaced by f (8.7), run on the same inputs (after the
    chain that leads to a σ-ResNet, e.g. Lemma 8.2 from a ResNet)."""
    err, where = _numerics(spec, srd, path, swap, trials, tfam, small, None, None)
    res.derivation += derive(srd, path)
    res.max_error = err
    res.derivation.append(Step("replace σ(f) by f", "(8.7)", "the same weights in the other form"))
    if err > TOL:
        res.verdict, res.counterexample = "not-equivalent", where
        res.reason = "Mg-ResNet and Mg-iResNet differ by σ(f) ↔ f (8.7): a counterexample with the same weights"
    else:
        res.verdict = "undecided"
        res.reason = "σ(f) ↔ f (8.7) changed nothing on these inputs (all states ≥ 0?); no relation proves it"


def _file_differs(ir, tir, res: Result) -> bool:
    """Theorem 6.1 against a target file relates the iterates of every grid; the rest must be the same."""
    if ir.grids != tir.grids:
        res.verdict = "not-equivalent"
        res.counterexample = {"grids": {"spec": ir.grids, "target": tir.grids}}
        res.reason = f"the spec has {ir.grids} grids, the target {tir.path} {tir.grids}"
        return True
    if repr(ir.equations.get("output")) != repr(tir.equations.get("output")):
        res.verdict = "undecided"
        res.reason = (f"the output is computed differently ({_output_text(ir)} vs {_output_text(tir)} in "
                      f"{tir.path}): Theorem 6.1 relates the iterates on every grid, not what is made of them")
        return True
    return False


def _tied(path: list[Edge], res: Result) -> None:
    """The spec ties what the target leaves free (one operator for several of the target's slots: per grid
    against per step, one for the model against one per grid): a special case, with the tying map.
    Theorem 6.1 fixes operators by construction (the stencils, R in the Galerkin A) and is left as it is."""
    if not res.ties or any(e.fixes for e in path):
        return
    res.verdict = "special-case"
    res.tying = {k: v for k, v in sorted({**res.tying, **res.ties}.items(), key=lambda kv: _label_key(kv[0]))}
    res.derivation.append(Step("tie", "(8.7)", "the spec uses one operator where the target has one per "
                               + "grid or step: " + ", ".join(sorted(res.ties, key=_label_key))))


def _refute(spec, srd: Reading, p: Premise, path, swap, trials: int, tfam: str, small, res: Result,
            upto: int | None = None) -> None:
    """A premise failed or is not proved: run the relation it guards on the networks' own states (both
    networks from the same inputs through every grid, step and transition). A difference there, in what the
    relation equates, is `not-equivalent`; none is `undecided`, naming the premise (a premise that fails
    only off the states the network reaches is no counterexample). The premise's own witness, which may
    leave those states (a linearity test on other inputs), is reported, never a verdict. A premise of a relation
    on the chain (`upto`) runs the chain up to that relation; one of the reading runs its first relation."""
    from . import numerics as X
    res.derivation.append(Step("stopped", "", f"the premise “{p.text}” {'fails' if p.status == 'failed' else 'is not proved'}"
                               f"{': ' + p.detail if p.detail else ''}; the rule is not applied"))
    err, where, skipped = 0.0, {}, ""
    try:
        chain, sw = (path[:upto], None) if upto else (path[:1] if path else [], swap)
        err, where = _numerics(spec, srd, chain, sw, trials, tfam, small, None, None)
    except X.Uncarried as e:
        skipped = f"; the relation's numerics could not run: {e}"
    res.max_error = err
    if err > TOL:
        res.verdict, res.counterexample = "not-equivalent", where
        res.reason = f"{p.text}: {p.detail}" if p.detail else p.text
        return
    aside = ""
    if p.witness and p.witness.kind != "model":
        sp = _same_premise(srd, p)
        w = max(X.witness(spec, srd, sp, t) for t in range(trials)) if sp is not None else 0.0
        if w > TOL:
            aside = f"; off the network's states the premise's witness differs by {w:.3g}"
    res.verdict = "undecided"
    res.reason = (f"the premise “{p.text}” could not be proved ({p.detail or 'see above'}) and running both "
                  f"networks through every grid found no difference (max error {err:.3g}){skipped}{aside}")


def _shapes_differ(ir, tir, res: Result) -> bool:
    """A target file on other inputs or with other outputs is a different function: not-equivalent."""
    mine, theirs = (ir.input_ty.shape, ir.output_ty.shape), (tir.input_ty.shape, tir.output_ty.shape)
    if mine == theirs:
        return False
    res.verdict = "not-equivalent"
    res.counterexample = {"spec": {"input": list(mine[0]), "output": list(mine[1])},
                          "target": {"input": list(theirs[0]), "output": list(theirs[1])}}
    res.reason = (f"the spec maps {shape_text(mine[0])} to {shape_text(mine[1])}, the target {tir.path} maps "
                  f"{shape_text(theirs[0])} to {shape_text(theirs[1])}: they are not functions of the same thing")
    return True


def _output_text(ir) -> str:
    eq = (ir.equations.get("output") or [None])[0]
    try:
        return N.show(N.normalise(ir, eq.assigns[0].term, "output", ir.grids, 0))
    except Exception:  # only a message: the written term is enough
        return repr(eq.assigns[0].term) if eq else "?"


def _against_file(ir, tir, tfam: str, verdict: str, res: Result) -> None:
    """A target spec file (outside Theorem 6.1's comparison of two MG0 files) is read as its form only: the
    numerics ran that form's canonical model at the spec's grids and steps, not the file's own operators,
    sizes and sharing. So the relation to the form is not a verdict about the file (whose inputs and outputs
    _check has already found equal to the spec's)."""
    res.verdict = "undecided"
    res.reason = (f"the spec is {verdict} to the {tfam} form, which {tir.path} has; but the target file's own "
                  f"operators, grids, steps and sharing were not compared (the numerics ran the canonical {tfam} "
                  f"model with the spec's operators), so nothing follows about the file itself: "
                  f"`--equiv {tfam}` asks about the form")



def _normal_text(ir, rd: Reading) -> str:
    level, i = next(iter(sorted(rd.roles)))
    m = N.step_map(ir, level, i)
    return "; ".join(f"{s} = {N.show(lc)}" for s, lc in m.items()) + f"  (grid {level}, step {i}): {rd.shape}"


def _same_premise(srd: Reading, p: Premise) -> Premise | None:
    """The premise as read on the reduced-size IR (whose roles the numerics carry)."""
    same = (p.witness.kind, p.witness.role, p.witness.state) if p.witness else None
    for q in srd.premises:  # matched by what its witness evaluates, not by its wording
        if q.witness and (q.witness.kind, q.witness.role, q.witness.state) == same:
            return q
    if p.witness and p.witness.kind in ("tied", "linear-op"):
        keys = p.witness.keys
        return p if all(k in srd.roles for k in keys) else None
    return p if p.witness else None


def _narrowing(ir, rd: Reading, tfam: str):
    """No chain from the spec's form: one premise away from a form that has one? (path, premises, swap)"""
    if rd.family == "iresnet":  # (σ-ResNet → Mg-ResNet is a relation: the definition (8.6))
        path = relate("mg-iresnet", tfam)
        if path is not None:
            return path, ([tied_xi_premise(ir, rd)] if rd.ok else []), None
    if rd.family == "resnet":  # Lemma 8.2 first: its image is a σ-ResNet with the same roles
        path, extra, swap = _narrowing(ir, dataclasses.replace(rd, family="sigma-resnet"), tfam)
        if path is not None or swap is not None:
            return relate("resnet", "sigma-resnet") + (path or []), extra, swap
    if rd.family == "mgnet" and tfam in ("linear-mgnet", "mg0"):
        extra = forms.linear_mgnet_premises(ir, rd)
        return relate("linear-mgnet", tfam), extra, None
    if rd.family in ("mg-resnet", "sigma-resnet") and tfam in ("mg-iresnet", "iresnet"):
        return None, [], "sigma-swap"
    return None, [], None


def _numerics(spec, rd: Reading, path: list[Edge], swap, trials: int, tfam: str, small, file_target, res):
    """Run the chain of relations on `trials` seeded inputs; (max error, where)."""
    import torch

    from . import numerics as X
    run = X.Run(spec, small.grids, max(small.nu))
    names = (rd.state, rd.data) if rd.family in X.FEATURE else (rd.state,)
    roles0 = _carried(spec, rd)
    trans0 = _carried_transitions(spec, rd)
    out = X.Outcome()
    tying: dict = {}
    with X.default_dtype(torch.float64), torch.no_grad():
        for t in range(trials):
            run.trans = trans0  # a relation hands its target's transitions to the next: each trial starts afresh
            st = spec.states(t)
            traj = X.trajectory(small, st, names)
            roles, nm = roles0, names
            if swap is not None:
                for e in path:
                    traj, roles, nm = e.runner(run)(traj, roles, out, t, nm)
                run.sigma_swap(traj, roles, out, t, nm)
                continue
            if not path:
                if tfam == "mg0":
                    _thm61(run, spec, rd, traj, roles, out, t, nm, small, file_target)
                else:
                    run.same(tfam)(traj, roles, out, t, nm)
                continue
            for e in path:
                if e.numerics == "thm61":
                    _thm61(run, spec, rd, traj, roles, out, t, nm, small, file_target)
                    break
                assert not e.terminal or e is path[-1], f"{e.rule} must end its chain"
                traj, roles, nm = e.runner(run)(traj, roles, out, t, nm)
                if e.tying and t == 0:
                    if e.ties:
                        tying.clear()
                    tying.update({k: v for k, v in run.tying.items() if k.split("[")[0] in e.tying})
    if res is not None:
        res.tying = {k: v for k, v in sorted(tying.items(), key=lambda kv: _label_key(kv[0]))}
        res.ties = X.ties(run.last) if getattr(run, "last", None) is not None else {}
    if out.first and out.first != out.where:
        return out.error, dict(out.where, first_difference=out.first)
    return out.error, out.where


def _label_key(label: str):
    name, _, idx = label.partition("[")
    return (name, tuple(int(x) for x in idx.rstrip("]").split(", ") if x.strip().lstrip("-").isdigit()))


def _carried(spec, rd: Reading) -> dict:
    """The reading's roles as modules of the spec; a step whose operator was only ever applied to zero
    borrows the grid's other steps' (it contributes nothing there)."""
    from . import numerics as X
    out: dict = {}
    for key, r in sorted(rd.roles.items()):
        out[key] = {}
        for role, op in r.items():
            if role == "reads":
                continue
            try:
                out[key][role] = spec.carry(op)
            except X.Uncarried:
                out[key][role] = None
    for key, r in out.items():
        if "b" in r:  # A = W + b: the target's ξ is the linear part W, r = f − A(u) takes the whole A
            b = rd.roles[key]["b"]
            r["W"] = r["A"]
            r["A"] = spec.carry(rd.roles[key]["A"] + b) if b and r["A"] is not None else r["A"]
            del r["b"]
    for key, r in out.items():
        for role, m in list(r.items()):
            if m is None:
                other = next((out[k][role] for k in sorted(out) if k[0] == key[0] and out[k].get(role) is not None),
                             None)
                if other is None:
                    raise X.Uncarried(f"{role} on grid {key[0]} is never applied to a non-zero value")
                r[role] = other
    return out


def _carried_transitions(spec, rd: Reading) -> dict:
    """level -> {slot: module} of the spec's transition operators that could be carried."""
    from . import numerics as X
    out: dict = {}
    for level, ops in rd.trans.items():
        out[level] = {}
        for name, op in ops.items():
            with contextlib.suppress(X.Uncarried):
                out[level][name] = spec.carry(op)
    return out


def _thm61(run, spec, rd, traj, roles, out, trial, names, small, file_target):
    import torch

    from . import numerics as X
    if file_target is not None:
        tsmall, _ = _small(file_target)
        trd = forms.read(tsmall)
        if tuple(tsmall.input_ty.shape) != tuple(small.input_ty.shape):
            out.see(float("inf"), reason=f"input shapes differ: spec {tuple(small.input_ty.shape)}, "
                                         f"target {tuple(tsmall.input_ty.shape)}")
            return
        with X.default_dtype(torch.float64):
            torch.manual_seed(spec.seed)
            tmodel = X.lower_ir(tsmall).double().eval()
        t = X.Target(tsmall, {label: tmodel.instance(label) for label in tsmall.instances})
        X.thm61(traj, roles, out, trial, names, t, (trd.state, trd.data), tsmall.nu)
        return
    t = X.Target(X.canonical("mg0", small.grids, max(small.nu)))
    X.fill(t, roles, {"A": "A", "S": "B"})
    for level in range(1, small.grids):
        lc = {s: N.normalise(small, term, "coarsen", level, 0) for s, _, term in N.equation(small, "coarsen", level)}
        # R is what the transition applies to f itself (R(f − A(u)) distributes to R(f) − R(A(u)))
        direct = [N.chain((x,))[0] for x in lc.get(rd.data, ()) if N.chain((x,))[1] == N.Var(rd.data)]
        if len(direct) != 1:
            raise X.Uncarried(f"the transition to grid {level + 1} does not apply one operator R to {rd.data}")
        t.slots[X.slot_label(t.ir, "R", level, 0)] = spec.carry(direct[0])
    X.thm61(traj, roles, out, trial, names, t, ("u", "f"), small.nu)
