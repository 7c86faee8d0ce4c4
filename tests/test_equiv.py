"""`check --equiv` is sound: the issue-9 cases, the verdicts of the shipped specs, exit codes, reproducibility."""
import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mgdsl
from mgdsl.cli import main
from mgdsl.equiv import FAMILIES, RELATIONS, check_equiv, relate


def equiv(spec, target, **kw):
    params = kw.pop("params", {})
    return check_equiv(mgdsl.compile_ir(spec, **params), target, **kw)


def failed(out):
    return [p for p in out["premises"] if p["status"] != "ok"]


# ------------------------------------------------------------------ the four classes of issue 9

def test_nonlinear_xi_is_undecided_naming_xi_and_7_9():
    # the linearity counterexample of xi leaves the network's states: no verdict, the premise named
    out = equiv("tests/equiv_corpus/iresnet-xi-nonlinear.mg", "iresnet")
    assert out["verdict"] == "undecided"
    (p,) = failed(out)
    assert "ξ = xi is linear" in p["premise"] and "(7.9)" in p["premise"]
    assert p["where"] == "tests/equiv_corpus/iresnet-xi-nonlinear.mg:13"
    assert "off the network's states the premise's witness differs" in out["reason"]


def test_every_assignment_of_the_step_is_read():
    for target in ("mgnet", "mg-iresnet", "iresnet"):
        out = equiv("tests/equiv_corpus/mgnet-f-halved.mg", target)
        assert out["verdict"] == "not-equivalent", target
        assert "bug" not in out["reason"] and "f stays fixed" in failed(out)[0]["premise"]
        assert out["max_error"] > 1e-6


def test_a_linear_rewriting_of_the_residual_is_recognised():
    iresnet = equiv("tests/equiv_corpus/mgnet-scaled-A.mg", "iresnet")
    assert iresnet["verdict"] == "special-case" and iresnet["tying"]["xi[2, 1]"] == "0.5·(A[2])"
    assert equiv("tests/equiv_corpus/mgnet-scaled-A.mg", "mg-iresnet")["verdict"] == "equivalent"


def test_the_same_seed_prints_the_same_bytes():
    cmd = [sys.executable, "-m", "mgdsl", "check", "tests/equiv_corpus/mgnet-A-untied.mg", "--equiv", "mg-iresnet",
           "--seed", "5", "--trials", "2"]
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    a = subprocess.run(cmd, capture_output=True, text=True, env=env)
    b = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert a.returncode == b.returncode == 1 and "counterexample" in a.stdout
    assert a.stdout == b.stdout


def test_another_seed_gives_other_weights():
    a = equiv("tests/equiv_corpus/mgnet-A-untied.mg", "mg-iresnet", seed=1)["max_error"]
    b = equiv("tests/equiv_corpus/mgnet-A-untied.mg", "mg-iresnet", seed=2)["max_error"]
    assert a != b


# ------------------------------------------------------------------ the paths of the second paragraph

def test_lemma_8_2_backwards_rejects_a_step_whose_extractor_reads_f():
    out = equiv("tests/equiv_corpus/sigma-resnet-missing-sigma.mg", "resnet")
    assert out["verdict"] == "not-equivalent" and out["max_error"] > 1e-6
    assert "reads σ(f)" in failed(out)[0]["premise"]


@pytest.mark.parametrize("spec,target", [("specs/cnn/mg-resnet.mg", "sigma-resnet"),
                                         ("specs/cnn/mg-iresnet.mg", "iresnet")])
def test_tying_paths_are_special_cases_with_a_tying_map(spec, target):
    out = equiv(spec, target)
    assert out["verdict"] == "special-case" and out["tying"]["xi[1, 2]"] == "xi[1]"
    assert out["max_error"] <= 1e-9


@pytest.mark.parametrize("spec,target", [("specs/cnn/sigma-resnet.mg", "mg-resnet"),
                                         ("specs/cnn/iresnet.mg", "mg-iresnet")])
def test_tying_backwards_is_refuted_by_a_counterexample(spec, target):
    out = equiv(spec, target)
    assert out["verdict"] == "not-equivalent" and out["max_error"] > 1e-6
    assert "one operator per grid" in failed(out)[0]["premise"]


