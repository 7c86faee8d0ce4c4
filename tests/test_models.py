"""Spec against spec (`mgdsl check A.mg --equiv B.mg`, mgdsl/models.py and match.py): two specs compared as
models, up to renaming of states, operators and params and the order of definitions."""
import glob
import random
import re
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mgdsl
from mgdsl import match as M
from mgdsl import models
from mgdsl.cli import main
from mgdsl.equiv import check_equiv
from mgdsl.fmt import fmt
from mgdsl.library import spec_path
from mgdsl.prims import PRIMS
from mgdsl.syntax import parse

KEYWORDS = {"model", "param", "input", "classes", "grids", "smooth", "post", "space", "init", "step", "coarsen",
            "refine", "output", "cycle", "poststep"}
OPTION_KEYS = {o.key for p in PRIMS.values() for o in p.options} | \
    {v for p in PRIMS.values() for o in p.options if o.bare for v in o.values}
DEF = re.compile(r"^\s*([A-Za-z_]\w*)\s*(\[[^\]]*\])?\s*=", re.M)


def names(text: str) -> tuple[list, list, list]:
    """(states, operators, params) a spec defines."""
    code = "\n".join(line.split("#")[0] for line in text.splitlines())
    space = re.findall(r"^\s*space\s+(.*)$", code, re.M)
    states = sorted({s for line in space for s in re.findall(r"(\w+)\s*=", line)})
    ops = sorted({m.group(1) for m in DEF.finditer(code)} - KEYWORDS - set(states))
    params = sorted(set(re.findall(r"^\s*param\s+(\w+)", code, re.M)) - OPTION_KEYS)
    return states, ops, params


def rename(text: str, prefix: str = "Zq") -> tuple[str, dict]:
    """Every state, operator and param renamed (comments kept as they are); the map old -> new."""
    states, ops, params = names(text)
    new = {n: f"{prefix}{k}{n.lower()}" for k, n in enumerate(states + ops + params)}
    pat = re.compile(r"\b(" + "|".join(map(re.escape, sorted(new, key=len, reverse=True))) + r")\b")
    out = []
    for line in text.splitlines():
        code, hash_, comment = line.partition("#")
        out.append(pat.sub(lambda m: new[m.group(1)], code) + hash_ + comment)
    return "\n".join(out) + "\n", new


def reorder(text: str, seed: int) -> str:
    """The operator definitions of the spec in another order."""
    lines = text.splitlines()
    idx = [k for k, line in enumerate(lines)
           if DEF.match(line) and DEF.match(line).group(1) not in KEYWORDS and not line.lstrip().startswith("param")]
    defs = [lines[k] for k in idx]
    random.Random(seed).shuffle(defs)
    for k, d in zip(idx, defs):
        lines[k] = d
    return "\n".join(lines) + "\n"


def cancel(text: str) -> str:
    """The step's A(u) written A(u) + A(u) − A(u)."""
    return _in_step(text, "A(u)", "(A(u) + A(u) - A(u))")


def compose(text: str) -> str:
    """The step's A(u), A linear, written 2·A(0.5·u)."""
    return _in_step(text, "A(u)", "2 * A(0.5 * u)")


def _in_step(text: str, old: str, new: str) -> str:
    lines = text.splitlines()
    k = next(k for k, line in enumerate(lines) if line.lstrip().startswith("step") and old in line)
    lines[k] = lines[k].replace(old, new, 1)
    return "\n".join(lines) + "\n"


def compare(a: str, b: str, trials: int = 1) -> dict:
    return models.compare(mgdsl.compile_ir("a.mg", text=a), mgdsl.compile_ir("b.mg", text=b), trials, 0)


