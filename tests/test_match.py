"""mgdsl/match.py: two IRs matched as models by their normal-form DAGs (no torch)."""
import re
import subprocess
import sys

import mgdsl
from mgdsl import match as M

MGNET = open("specs/mgnet.mg").read().replace("param width = 256", "param width = 4")
A_SUM = open("tests/equiv_corpus/mgnet-A-sum.mg").read().replace("E[l]    = conv1(u -> f)", "E[l]    = conv3(u -> f)")


def kind(a: str, b: str) -> M.Match:
    return M.match(M.network(mgdsl.compile_ir("a.mg", text=a)), M.network(mgdsl.compile_ir("b.mg", text=b)))


def test_matching_imports_no_torch():
    code = "import sys, mgdsl.match; assert 'torch' not in sys.modules, 'torch imported'"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_a_term_that_cancels_and_an_equal_composition_leave_the_normal_form_as_it_was():
    step = "  step    u = u + B(f - A(u))"
    for new in ("  step    u = u + B(f - A(u) + A(u) - A(u))", "  step    u = u + B(f - 2 * A(0.5 * u))",
                "  step    u = B(f - A(u)) + u"):
        other = MGNET.replace(step, new)
        assert other != MGNET
        a, b = mgdsl.compile_ir("a.mg", text=MGNET), mgdsl.compile_ir("b.mg", text=other)
        assert len(b.nodes) != len(a.nodes) or new.endswith("+ u")
        assert kind(MGNET, other).kind == "tied", new


def test_a_relu_moved_out_of_a_definition_into_the_equation_is_the_same_map():
    moved = MGNET.replace("Pi[l]   = relu . bn . conv3(u -> u, stride 2)", "Pi[l]   = bn . conv3(u -> u, stride 2)") \
        .replace("coarsen u[l+1] = Pi(u);", "coarsen u[l+1] = relu(Pi(u));")
    assert moved.count("relu(Pi(u))") == 1 and kind(MGNET, moved).kind == "tied"
    assert kind(MGNET, moved.replace("relu(Pi(u))", "Pi(u)")).kind == "none"


def test_an_affine_operator_does_not_distribute_over_a_scaling():
    # 2·A(0.5·u) = A(u) needs A linear: with a bias it is A(u) + b, not the same network
    biased = MGNET.replace("A[l]    = conv3(u -> f)", "A[l]    = conv3(u -> f, bias)")
    assert kind(biased, biased.replace("B(f - A(u))", "B(f - 2 * A(0.5 * u))")).kind == "none"
    assert kind(biased, biased.replace("B(f - A(u))", "B(f - A(u) + A(u) - A(u))")).kind == "tied"


def test_sharing_is_part_of_the_match_in_both_directions():
    untied = MGNET.replace("eta[l]  =", "eta[l, i] =").replace(". eta[l] .", ". eta[l, i] .")
    m = kind(MGNET, untied)
    assert m.kind == "spec-ties" and m.operators["eta[2, 1]"] == m.operators["eta[2, 2]"] == "eta[2]"
    assert kind(untied, MGNET).kind == "target-ties"


def test_two_operators_of_the_same_kind_summed_are_matched_whatever_they_are_called():
    # A(u) + E(u) with A, E alike: an automorphism of the graph that colour refinement alone cannot break
    swapped = A_SUM.replace("A[l]    = conv3", "Q[l]    = conv3").replace("E[l]    = conv3", "A[l]    = conv3") \
        .replace("Q[l]", "E[l]")
    m = kind(A_SUM, swapped)
    assert m.kind == "tied" and sorted(m.operators.values()) == sorted(m.operators)
    assert kind(A_SUM, A_SUM.replace("E[l]    = conv3(u -> f)", "E[l]    = A[l]")).kind == "none"


def test_the_states_are_named_by_their_values():
    lines = [re.sub(r"\bf\b", "g", re.sub(r"\bu\b", "v", line.split("#")[0])) for line in MGNET.splitlines()]
    renamed = "\n".join(lines)
    assert "space v = width, g = width" in renamed and "v = v + B(g - A(v))" in renamed
    m = kind(MGNET, renamed)
    assert m.kind == "tied" and m.states == {"f": "g", "u": "v"}
    other = "\n".join(re.sub(r"\bf\b", "z", re.sub(r"\bu\b", "a", line.split("#")[0])) for line in MGNET.splitlines())
    assert kind(MGNET, other).states == {"f": "z", "u": "a"}  # by value: sorted names would pair f with a