def test_a_resnet_with_xi_per_step_is_not_mg_resnet_after_lemma_8_2():
    """Lemma 8.2 makes the ResNet a σ-ResNet with the same ξ^{l,i}, freer than Mg-ResNet's ξ^l: the target holds
    step 1's ξ, so both networks agree through step 1 and differ from step 2 on."""
    out = equiv("tests/equiv_corpus/resnet-base.mg", "mg-resnet")
    assert out["verdict"] == "not-equivalent" and out["max_error"] > 1e-6
    assert [p["status"] for p in out["premises"]] == ["ok", "failed"]  # Lemma 8.2's premise holds
    assert "one operator per grid" in failed(out)[0]["premise"] and "Lemma 8.2" in out["relation"]
    assert (out["counterexample"]["first_difference"]["grid"], out["counterexample"]["first_difference"]["step"]) == (1, 2)
    tied = equiv("tests/equiv_corpus/resnet-xi-tied.mg", "mg-resnet")  # one ξ per grid: Lemma 8.2, then (8.6)
    assert tied["verdict"] == "equivalent" and tied["max_error"] <= 1e-9 and not tied["tying"]
    stem = equiv("tests/equiv_corpus/resnet-linear-stem.mg", "mg-resnet")  # stops at Lemma 8.2, runs only it
    assert stem["verdict"] == "not-equivalent" and "ReLU output" in failed(stem)[0]["premise"]
    assert stem["counterexample"]["first_difference"]["step"] == 0


@pytest.mark.parametrize("spec,target", [("mgnet-base.mg", "mg-iresnet"), ("resnet-base.mg", "mg-resnet")])
def test_every_trial_checks_the_transition_into_the_coarser_grid(monkeypatch, spec, target):
    """A relation hands its target's transitions to the next (Theorem 8.1: R becomes D); each trial must start
    again from the spec's, else trials after the first restart grid 2 from the spec's state unchecked."""
    from mgdsl import numerics as X
    seen, real = set(), X.Outcome.see
    monkeypatch.setattr(X.Outcome, "see", lambda self, e, **w: (seen.add((w["trial"], w["grid"], w["step"])),
                                                                real(self, e, **w))[1])
    equiv(f"tests/equiv_corpus/{spec}", target, trials=2)
    assert {(0, 2, 0), (1, 2, 0)} <= seen


@pytest.mark.parametrize("defines", [{"omega": 0.5}, {"nu": 1}, {"kr": "linear"}])
def test_theorem_6_1_against_a_target_file_fails_when_the_mg0_side_differs(defines):
    out = equiv("specs/multigrid/mgnet-linear.mg", "specs/multigrid/mg0.mg", params=defines)
    assert out["verdict"] == "not-equivalent" and out["max_error"] > 1e-6


def test_theorem_6_1_against_the_target_file_and_the_family():
    for target in ("specs/multigrid/mg0.mg", "mg0"):
        out = equiv("specs/multigrid/mgnet-linear.mg", target)
        assert out["verdict"] == "equivalent" and out["max_error"] <= 1e-9


@pytest.mark.parametrize("defines", [{"omega": 0.5}, {"nu": 1}])
def test_a_changed_mg0_spec_is_still_an_mg0(defines):
    out = equiv("specs/multigrid/mg0.mg", "mg0", params=defines)
    assert out["verdict"] == "equivalent"


def test_a_derivation_stops_at_the_first_failing_premise():
    out = equiv("specs/equiv/mgnet-A-relu.mg", "iresnet")
    assert out["verdict"] == "not-equivalent"
    assert out["derivation"][-1]["rule"] == "stopped"
    assert not any("(8.1)" in s["equation"] for s in out["derivation"])
    assert out["premises"][-1]["status"] == "failed"  # nothing listed after it


# ------------------------------------------------------------------ the shipped specs

