"""When the numerics of `check --equiv` disagree with the derivation, the report says where: the grid, the step
and the trial of the largest difference, and how large it is. Each relation is run on a spec it holds for,
with one state of one trial moved by 0.25 at one grid and step (the states the spec's model computed, as the
numerics read them): the verdict must become undecided ("the derivation and the numerics disagree"), the
error must be that move, and the counterexample must name that grid, step and trial. A relation that skipped
a grid or a step, compared on the wrong trial, or reported the wrong place fails here."""
import pytest

import mgdsl
from mgdsl import numerics as X
from mgdsl.equiv import check_equiv

MOVE = 0.25


def _moved(monkeypatch, grid: int, step: int, trial: int, state: str | None):
    """numerics.trajectory as it is, but the `trial`-th call (trial `trial`) returns `state` (or every state)
    at (grid, step) moved by MOVE."""
    real = X.trajectory
    calls = {"n": 0}

    def trajectory(ir, st, names):
        traj = real(ir, st, names)
        if calls["n"] == trial:
            its = traj[grid][step]
            for s in ([state] if state else list(its)):
                its[s] = its[s] + MOVE
        calls["n"] += 1
        return traj
    monkeypatch.setattr(X, "trajectory", trajectory)
    return calls


# spec (tests/equiv_corpus), target, -D values, the relation it runs, the state moved (None: the only one)
CASES = [
    ("resnet-base.mg", "sigma-resnet", {}, "Lemma 8.2", None),
    ("sigma-resnet-base.mg", "resnet", {}, "Lemma 8.2, read backwards", None),
    ("mgnet-base.mg", "mg-iresnet", {}, "Theorem 8.1", "u"),
    ("mg-iresnet-base.mg", "mgnet", {}, "Theorem 8.1, read backwards", None),
    ("mg-iresnet-base.mg", "iresnet", {}, "(8.7)", None),
    ("mgnet-base.mg", "mgnet", {}, "", "u"),
    ("classic-cnn-base.mg", "resnet", {}, "Theorem 8.3", None),
    ("linear-mgnet-base.mg", "mg0", {}, "Theorem 6.1", "u"),
]


def _grids_steps(spec: str, params: dict, one_step: bool = False, smooth: str | None = None):
    path = f"tests/equiv_corpus/{spec}"
    text = open(path).read()
    if one_step:  # smooth 1 on every grid
        text = text.replace("smooth nu", "smooth 1").replace("smooth 2", "smooth 1")
    if smooth:  # e.g. "0, 2": no step on grid 1
        text = text.replace("smooth nu", f"smooth {smooth}").replace("smooth 2", f"smooth {smooth}")
    ir = mgdsl.compile_ir(path, text=text, **params)
    return ir, [(g, i) for g in range(1, ir.grids + 1) for i in range(1, ir.nu[g - 1] + 1)]


@pytest.mark.parametrize("spec,target,params,rule,state", CASES, ids=[f"{c[0]}->{c[1]}" for c in CASES])
def test_a_moved_state_is_reported_at_its_grid_step_and_trial(monkeypatch, spec, target, params, rule, state):
    ir, places = _grids_steps(spec, params)
    clean = check_equiv(ir, target)
    assert clean["verdict"] in ("equivalent", "special-case") and clean["max_error"] <= 1e-9, clean["reason"]
    assert rule in clean["relation"]
    # the last grid's last step, on the last trial, and the first grid's first step on the first
    for (grid, step), trial in ((places[-1], 2), (places[0], 0)):
        calls = _moved(monkeypatch, grid, step, trial, state)
        res = check_equiv(ir, target)
        assert calls["n"] == 3  # one trajectory per trial
        assert res["verdict"] == "undecided" and "the derivation and the numerics disagree" in res["reason"]
        where = res["counterexample"]
        assert (where["grid"], where["step"], where["trial"]) == (grid, step, trial), where
        if state is None:  # a state compared as it is: the error is the move itself
            assert res["max_error"] == pytest.approx(MOVE, abs=1e-9)
        else:  # u enters through A or xi: some difference, far above round-off
            assert res["max_error"] > 1e-3
        monkeypatch.undo()


