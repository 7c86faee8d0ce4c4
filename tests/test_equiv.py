"""The theorem checks decide each case of issue 4 correctly, symbolically and numerically."""
import json

import pytest

import mgdsl
from mgdsl.cli import main
from mgdsl.equiv import FAMILIES, check_equiv, classify, relate


def equiv(spec, target, **kw):
    return check_equiv(mgdsl.compile_ir(spec), target, **kw)


def test_mgnet_vs_iresnet_is_a_special_case_by_theorem_8_1():
    out = equiv("specs/mgnet.mg", "iresnet")
    assert out["verdict"] == "special-case"
    assert out["tying"]["xi[2, 1]"] == "A[2]" and out["tying"]["xi[2, 2]"] == "A[2]"
    rules = [s["rule"] for s in out["derivation"]]
    assert any("linearity" in r for r in rules) and any("r = f − ξu" in r for r in rules)
    assert any(s["equation"] == "(8.1), Table 1" for s in out["derivation"])
    assert out["max_error"] <= 1e-9 and all(p["status"] == "ok" for p in out["premises"])


def test_mgnet_vs_mg_iresnet_is_equivalent():
    out = equiv("specs/mgnet.mg", "mg-iresnet")
    assert out["verdict"] == "equivalent" and out["max_error"] <= 1e-9


@pytest.mark.parametrize("spec,words", [
    ("specs/equiv/mgnet-A-bias.mg", "linear"),
    ("specs/equiv/mgnet-A-bn.mg", "linear"),
    ("specs/equiv/mgnet-A-relu.mg", "linear"),
    ("specs/equiv/mgnet-A-untied.mg", "one operator per grid"),
])
def test_broken_premises_are_not_equivalent_with_reason_and_counterexample(spec, words):
    out = equiv(spec, "mg-iresnet")
    assert out["verdict"] == "not-equivalent"
    failed = [p for p in out["premises"] if p["status"] == "failed"]
    assert failed and words in failed[0]["premise"] and failed[0]["where"].startswith(spec + ":")
    assert out["max_error"] > 1e-6 and out["counterexample"]["grid"] >= 1


def test_b_before_the_residual_is_not_equivalent():
    out = equiv("specs/equiv/mgnet-B-first.mg", "mg-iresnet")
    assert out["verdict"] == "not-equivalent" and out["source_family"] == "unknown"
    assert out["max_error"] > 1e-6


def test_resnet_vs_sigma_resnet_by_lemma_8_2_and_its_premise():
    out = equiv("specs/cnn/resnet.mg", "sigma-resnet")
    assert out["verdict"] == "equivalent" and out["max_error"] <= 1e-9
    assert any("ReLU output" in p["premise"] and p["status"] == "ok" for p in out["premises"])
    assert equiv("specs/table2/resnet18.mg", "sigma-resnet")["verdict"] == "equivalent"
    bad = equiv("specs/equiv/resnet-linear-stem.mg", "sigma-resnet")
    assert bad["verdict"] == "not-equivalent" and bad["max_error"] > 1e-6
    assert any(p["status"] == "failed" and "ReLU output" in p["premise"] for p in bad["premises"])


def test_classic_cnn_vs_mg_resnet_and_the_rewrite(tmp_path):
    out = equiv("specs/cnn/classic-cnn.mg", "mg-resnet")
    assert out["verdict"] == "equivalent" and out["max_error"] <= 1e-9
    assert out["tying"]["xi[l]"] == "delta"
    dst = tmp_path / "mgres.mg"
    assert main(["rewrite", "specs/cnn/classic-cnn.mg", "--to", "mg-resnet", "-o", str(dst), "-D", "width=8"]) == 0
    ir = mgdsl.compile_ir(str(dst), width=8)
    assert classify(ir).family == "mg-resnet"
    back = check_equiv(mgdsl.compile_ir("specs/cnn/classic-cnn.mg", width=8), str(dst))
    assert back["verdict"] == "equivalent" and back["max_error"] <= 1e-9


@pytest.mark.parametrize("target", ["mg0", "specs/multigrid/mg0.mg"])
def test_linear_mgnet_vs_mg0_by_theorem_6_1(target):
    out = equiv("specs/multigrid/mgnet-linear.mg", target)
    assert out["verdict"] == "equivalent" and out["max_error"] <= 1e-12


CHAIN = [("resnet", "sigma-resnet", "equivalent"), ("sigma-resnet", "mg-resnet", "not-equivalent"),
         ("mg-resnet", "sigma-resnet", "special-case"), ("mg-resnet", "mg-iresnet", "not-equivalent"),
         ("mg-iresnet", "iresnet", "special-case"), ("mgnet", "mg-iresnet", "equivalent"),
         ("mgnet", "iresnet", "special-case"), ("classic-cnn", "sigma-resnet", "special-case"),
         ("mgnet", "resnet", "not-equivalent"), ("linear-mgnet", "iresnet", "special-case")]


@pytest.mark.parametrize("src,tgt,verdict", CHAIN)
def test_chain_8_7_relations_and_compositions(src, tgt, verdict):
    assert relate(src, tgt)[0] == verdict


def test_every_pair_of_families_gets_a_verdict():
    for a in FAMILIES:
        for b in FAMILIES:
            assert relate(a, b)[0] in ("equivalent", "special-case", "not-equivalent")


def test_cli_json_and_exit_codes(capsys):
    assert main(["check", "specs/mgnet.mg", "--equiv", "iresnet", "--json", "-D", "width=8"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"verdict", "relation", "tying", "derivation", "premises", "max_error"} <= set(out)
    assert main(["check", "specs/equiv/mgnet-A-bias.mg", "--equiv", "mg-iresnet"]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert main(["check", "specs/mgnet.mg", "--equiv", "iresnt"]) == 2
    assert "did you mean 'iresnet'" in capsys.readouterr().err