def test_mgnet_vs_iresnet_is_a_special_case_by_theorem_8_1():
    out = equiv("specs/mgnet-official.mg", "iresnet", params={"width": 8})
    assert out["verdict"] == "special-case"
    assert out["tying"]["xi[2, 1]"] == "A[2]" and out["tying"]["xi[2, 2]"] == "A[2]"
    assert any(s["equation"] == "(8.1), Table 1" for s in out["derivation"])
    assert out["max_error"] <= 1e-9 and not failed(out)


def test_the_flagship_mgnet_is_a_special_case_of_iresnet_with_its_tying_map():
    # specs/mgnet.mg is Algorithm 3 (one A per grid in the steps and both terms of the transition)
    out = equiv("specs/mgnet.mg", "iresnet")
    assert out["verdict"] == "special-case" and out["max_error"] <= 1e-9 and not failed(out)
    assert out["tying"]["xi[1, 1]"] == out["tying"]["xi[1, 2]"] == "A[1]"
    assert "eta[3]" in out["tying"]["B[3, 2]"]  # eta[l] one per grid against the family's per-step B


@pytest.mark.parametrize("target", ["mgnet", "mg-iresnet", "iresnet"])
def test_the_table2_mgnet_with_its_untied_restriction_residual_differs_at_grid_2(target):
    # table2/mgnet-256-256-pi1 restricts f - Ar[1](u) with Ar[1] untied from the smoothing A[1] (to match
    # Table 2's count): running both networks through every grid shows grid 2 starting elsewhere
    out = equiv("specs/table2/mgnet-256-256-pi1.mg", target, params={"width": 8})
    assert out["verdict"] == "not-equivalent"
    assert "R is applied to f − Ar[1](u), not to the residual" in out["reason"]
    first = out["counterexample"].get("first_difference", out["counterexample"])
    assert (first["grid"], first["step"]) == (2, 0)


@pytest.mark.parametrize("spec,words", [
    ("specs/equiv/mgnet-A-relu.mg", "linear"), ("specs/equiv/mgnet-A-untied.mg", "one operator per grid"),
    ("specs/equiv/mgnet-B-first.mg", "residual")])
def test_broken_premises_are_not_equivalent_with_reason_and_counterexample(spec, words):
    out = equiv(spec, "mg-iresnet")
    assert out["verdict"] == "not-equivalent"
    p = failed(out)[0]
    assert words in p["premise"] and p["where"].startswith(spec)
    assert out["max_error"] > 1e-6


@pytest.mark.parametrize("spec,vs_mg_iresnet", [("specs/equiv/mgnet-A-bias.mg", "special-case"),
                                                ("specs/equiv/mgnet-A-bn.mg", "special-case"),
                                                ("tests/equiv_corpus/mgnet-A-hidden-bias.mg", "equivalent")])
def test_an_affine_A_is_theorem_8_1_with_its_linear_part(spec, vs_mg_iresnet):
    # A(u) = W u + b: r' = r − W B(r), and Algorithm 3's transition cancels b (the same A in both terms)
    out = equiv(spec, "iresnet")
    assert out["verdict"] == "special-case" and out["max_error"] <= 1e-9
    assert any("A is affine" in p["premise"] and "ξ := W" in p["premise"] for p in out["premises"])
    assert all("lin(" in v for k, v in out["tying"].items() if k.startswith("xi")), out["tying"]
    # specs/equiv share eta[l] between the steps' B[l, i]: a tying against the family's per-step B
    assert equiv(spec, "mg-iresnet")["verdict"] == vs_mg_iresnet


@settings(max_examples=3, deadline=None, derandomize=True)
@given(c=st.sampled_from([0.5, 1.5, 2.0, 0.25]), grids=st.sampled_from([2, 3]))
def test_an_affine_A_with_any_coefficient_is_theorem_8_1_with_c_times_its_linear_part(c, grids):
    text = open("tests/equiv_corpus/mgnet-A-bias.mg").read().replace("B(f - A(u))", f"B(f - {c} * A(u))") \
        .replace("R(f - A(u))", f"R(f - {c} * A(u))").replace("+ A[l+1](u[l+1])", f"+ {c} * A[l+1](u[l+1])") \
        .replace("grids 2", f"grids {grids}")
    out = check_equiv(mgdsl.compile_ir("x.mg", text=text), "mg-iresnet", trials=1)
    assert out["verdict"] == "equivalent" and out["max_error"] <= 1e-9, out["reason"]
    assert out["tying"]["xi[1]"] == f"{c:g}·(lin(A[1]))"


