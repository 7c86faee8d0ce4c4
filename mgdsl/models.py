"""Spec against spec (`mgdsl check A.mg --equiv B.mg`): the verdict, from match.py's correspondence and from
running both networks (float64, eval mode) on the same seeded inputs with the spec's weights carried along it.

equivalent: the two normal-form DAGs are isomorphic with every trained layer matched one to one (the renaming
map is printed) and both runs agree on every state at every grid and step and on the output. special-case: the
spec ties layers the target leaves free (the tying map is printed) and the runs agree with the tied weights.
not-equivalent: a run differs, with the first (grid, step, state) where it does. undecided: anything else."""
from __future__ import annotations

import torch

from . import forms, match as M
from .equiv import MAX_PARAMS, MAX_PIXELS, TOL, Result, Step, _shapes_differ, _small


def compare(ir, tir, trials: int, seed: int) -> dict:
    """The verdict of ir against tir as models, as equiv.Result's dict plus the renaming."""
    res = Result(ir.path, tir.path, trials, seed)
    res.source_family, res.target_family = forms.read(ir).family, forms.read(tir).family
    out_extra: dict = {"renaming": {"states": {}, "operators": {}}}
    if _shapes_differ(ir, tir, res):
        return {**res.as_dict(), **out_extra}
    if tir.source.text == ir.source.text and tir.params == ir.params:
        res.verdict, res.reason = "equivalent", f"the target {tir.path} is the same spec, with the same parameters"
        return {**res.as_dict(), **out_extra}
    na, nb = M.network(ir), M.network(tir)
    m = M.match(na, nb)
    res.derivation += [Step("identity of the primitives", "", t) for t in sorted(set(na.identities + nb.identities))]
    sa, sb, res.note = _small_pair(ir, tir)
    sna, snb = (M.network(sa), M.network(sb)) if sa is not ir or sb is not tir else (na, nb)
    ms = M.match(sna, snb) if sa is not ir or sb is not tir else m
    if ms.kind != m.kind:  # e.g. a width one spec writes as a number: only the full size matches
        sa, sb, sna, snb, ms, res.note = ir, tir, na, nb, m, ""
    h, w = (sa.input_ty.shape + (1, 1))[1:3]
    if max(sa.total_params, sb.total_params) > MAX_PARAMS or h * w > MAX_PIXELS:
        res.reason = (f"{_kind_text(m)}, but the numerics would run the models at full size "
                      f"({max(sa.total_params, sb.total_params):,} parameters, input {h}x{w}); give the specs a "
                      "`param width` so that they can run small")
        return {**res.as_dict(), **out_extra}
    layers = M.fill(sna, snb, _with_unmatched(ms.layers, M.partial(sa, sb)))
    states = ms.states if ms.kind != "none" else M.partial_states(sa, sb)
    err, where, out_err = run_pair(sa, sb, layers, states, trials, seed)
    res.max_error = err if err != float("inf") else None  # other shapes: the counterexample names them
    if m.kind != "none":
        out_extra["renaming"] = {"states": m.states, "operators": m.operators}
        res.derivation += _renaming_steps(m)
    _verdict(res, m, err, where, out_err)
    return {**res.as_dict(), **out_extra}


def _with_unmatched(layers: dict, extra: dict) -> dict:
    """The match's layers, plus those the output never reads (a Π whose value cancels in a V-cycle) aligned
    by where they are first used, so that the states they make are compared with the same weights."""
    out = dict(layers)
    used = set(layers.values())
    for tl, sl in extra.items():
        if tl not in out and sl not in used:
            out[tl] = sl
            used.add(sl)
    return out


def _kind_text(m: M.Match) -> str:
    return {"tied": "the IRs match up to renaming", "spec-ties": "the spec ties operators the target leaves free",
            "target-ties": "the target ties operators the spec leaves free",
            "none": "the IRs do not match"}[m.kind]


def _verdict(res: Result, m: M.Match, err: float, where: dict, out_err: float) -> None:
    """From the kind of match and the runs' largest difference (where: its first location)."""
    shapes = (where or {}).get("shapes")
    runs = (f"its shape is {'x'.join(map(str, shapes['spec']))} in the spec and "
            f"{'x'.join(map(str, shapes['target']))} in the target; -D applies to the spec only, the target is read "
            "with its own params" if shapes else f"max difference {err:.3g} over {res.trials} float64 trials")
    if m.kind in ("tied", "spec-ties") and err > TOL:
        res.verdict, res.counterexample = "undecided", where
        res.reason = (f"{_kind_text(m)}, but the runs differ at {_where_text(where)} ({runs})" +
                      (": this is a bug in mgdsl, please report it" if out_err > TOL else
                       "; the outputs agree, so this is a state the output does not depend on"))
        return
    if m.kind == "tied" and err <= TOL:
        res.verdict = "equivalent"
        res.relation = "the same model up to renaming: the normal forms of the whole network are equal"
        res.reason = f"the IRs match up to renaming and definition order; both networks agree ({runs})"
    elif m.kind == "spec-ties" and err <= TOL:
        res.verdict = "special-case"
        res.relation = "the target with weights tied as the tying map says"
        groups: dict = {}
        for tl, sl in m.operators.items():
            groups.setdefault(sl, []).append(tl)
        res.tying = {tl: sl for sl, tls in groups.items() if len(tls) > 1 for tl in tls}
        res.tying = dict(sorted(res.tying.items(), key=lambda kv: M.label_key(kv[0])))
        res.reason = f"the spec shares operators that the target has separately; with them tied both agree ({runs})"
    elif err > TOL:
        res.verdict = "not-equivalent"
        res.counterexample = where
        why = {"target-ties": "the target ties operators the spec has separately (the spec is freer)",
               "none": "the IRs do not match up to renaming"}[m.kind]
        carried = "along the matching" if m.kind != "none" else "where a partial matching exists"
        res.reason = (f"{why}; with the spec's weights carried {carried}, the spec and {res.target} first differ "
                      f"at {_where_text(where)} ({runs})")
    else:
        res.verdict = "undecided"
        res.reason = (f"{_kind_text(m)} ({res.target}: no isomorphism of the normal forms with every weight matched "
                      f"one to one), and running both found no difference ({runs})" + (f"; {m.note}" if m.note else ""))