MGNET = open("specs/mgnet.mg").read().replace("param width = 256", "param width = 4")
MG0 = open("specs/multigrid/mg0.mg").read().replace("param n = 33", "param n = 9")
PAIRS = {  # spec, target, verdict, where (grid, step, phase) the runs first differ
    "same": (MGNET, MGNET.replace("# Reading", "# reading"), "equivalent", None),
    "nu": (MGNET, MGNET.replace("param nu = 2", "param nu = 3"), "not-equivalent", (2, 0, "down")),
    "relu": (MGNET, MGNET.replace("R[l]    = relu . bn .", "R[l]    = bn ."), "not-equivalent", (2, 0, "down")),
    "untied": (MGNET, MGNET.replace("eta[l]  =", "eta[l, i] =").replace(". eta[l] .", ". eta[l, i] ."),
               "special-case", None),
    "tied": (MGNET.replace("eta[l]  =", "eta[l, i] =").replace(". eta[l] .", ". eta[l, i] ."), MGNET,
             "not-equivalent", (1, 2, "down")),
    "mg0": (MG0, MG0.replace("# Algorithm 1", "# algorithm 1"), "equivalent", None),
    "mg0-omega": (MG0, MG0.replace("param omega = 0.8", "param omega = 0.5"), "not-equivalent", (1, 1, "down")),
}


def _where(out: dict):
    w = out["counterexample"]
    return None if not w or "grid" not in w else (w["grid"], w["step"], w["phase"])


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_the_verdict_and_where_the_runs_first_differ(pair):
    spec, target, verdict, where = PAIRS[pair]
    out = compare(spec, target)
    assert out["verdict"] == verdict, out["reason"]
    assert _where(out) == where, out["counterexample"]
    if verdict == "special-case":  # the spec's eta[l] stands for the target's eta[l, 1], eta[l, 2]
        assert out["tying"] == {f"eta[{g}, {i}]": f"eta[{g}]" for g in range(1, 5) for i in (1, 2)}
    if verdict == "equivalent":
        same_text = "is the same spec" in (out["reason"] or "")  # identical text: no renaming to report
        assert out["renaming"]["states"] == ({} if same_text else {"f": "f", "u": "u"})


@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(pair=st.sampled_from(sorted(PAIRS)), side=st.sampled_from(["spec", "target"]),
       do=st.sets(st.sampled_from(["rename", "reorder", "cancel", "compose"]), min_size=1),
       seed=st.integers(0, 10**6))
def test_renaming_reordering_cancelling_and_equal_compositions_never_change_a_verdict(pair, side, do, seed):
    spec, target, verdict, where = PAIRS[pair]
    text = spec if side == "spec" else target
    for step, f in (("cancel", cancel), ("compose", compose), ("reorder", lambda t: reorder(t, seed))):
        text = f(text) if step in do else text
    mapping = {}
    if "rename" in do:
        text, mapping = rename(text, random.Random(seed).choice(["Zq", "op_", "W"]))
    out = compare(text, target) if side == "spec" else compare(spec, text)
    assert out["verdict"] == verdict, (do, out["reason"])
    assert _where(out) == where, (do, out["counterexample"])
    if verdict == "equivalent" and side == "target":
        assert out["renaming"]["states"] == {s: mapping.get(s, s) for s in ("f", "u")}
        assert all(t.split("[")[0] == mapping.get(s.split("[")[0], s.split("[")[0])
                   for t, s in out["renaming"]["operators"].items())


def test_the_transformations_change_the_text_and_the_ir():
    renamed, mapping = rename(MGNET)
    code = "\n".join(line.split("#")[0] for line in renamed.splitlines())  # the spec's comments quote A(u)
    assert "A(u)" not in code and mapping["u"] in renamed and mapping["width"] in renamed
    assert reorder(MGNET, 1) != MGNET and cancel(MGNET) != MGNET and compose(MGNET) != MGNET
    a, b = mgdsl.compile_ir("a.mg", text=MGNET), mgdsl.compile_ir("b.mg", text=compose(cancel(MGNET)))
    assert len(b.nodes) > len(a.nodes)  # the cancelled terms are in the unrolled graph, not in the normal form
    assert M.network(a).g.number_of_nodes() == M.network(b).g.number_of_nodes()


def _shipped() -> list[str]:
    out = subprocess.run([sys.executable, "-m", "mgdsl", "list", "--names"], capture_output=True, text=True)
    return out.stdout.split() + sorted(glob.glob("mgdsl/families/*.mg"))


SMALL = {"width": 4, "fwidth": 4, "n": 9}