@pytest.mark.parametrize("spec,target", [("mgnet-base.mg", "mg-iresnet"), ("resnet-base.mg", "sigma-resnet"),
                                         ("sigma-resnet-base.mg", "resnet"), ("mg-iresnet-base.mg", "mgnet")])
def test_every_grid_is_compared_with_one_step_per_grid(monkeypatch, spec, target):
    # nu = 1: each grid has two iterates (0 and 1); a relation that needed more would skip every grid
    ir, places = _grids_steps(spec, {}, one_step=True)
    assert all(i == 1 for _, i in places) and len(places) == ir.grids >= 2
    assert check_equiv(ir, target)["max_error"] <= 1e-9
    for grid, step in places:
        _moved(monkeypatch, grid, step, 1, "u" if "mgnet" in spec else None)
        where = check_equiv(ir, target)["counterexample"]
        assert (where["grid"], where["step"], where["trial"]) == (grid, step, 1)
        monkeypatch.undo()


def test_the_sigma_swap_counterexample_names_a_real_place():
    # Mg-ResNet vs Mg-iResNet is refuted by (8.7)'s sigma <-> identity swap; its counterexample is shown to
    # the user and must name a grid, step, trial and state of the spec
    ir = mgdsl.compile_ir("tests/equiv_corpus/mg-resnet-base.mg")
    res = check_equiv(ir, "mg-iresnet")
    assert res["verdict"] == "not-equivalent" and res["max_error"] > 1e-3
    where = res["counterexample"]
    assert 1 <= where["grid"] <= ir.grids and 1 <= where["step"] <= ir.nu[where["grid"] - 1]
    assert where["trial"] in (0, 1, 2) and where["state"] == "f"