def test_an_affine_xi_in_iresnet_adds_its_offset_every_step():
    # f − ξ(B(f)) with ξ = W + b: not an iResNet's linear ξ (undecided in its own family), and against MgNet
    # (Theorem 8.1 backwards, A := ξ) the offset b does not cancel: a difference on the network's states
    spec = "tests/equiv_corpus/mg-iresnet-xi-hidden-bias.mg"
    assert equiv(spec, "mg-iresnet")["verdict"] == "undecided"
    out = equiv(spec, "mgnet")
    assert out["verdict"] == "not-equivalent" and out["max_error"] > 1e-6


def test_an_affine_A_whose_offset_does_not_cancel_in_the_transition_is_not_equivalent():
    # u[l+1] = 0 and no A^{l+1}(u[l+1]) term: grid 2 starts from R(r) − b, not R(r)
    text = open("specs/equiv/mgnet-A-bias.mg").read().replace(
        "u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])", "u[l+1] = 0; f[l+1] = R(f - A(u))")
    out = check_equiv(mgdsl.compile_ir("x.mg", text=text), "mg-iresnet")
    assert out["verdict"] == "not-equivalent" and "offset" in out["reason"]
    first = out["counterexample"].get("first_difference", out["counterexample"])
    assert (first["grid"], first["step"]) == (2, 0)


def test_a_premise_that_fails_only_off_the_networks_states_is_no_counterexample():
    # A = conv . relu reads relu(u); every reachable u is >= 0, so on the network's states A is linear
    spec = "tests/equiv_corpus/mgnet-A-relu-of-u.mg"
    out = equiv(spec, "iresnet")
    assert out["verdict"] == "special-case" and out["max_error"] <= 1e-9
    assert any("≥ 0 on every state the network reaches" in p["premise"] for p in out["premises"])
    # Π without a ReLU lets u go negative: no such premise, and A(relu(u)) ≠ A(u) there
    text = open(spec).read().replace("Pi[l]   = relu . bn . conv3(u -> u, stride 2)", "Pi[l]   = bn . conv3(u -> u, stride 2)")
    bad = check_equiv(mgdsl.compile_ir(spec, text=text), "mg-iresnet")
    assert bad["verdict"] in ("not-equivalent", "undecided")
    assert not any("≥ 0" in p["premise"] for p in bad["premises"])


TIED_XI = [("tests/equiv_corpus/resnet-base.mg", "xi[l, i]  = bn . conv3(f -> f)", "xi[l]  = bn . conv3(f -> f)",
            "resnet"),
           ("tests/equiv_corpus/iresnet-base.mg", "xi[l, i]  = conv3(f -> f)", "xi[l]  = conv3(f -> f)", "iresnet"),
           ("tests/equiv_corpus/mgnet-base.mg", "A[l]    = conv3(u -> f)", "A    = conv3(u -> f)", "mgnet"),
           ("tests/equiv_corpus/classic-cnn-base.mg", "chi[l, i] = bn . conv3(f -> f)", "chi[l] = bn . conv3(f -> f)",
            "mg-resnet")]
NO_INDEX = ("A[l+1](u[l+1])", "A(u[l+1])")


@pytest.mark.parametrize("spec,free,tied,target", TIED_XI)
def test_a_spec_that_ties_what_the_target_leaves_free_is_a_special_case(spec, free, tied, target):
    text = open(spec).read()
    assert free in text
    untied = check_equiv(mgdsl.compile_ir(spec, text=text), target)
    # the same freedom on both sides; a classic CNN is already a special case of Mg-ResNet (ξ := δ̂, Remark 8.4)
    assert untied["verdict"] == ("special-case" if target == "mg-resnet" else "equivalent")
    tied_text = text.replace(free, tied)
    if "[" not in tied.split("=")[0]:  # one for the whole model: the transition names it without an index
        tied_text = tied_text.replace(*NO_INDEX)
    out = check_equiv(mgdsl.compile_ir(spec, text=tied_text), target)
    assert out["verdict"] == "special-case" and out["max_error"] <= 1e-9
    name = tied.split("=")[0].strip().split("[")[0]
    held = {k: v for k, v in out["tying"].items() if name in v}
    assert len(held) >= 2 and len(set(held.values())) < len(held), out["tying"]