@pytest.mark.parametrize("name", _shipped())
def test_every_shipped_spec_is_equivalent_to_its_fmt_output_and_a_renamed_copy(name):
    path = spec_path(name)
    text = open(path).read()
    formatted = fmt(parse(text, path))
    renamed, mapping = rename(text)
    params = {k: v for k, v in SMALL.items() if re.search(rf"^\s*param\s+{k}\b", text, re.M)}
    a = mgdsl.compile_ir(path, text=text, **params)
    for other, pmap in ((formatted, {}), (renamed, mapping)):
        b = mgdsl.compile_ir("copy.mg", text=other, **{pmap.get(k, k): v for k, v in params.items()})
        m = M.match(M.network(a), M.network(b))
        assert m.kind == "tied", name
        assert m.states == {s: pmap.get(s, s) for s in m.states} and m.states
        assert all(t.split("[")[0] == pmap.get(s.split("[")[0], s.split("[")[0]) and t[len(t.split("[")[0]):] ==
                   s[len(s.split("[")[0]):] for t, s in m.operators.items())
    if a.total_params < 200_000 and a.input_ty.shape[-1] <= 64:  # and run (the renamed copy: another text)
        out = models.compare(a, b, 1, 0)
        assert out["verdict"] == "equivalent" and out["max_error"] <= 1e-9, (name, out["reason"])


def test_rewrite_output_is_the_source_model(tmp_path):
    # Theorem 8.3's construction keeps chi's weights (eta = [id, -id] . sub_id(chi), xi = delta): the same model,
    # by the identities sub_id(chi)(x) = chi(x) - x and delta(relu([y, -y])) = -y
    out_path = tmp_path / "rw.mg"
    assert main(["rewrite", "specs/cnn/classic-cnn.mg", "-D", "width=4", "--to", "mg-resnet", "-o", str(out_path)]) == 0
    src = mgdsl.compile_ir("specs/cnn/classic-cnn.mg", width=4)
    rw = mgdsl.compile_ir(str(out_path), width=4)
    for a, b in ((src, rw), (rw, src)):
        out = models.compare(a, b, 1, 0)
        assert out["verdict"] == "equivalent", out["reason"]
        assert any("δ̂" in s["term"] for s in out["derivation"])
        assert all(s == t for t, s in out["renaming"]["operators"].items())
    flipped = out_path.read_text().replace("relu(f) - xi_mg", "relu(f) + xi_mg")
    out = models.compare(src, mgdsl.compile_ir("flip.mg", text=flipped, width=4), 1, 0)
    assert out["verdict"] == "not-equivalent" and _where(out) == (1, 1, "down")


def test_cli_exit_codes_and_the_same_bytes_on_rerun(tmp_path, capsys):
    spec, other = tmp_path / "a.mg", tmp_path / "b.mg"
    spec.write_text(MGNET)
    other.write_text(rename(reorder(MGNET, 3))[0])
    assert main(["check", str(spec), "--equiv", str(other)]) == 0
    first = capsys.readouterr().out
    assert main(["check", str(spec), "--equiv", str(other)]) == 0
    assert capsys.readouterr().out == first and "renaming of states" in first and "u → Zq" in first
    other.write_text(PAIRS["nu"][1])
    assert main(["check", str(spec), "--equiv", str(other)]) == 1
    assert "first differ at grid 2, step 0, state u" in capsys.readouterr().out
    other.write_text(PAIRS["untied"][1])
    assert main(["check", str(spec), "--equiv", str(other)]) == 0
    assert "tying: eta[1, 1] := eta[1]" in capsys.readouterr().out


@pytest.mark.parametrize("old,new", [("A[l]    = conv3(u -> f)", "A[l]    = conv3(u -> q)"),
                                     ("conv3(u -> u, stride 2)", "conv3(u -> u)")])  # a changed stride
def test_a_bad_target_file_is_a_located_error(tmp_path, capsys, old, new):
    bad = tmp_path / "bad.mg"
    bad.write_text(MGNET.replace(old, new))
    assert main(["check", "specs/mgnet.mg", "--equiv", str(bad)]) == 2
    err = capsys.readouterr().err
    assert re.search(rf"{re.escape(str(bad))}:\d+:\d+: error:", err) and "Traceback" not in err


def test_check_equiv_hands_two_specs_to_the_model_comparison(tmp_path):
    other = tmp_path / "renamed.mg"
    other.write_text(rename(MGNET)[0])
    ir = mgdsl.compile_ir("specs/mgnet.mg", width=4)
    out = check_equiv(ir, str(other))
    assert out["verdict"] == "equivalent" and out["renaming"]["states"] == {"f": "Zq0f", "u": "Zq1u"}