def _where_text(where: dict) -> str:
    if "state" not in where:
        return f"the output (trial {where.get('trial', 0)})"
    other = f" (target state {where['target_state']})" if where["target_state"] != where["state"] else ""
    phase = "" if where["phase"] == "down" else f", {where['phase']} phase"
    return f"grid {where['grid']}, step {where['step']}{phase}, state {where['state']}{other}"


def _renaming_steps(m: M.Match) -> list[Step]:
    states = ", ".join(f"{s} → {t}" for s, t in m.states.items()) or "none"
    pairs = sorted(((s, t) for t, s in m.operators.items()), key=lambda st: (M.label_key(st[0]), M.label_key(st[1])))
    ops = ", ".join(f"{s} → {t}" for s, t in pairs) or "none (no trained operators; fixed ones match by what they compute)"
    return [Step("renaming of states (spec → target)", "", states),
            Step("renaming of operators (spec → target)", "", ops)]


def _small_pair(ir, tir):
    """Both specs at reduced size; a target param renamed is found by its value (the match then rechecks)."""
    from . import recompile
    sa, note = _small(ir)
    if sa is ir:
        return ir, tir, note
    changed = {k: v for k, v in sa.params.items() if ir.params.get(k) != v}
    tp: dict = {}
    for k, v in changed.items():
        if tir.params.get(k) == ir.params[k]:
            tp[k] = v
            continue
        same = [n for n, x in sorted(tir.params.items()) if x == ir.params[k] and n not in tp]
        if len(same) == 1:
            tp[same[0]] = v
    return sa, (recompile(tir, params=tp) if tp else tir), note


# ------------------------------------------------------------------ the runs

def _layer_module(model, ir, owner: str, pos: int):
    m = model.instance(owner)
    if isinstance(m, torch.nn.Sequential):
        return m[pos]
    return m if len(ir.instances[owner].layers) == 1 else None


def carry(spec, tgt, layers: dict) -> int:
    """Copy each spec layer's weights and statistics into its target layer; returns how many were carried."""
    n = 0
    for (tl, tk), (sl, sk) in sorted(layers.items()):
        a = _layer_module(spec.model, spec.ir, sl, sk)
        b = _layer_module(tgt.model, tgt.ir, tl, tk)
        if a is None or b is None:
            continue
        sda, sdb = a.state_dict(), b.state_dict()
        if sda.keys() == sdb.keys() and all(sda[k].shape == sdb[k].shape for k in sda):
            b.load_state_dict(sda)
            n += 1
    return n


def run_pair(sa, sb, layers: dict, states: dict, trials: int, seed: int) -> tuple[float, dict]:
    """Run both from the same inputs; (largest relative difference, the first place it exceeds TOL, the
    largest difference of the outputs)."""
    from .equiv import _one_thread
    from .lowering import default_dtype
    from .numerics import SpecRun
    with _one_thread(), default_dtype(torch.float64), torch.no_grad():
        spec, tgt = SpecRun(sa, seed), SpecRun(sb, seed + 1)
        carry(spec, tgt, layers)
        order = sorted(sa.states, key=lambda k: (sa.states[k], k))
        worst, first, out_err = 0.0, {}, 0.0
        for t in range(trials):
            x = spec.inputs(t)
            st_a, st_b = spec.model.forward_states(x), tgt.model.forward_states(x)
            for k in order + ["output"]:
                kb = "output" if k == "output" else (states.get(k[0]), *k[1:])
                if k not in st_a or kb not in st_b:
                    continue
                e = _diff(st_a[k], st_b[kb])
                worst = max(worst, e)
                out_err = max(out_err, e) if k == "output" else out_err
                if e > TOL and not first:
                    first = {"trial": t, "error": e} if k == "output" else \
                        {"grid": k[1], "step": k[3], "phase": k[2], "state": k[0], "target_state": kb[0],
                         "trial": t, "error": e}
                    if e == float("inf"):  # other shapes: say which, not a number JSON cannot hold
                        del first["error"]
                        first["shapes"] = {"spec": list(st_a[k].shape[1:]), "target": list(st_b[kb].shape[1:])}
    return worst, first, out_err


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float((a - b).abs().max()) / max(1.0, float(a.abs().max()))