@pytest.mark.parametrize("target", ["specs/multigrid/mg0.mg", "mg0"])
def test_theorem_6_1_reports_the_moved_iterate_at_its_grid_step_and_trial(monkeypatch, target):
    # against a target file the difference is the verdict (not-equivalent, its place the counterexample the
    # user reads); against the family it is a disagreement (undecided)
    ir = mgdsl.compile_ir("specs/multigrid/mgnet-linear.mg")  # n = 33, as the target file
    places = [(g, i) for g in range(1, ir.grids + 1) for i in range(1, ir.nu[g - 1] + 1)]
    assert check_equiv(ir, target)["verdict"] == "equivalent"
    for (grid, step), trial in ((places[-1], 2), (places[0], 0), (places[len(places) // 2], 1)):
        _moved(monkeypatch, grid, step, trial, "u")
        res = check_equiv(ir, target)
        assert res["verdict"] == ("not-equivalent" if target.endswith(".mg") else "undecided")
        assert res["max_error"] == pytest.approx(MOVE, abs=1e-9)  # u^{l,i} - u^{l,0} is compared as it is
        where = res["counterexample"]
        assert (where["grid"], where["step"], where["trial"], where["state"]) == (grid, step, trial, "u"), where
        monkeypatch.undo()


def test_theorem_6_1_reports_a_moved_right_hand_side_at_step_0(monkeypatch):
    # f^l - A^l u^{l,0} at the start of each grid is what MG0 is handed: moving f there is found at step 0
    ir = mgdsl.compile_ir("specs/multigrid/mgnet-linear.mg")  # n = 33, as the target file
    _moved(monkeypatch, ir.grids, 0, 1, "f")
    where = check_equiv(ir, "specs/multigrid/mg0.mg")["counterexample"]
    assert (where["grid"], where["step"], where["trial"], where["state"]) == (ir.grids, 0, 1, "f"), where


@pytest.mark.parametrize("spec,target,state", [("resnet-base.mg", "sigma-resnet", None),
                                               ("sigma-resnet-base.mg", "resnet", None),
                                               ("mg-iresnet-base.mg", "mgnet", None), ("mgnet-base.mg", "mg-iresnet", "u"),
                                               ("resnet-base.mg", "resnet", None), ("mg-iresnet-base.mg", "mg-iresnet", None)])
def test_a_grid_without_steps_does_not_stop_the_comparison_of_the_next(monkeypatch, spec, target, state):
    # smooth 0, 2: grid 1 has no step to compare; grid 2 must still be compared
    ir, places = _grids_steps(spec, {}, smooth="0, 2")
    assert places == [(2, 1), (2, 2)] and check_equiv(ir, target)["max_error"] <= 1e-9
    _moved(monkeypatch, 2, 2, 1, state)
    where = check_equiv(ir, target)["counterexample"]
    assert (where["grid"], where["step"], where["trial"]) == (2, 2, 1)


def test_theorem_6_1_follows_a_different_number_of_steps_on_each_grid(tmp_path):
    # spec and target file both smooth 1, 2, 3, 1, 2 times on grids 1..5: equal; the target one step short on
    # grid 3 only: not equivalent, from grid 3 on (the largest difference may be on a coarser grid)
    spec, target = tmp_path / "spec.mg", tmp_path / "mg0.mg"
    spec.write_text(open("specs/multigrid/mgnet-linear.mg").read().replace("smooth nu", "smooth 1, 2, 3, 1, 2"))
    mg0 = open("specs/multigrid/mg0.mg").read()
    target.write_text(mg0.replace("smooth nu", "smooth 1, 2, 3, 1, 2"))
    ir = mgdsl.compile_ir(str(spec))
    assert ir.grids == 5 and ir.nu == [1, 2, 3, 1, 2]
    assert check_equiv(ir, str(target))["verdict"] == "equivalent"
    target.write_text(mg0.replace("smooth nu", "smooth 1, 2, 2, 1, 2"))
    res = check_equiv(ir, str(target))
    assert res["verdict"] == "not-equivalent" and res["counterexample"]["grid"] >= 3  # grids 1, 2 agree


@pytest.mark.parametrize("target_smooth,step", [("1, 2, 3, 1, 3", 2), ("1, 2, 3, 1, 1", 2)])
def test_theorem_6_1_compares_the_last_iterates_of_a_grid_with_another_number_of_steps(tmp_path, target_smooth,
                                                                                       step):
    # the counts differ on the coarsest grid only, where nothing after the grid's last iterate would show it:
    # that comparison alone makes the verdict, and it is reported at the spec's last step there
    spec, target = tmp_path / "spec.mg", tmp_path / "mg0.mg"
    spec.write_text(open("specs/multigrid/mgnet-linear.mg").read().replace("smooth nu", "smooth 1, 2, 3, 1, 2"))
    target.write_text(open("specs/multigrid/mg0.mg").read().replace("smooth nu", f"smooth {target_smooth}"))
    res = check_equiv(mgdsl.compile_ir(str(spec)), str(target))
    assert res["verdict"] == "not-equivalent" and res["max_error"] > 1e-3
    where = res["counterexample"]
    assert (where["grid"], where["step"], where["state"]) == (5, step, "u") and where["trial"] in (0, 1, 2), where


def test_theorem_6_1_on_a_grid_without_steps_is_undecided_and_says_why(tmp_path):
    # no step on grid 2: no A^2 is read, so f^2 - A^2 u^{2,0} cannot be formed; the check must say so,
    # not compare grid 3 with grid 2's right-hand side (a shape error, "a bug in mgdsl")
    spec, target = tmp_path / "spec.mg", tmp_path / "mg0.mg"
    spec.write_text(open("specs/multigrid/mgnet-linear.mg").read().replace("smooth nu", "smooth 1, 0, 2, 1, 1"))
    target.write_text(open("specs/multigrid/mg0.mg").read().replace("smooth nu", "smooth 1, 0, 2, 1, 1"))
    res = check_equiv(mgdsl.compile_ir(str(spec)), "mg0")
    assert res["verdict"] == "undecided" and "bug in mgdsl" not in res["reason"]
    assert "grid 2 has no step" in res["reason"]
