"""Every numeric path of `check --equiv` can fail: fed a spec that does not satisfy its relation, it reports
an error; fed one that does, none. A path that compared a model with itself, or ignored one side, would
pass the first kind silently, so each path has a spec here that must fail it."""
import pytest
import torch

import mgdsl
from mgdsl import forms
from mgdsl import numerics as X
from mgdsl.equiv import _carried

TOL = 1e-9


def run_path(spec: str, path: str, force=None, **params):
    """Run one relation's numerics on a corpus spec; `force` rewrites the roles first (e.g. tie ξ by hand)."""
    ir = mgdsl.compile_ir(f"tests/equiv_corpus/{spec}", **params)
    rd = forms.read(ir)
    sr = X.SpecRun(ir, 0)
    roles = _carried(sr, rd)
    if force:
        roles = force(roles)
    names = (rd.state, rd.data) if rd.family in X.FEATURE or rd.data else (rd.state,)
    run = X.Run(sr, ir.grids, max(ir.nu))
    out = X.Outcome()
    with X.default_dtype(torch.float64), torch.no_grad():
        traj = X.trajectory(ir, sr.states(0), names)
        fn = run.same(*path[1:]) if path[0] == "same" else getattr(run, path[0])
        fn(traj, roles, out, 0, names)
    return out.error


def first_step(role):
    """Every step of a grid uses the operator of its first step (a forced tying)."""
    def force(roles):
        return {k: dict(r, **{role: roles[(k[0], 1)][role]}) for k, r in roles.items()}
    return force


@pytest.mark.parametrize("path,good,bad,force", [
    (("thm81",), "mgnet-base.mg", "mgnet-A-relu.mg", None),
    (("thm81",), "mgnet-base.mg", "mgnet-A-untied.mg", None),
    (("thm81_back",), "mg-iresnet-base.mg", "mg-iresnet-xi-hidden-bias.mg", None),
    (("same", "iresnet",), "mg-iresnet-base.mg", "iresnet-base.mg", first_step("xi")),
    (("same", "sigma-resnet",), "mg-resnet-base.mg", "sigma-resnet-base.mg", first_step("xi")),
    (("same", "mgnet",), "mgnet-base.mg", "mgnet-f-halved.mg", None),
    (("same", "mg-iresnet",), "mg-iresnet-base.mg", "iresnet-base.mg", first_step("xi")),
    (("lemma82",), "resnet-base.mg", "resnet-linear-stem.mg", None),
    (("lemma82_back",), "sigma-resnet-base.mg", "sigma-resnet-missing-sigma.mg", None),
    (("thm83",), "classic-cnn-base.mg", "classic-cnn-base.mg", first_step("chi")),
    (("sigma_swap",), None, "mg-resnet-base.mg", None),
], ids=["thm81-A-relu", "thm81-A-untied", "thm81_back", "tie-iresnet", "tie-sigma-resnet", "same-mgnet",
        "same-mg-iresnet", "lemma82", "lemma82_back", "thm83", "sigma_swap"])
def test_each_path_passes_its_relation_and_fails_a_spec_that_breaks_it(path, good, bad, force):
    if good:
        assert run_path(good, path) <= TOL
    assert run_path(bad, path, force) > 1e-6


def test_theorem_6_1_canonical_path_fails_a_wrong_transition():
    from mgdsl.equiv import check_equiv
    good = check_equiv(mgdsl.compile_ir("tests/equiv_corpus/linear-mgnet-base.mg"), "mg0", trials=1)
    assert good["verdict"] == "equivalent" and good["max_error"] <= TOL
    bad = check_equiv(mgdsl.compile_ir("tests/equiv_corpus/linear-mgnet-R-no-residual.mg"), "mg0", trials=1)
    assert bad["verdict"] == "not-equivalent" and bad["max_error"] > 1e-6


def test_lemma_8_2_compares_every_step_not_only_the_grid_input():
    assert run_path("resnet-base.mg", ("lemma82",), first_step("xi")) > 1e-6  # f^{l,0} is a ReLU output here


def test_lemma_8_2_hands_the_sigma_resnet_states_to_the_definition_of_mg_resnet():
    """resnet → sigma-resnet → mg-resnet: Lemma 8.2's f̃ (and D∘σ) feed the Mg-ResNet, which holds step 1's ξ."""
    def chain(spec):
        ir = mgdsl.compile_ir(f"tests/equiv_corpus/{spec}")
        rd, sr = forms.read(ir), X.SpecRun(ir, 0)
        run, out = X.Run(sr, ir.grids, max(ir.nu)), X.Outcome()
        run.trans = {lv: {n: sr.carry(op) for n, op in ops.items()} for lv, ops in rd.trans.items()}
        with X.default_dtype(torch.float64), torch.no_grad():
            traj, roles, names = run.lemma82(X.trajectory(ir, sr.states(0), ("f",)), _carried(sr, rd), out, 0, ("f",))
            lemma = out.error
            run.same("mg-resnet")(traj, roles, out, 0, names)
        return lemma, out.error, out.first
    assert max(chain("resnet-xi-tied.mg")[:2]) <= TOL
    lemma, err, first = chain("resnet-base.mg")
    assert lemma <= TOL < 1e-6 < err and (first["grid"], first["step"]) == (1, 2)


def test_theorem_6_1_compares_the_coarsest_grid_iterates():
    """B doubled on the last grid only: no later f depends on it, only that grid's u iterates show it."""
    from mgdsl.equiv import _thm61
    ir = mgdsl.compile_ir("tests/equiv_corpus/linear-mgnet-base.mg")
    rd = forms.read(ir)
    sr = X.SpecRun(ir, 0)
    roles = _carried(sr, rd)
    run = X.Run(sr, ir.grids, max(ir.nu))
    errors = []
    for doubled in (False, True):
        r = {k: dict(v, B=X.Seq(v["B"], X.Const(2.0)) if doubled and k[0] == ir.grids else v["B"])
             for k, v in roles.items()}
        out = X.Outcome()
        with X.default_dtype(torch.float64), torch.no_grad():
            _thm61(run, sr, rd, X.trajectory(ir, sr.states(0), ("u", "f")), r, out, 0, ("u", "f"), ir, None)
        errors.append(out.error)
    assert errors[0] <= TOL < 1e-6 < errors[1]