@pytest.mark.parametrize("spec,target", [("tests/equiv_corpus/iresnet-base.mg", "mg-iresnet"),
                                         ("tests/equiv_corpus/mgnet-A-untied.mg", "mgnet")])
def test_a_spec_freer_than_the_target_is_not_the_target(spec, target):
    out = equiv(spec, target)
    assert out["verdict"] == "not-equivalent" and out["max_error"] > 1e-6


def test_resnet_vs_sigma_resnet_by_lemma_8_2_and_its_premise():
    out = equiv("specs/cnn/resnet.mg", "sigma-resnet")
    assert out["verdict"] == "equivalent" and out["max_error"] <= 1e-9
    bad = equiv("specs/equiv/resnet-linear-stem.mg", "sigma-resnet")
    assert bad["verdict"] == "not-equivalent" and bad["max_error"] > 1e-6
    assert "ReLU output" in failed(bad)[0]["premise"] and failed(bad)[0]["where"] == "specs/equiv/resnet-linear-stem.mg:10"


def test_classic_cnn_vs_mg_resnet_and_the_rewrite(tmp_path):
    out = equiv("specs/cnn/classic-cnn.mg", "mg-resnet")
    assert out["verdict"] == "special-case" and out["max_error"] <= 1e-9
    assert out["tying"]["xi[1]"] == "δ̂"
    dst = tmp_path / "mgres.mg"
    assert main(["rewrite", "specs/cnn/classic-cnn.mg", "--to", "mg-resnet", "-o", str(dst), "-D", "width=8"]) == 0
    # the written file has the Mg-ResNet form and is compared as a model (mgdsl/models.py): read with its
    # own parameters (width 64, `-D` applies to SPEC only) it is the source model; at width 8 it is not
    back = check_equiv(mgdsl.compile_ir("specs/cnn/classic-cnn.mg"), str(dst))
    assert back["verdict"] == "equivalent" and back["target_family"] == "mg-resnet"
    other = check_equiv(mgdsl.compile_ir("specs/cnn/classic-cnn.mg", width=8), str(dst))
    assert other["verdict"] == "not-equivalent" and other["counterexample"]["grid"] == 1


def test_no_relation_is_undecided_not_a_guess():
    out = equiv("specs/mgnet.mg", "resnet", params={"width": 8})
    assert out["verdict"] == "undecided" and "no relation" in out["reason"]
    out = equiv("specs/variants/mgnet-multistep.mg", "mgnet", params={"width": 8})
    assert out["verdict"] == "undecided" and "sum over earlier iterates" in out["reason"]


def test_every_edge_names_a_numeric_path_and_every_pair_a_verdict():
    from mgdsl import numerics
    for e in RELATIONS:
        assert e.numerics == "same" or hasattr(numerics.Run, e.numerics) or e.numerics == "thm61"
    for a in FAMILIES:
        for b in FAMILIES:
            path = relate(a, b)
            assert path is None or (path == [] if a == b else path[0].src == a and path[-1].dst == b)


def test_cli_json_and_exit_codes(capsys):
    assert main(["check", "specs/mgnet-official.mg", "--equiv", "iresnet", "--json", "-D", "width=8"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"verdict", "reason", "relation", "tying", "derivation", "premises", "max_error"} <= set(out)
    assert main(["check", "specs/equiv/mgnet-A-relu.mg", "--equiv", "mg-iresnet"]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert main(["check", "specs/mgnet.mg", "--equiv", "resnet", "-D", "width=8"]) == 3
    assert "undecided" in capsys.readouterr().out
    assert main(["check", "specs/mgnet.mg", "--equiv", "iresnt"]) == 2
    assert "did you mean 'iresnet'" in capsys.readouterr().err
    assert main(["check", "specs/mgnet.mg", "--equiv", "no/such/file.mg"]) == 2


def test_the_normal_form_modules_do_not_import_torch():
    code = "import sys, mgdsl.forms, mgdsl.normal; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=os.getcwd())).returncode == 0


def test_theorem_8_1_hypothesis_is_checked_after_definitions_too():
    """MG0 is an MgNet by definition, but its B = S (Jacobi) is not σ∘η∘σ: no Mg-iResNet claimed."""
    out = equiv("specs/multigrid/mg0.mg", "mg-iresnet")
    assert out["verdict"] == "undecided" and "σ∘η∘σ" in out["reason"]


def test_no_trials_is_a_usage_error_not_an_unconfirmed_equivalent(capsys):
    assert main(["check", "specs/cnn/mg-iresnet.mg", "--equiv", "iresnet", "--trials", "0"]) == 2
    assert "at least one trial" in capsys.readouterr().err
    assert main(["check", "specs/cnn/mg-iresnet.mg", "--equiv", "iresnet", "--seed", str(2**70)]) == 2


def test_a_target_file_is_not_called_equivalent_from_its_form_alone(tmp_path):
    # two MgNets that share the form but not the operators (one A for all grids, pooling transfers, other
    # steps): the numerics ran only the canonical form, so "equivalent" would be a claim about nothing
    other = tmp_path / "other.mg"
    other.write_text(open("tests/equiv_corpus/mgnet-base.mg").read().replace("  param nu = 2", "  param nu = 1"))
    out = equiv("tests/equiv_corpus/mgnet-base.mg", str(other))  # compared as models (mgdsl/models.py)
    assert out["verdict"] == "not-equivalent" and out["target_family"] == "mgnet"
    assert (out["counterexample"]["grid"], out["counterexample"]["step"]) == (2, 0)  # after grid 1's extra step
    assert equiv("tests/equiv_corpus/mgnet-base.mg", "mgnet")["verdict"] == "equivalent"  # the form itself


def test_a_target_file_on_other_inputs_is_not_equivalent(tmp_path):
    other = tmp_path / "small.mg"
    text = open("tests/equiv_corpus/mgnet-base.mg").read()
    shape = next(l for l in text.splitlines() if l.strip().startswith("input"))
    other.write_text(text.replace(shape, "  input x : 3 x 8 x 8"))
    out = equiv("tests/equiv_corpus/mgnet-base.mg", str(other))
    assert out["verdict"] == "not-equivalent" and "not functions of the same thing" in out["reason"]
    assert out["counterexample"]["target"]["input"] == [3, 8, 8]


def test_the_printed_normal_form_names_the_operators_the_spec_applied():
    # B[l, i] = relu . bn . eta[l] . relu . bn used to print as B[1, 1](eta[1](B[1, 1](...))), B applied twice
    out = equiv("specs/mgnet.mg", "mgnet", params={"width": 8})
    assert out["derivation"][0]["term"].startswith("u = u + B[1, 1](f − A[1](u))  (grid 1, step 1)")


def test_a_bundled_spec_name_is_a_target_file():
    out = equiv("tests/equiv_corpus/mgnet-base.mg", "table2/mgnet-256-256-pi0")
    assert out["target_family"] == "mgnet" and out["verdict"] in ("undecided", "not-equivalent")
    assert "mgnet-256-256-pi0.mg" in out["reason"]


def test_relations_that_return_no_trajectory_end_every_chain():
    # terminal relations only compare (they hand nothing on): no chain of relate() may continue past one
    for a in FAMILIES:
        for b in FAMILIES:
            for k, e in enumerate(relate(a, b) or []):
                assert not e.terminal or k == len(relate(a, b)) - 1, (a, b, e.rule)


# (src, dst) -> a spec the relation holds for, and (spec, target) a spec it must reject with a counterexample
WALK = {
    ("mgnet", "mg-iresnet"): ("mgnet-base.mg", ("mgnet-A-untied.mg", "mg-iresnet")),
    ("mg-iresnet", "mgnet"): ("mg-iresnet-base.mg", ("mg-iresnet-xi-hidden-bias.mg", "mgnet")),
    ("mg-iresnet", "iresnet"): ("mg-iresnet-base.mg", ("iresnet-base.mg", "mg-iresnet")),
    ("mg-resnet", "sigma-resnet"): ("mg-resnet-base.mg", ("sigma-resnet-base.mg", "mg-resnet")),
    ("resnet", "sigma-resnet"): ("resnet-base.mg", ("resnet-linear-stem.mg", "sigma-resnet")),
    ("sigma-resnet", "resnet"): ("sigma-resnet-base.mg", ("sigma-resnet-missing-sigma.mg", "resnet")),
    # a σ-ResNet with one ξ per grid reads as Mg-ResNet itself: the definition is met after Lemma 8.2
    ("sigma-resnet", "mg-resnet"): ("resnet-xi-tied.mg", ("sigma-resnet-base.mg", "mg-resnet")),
    ("classic-cnn", "mg-resnet"): ("classic-cnn-base.mg", None),  # rejected with forced roles: test_equiv_paths
    ("linear-mgnet", "mg0"): ("linear-mgnet-base.mg", ("linear-mgnet-R-no-residual.mg", "mg0")),
    ("mg0", "linear-mgnet"): ("mg0-base.mg", ("lmg-noAup.mg", "linear-mgnet")),
    ("linear-mgnet", "mgnet"): ("linear-mgnet-base.mg", ("mgnet-f-halved.mg", "mgnet")),
}


@pytest.mark.parametrize("rel", RELATIONS, ids=lambda r: f"{r.src}->{r.dst}")
def test_every_relation_record_is_complete_holds_and_rejects(rel):
    """Walks the table of relations as test_prims walks PRIMS: a new relation is one record plus one row here."""
    assert rel.derivation and rel.rule and rel.kind in ("equivalent", "special-case")
    assert rel.ties == (rel.kind == "special-case") and (not rel.ties or rel.tying)
    good, bad = WALK[(rel.src, rel.dst)]
    out = equiv(f"tests/equiv_corpus/{good}", rel.dst, trials=1)
    chain = relate(out["source_family"], rel.dst)  # the relation itself, or a chain that ends in it
    assert chain and chain[-1] is rel and out["verdict"] in ("equivalent", "special-case"), out["reason"]
    assert out["verdict"] == "special-case" or not rel.ties
    k = 1 + sum(len(e.derivation) for e in chain[:-1])
    assert [s["rule"] for s in out["derivation"][k:k + len(rel.derivation)]] == [s.rule for s in rel.derivation]
    if bad is not None:
        spec, target = bad
        out = equiv(f"tests/equiv_corpus/{spec}", target, trials=1)
        assert out["verdict"] == "not-equivalent" and out["max_error"] > 1e-6, out["reason"]


def test_a_spec_file_is_equivalent_to_itself_but_not_with_other_values(tmp_path):
    copy = tmp_path / "same.mg"
    copy.write_text(open("tests/equiv_corpus/mgnet-base.mg").read())
    same = equiv("tests/equiv_corpus/mgnet-base.mg", str(copy))
    assert same["verdict"] == "equivalent" and "the same spec" in same["reason"]
    other = equiv("tests/equiv_corpus/mgnet-base.mg", str(copy), params={"nu": 1})  # -D applies to SPEC only
    assert other["verdict"] != "equivalent"


TYINGS = [  # spec (tests/equiv_corpus), smooth, target: the whole tying map the user reads
    ("mgnet-base.mg", "nu", "mg-iresnet", {"xi[1]": "A[1]", "xi[2]": "A[2]"}),
    ("mgnet-base.mg", "1", "mg-iresnet", {"xi[1]": "A[1]", "xi[2]": "A[2]"}),
    ("mgnet-base.mg", "1", "iresnet", {"xi[1, 1]": "A[1]", "xi[2, 1]": "A[2]"}),
    ("mgnet-A-sum.mg", "nu", "iresnet", {"xi[1, 1]": "A[1] + E[1]", "xi[1, 2]": "A[1] + E[1]",
                                         "xi[2, 1]": "A[2] + E[2]", "xi[2, 2]": "A[2] + E[2]"}),
    ("mgnet-scaled-A.mg", "nu", "mg-iresnet", {"xi[1]": "0.5·(A[1])", "xi[2]": "0.5·(A[2])"}),
    ("classic-cnn-base.mg", "nu", "mg-resnet",
     {**{f"T[{g}, {i}]": f"relu ∘ [id, −id] ∘ (chi[{g}, {i}] − id)" for g in (1, 2) for i in (1, 2)},
      "xi[1]": "δ̂", "xi[2]": "δ̂"}),
]


@pytest.mark.parametrize("spec,smooth,target,tying", TYINGS, ids=[f"{c[0]}-{c[1]}->{c[2]}" for c in TYINGS])
def test_the_tying_map_names_each_target_instance_and_the_spec_operator_it_holds(spec, smooth, target, tying):
    # one entry per instance of the target family's own sharing (xi[l] tied per grid in mg-iresnet, xi[l, i] per
    # step in iresnet), also where the family's instance was dropped (nu = 1: A only ever applied to u = 0)
    path = f"tests/equiv_corpus/{spec}"
    text = open(path).read().replace("smooth nu", f"smooth {smooth}")
    out = check_equiv(mgdsl.compile_ir(path, text=text), target)
    assert out["verdict"] in ("equivalent", "special-case") and out["tying"] == tying


@pytest.mark.parametrize("omega,verdict", [("0.4", "equivalent"), ("0.8", "not-equivalent")])
def test_a_target_file_with_a_scaled_term_is_run_with_its_scale(tmp_path, omega, verdict):
    # MG0 written u + 2·S(f − A u) with S = jacobi(ω = 0.4) is the spec's ω = 0.8 smoother; with ω = 0.8 it
    # takes steps twice as long. A target evaluator that dropped or misread the factor 2 gets both wrong.
    target = tmp_path / "mg0.mg"
    target.write_text(open("specs/multigrid/mg0.mg").read()
                      .replace("param omega = 0.8", f"param omega = {omega}")
                      .replace("step    u = u + S(f - A(u))", "step    u = u + 2 * S(f - A(u))"))
    assert "2 * S(f - A(u))" in target.read_text()
    out = check_equiv(mgdsl.compile_ir("specs/multigrid/mgnet-linear.mg"), str(target))
    assert out["verdict"] == verdict


def test_premise_lines_show_the_spec_as_the_user_named_it(tmp_path, monkeypatch, capsys):
    """From another folder a bundled spec is found by name: its lines say `equiv/mgnet-A-bias`, not the path
    it is installed at."""
    monkeypatch.chdir(tmp_path)
    assert main(["check", "equiv/mgnet-A-bias", "--equiv", "iresnet", "--trials", "1"]) == 0  # special-case: b cancels (issue 19)
    out = capsys.readouterr().out
    installed = mgdsl.compile_spec("equiv/mgnet-A-bias").path
    premises = [line for line in out.splitlines() if line.startswith("  premise ")]
    assert premises and installed not in out
    assert out.startswith("equiv/mgnet-A-bias (mgnet) vs iresnet")
    assert "(equiv/mgnet-A-bias)" in premises[0] and any("(equiv/mgnet-A-bias:" in p for p in premises)


def test_a_bundled_spec_without_a_slash_is_a_target_and_a_family_name_stays_the_family(capsys):
    """`--equiv mgnet-official` (a bundled spec, top level) was 'unknown equivalence target' (a new-user report)."""
    assert main(["check", "specs/mgnet.mg", "-D", "width=8", "--equiv", "mgnet-official", "--json"]) in (0, 1, 3)
    out = json.loads(capsys.readouterr().out)
    assert "unknown" not in out.get("reason", "") and out["target"].endswith("mgnet-official.mg")
    assert main(["check", "specs/mgnet.mg", "--equiv", "mgnett"]) == 2
    assert "did you mean 'mgnet'" in capsys.readouterr().err
