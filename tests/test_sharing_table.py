"""`mgdsl check --json`: the sharing table a user reads to see which weights are shared where.

Every value below is read off the spec by hand: u has 4 channels, f has 6; B[l, i] has its own BN
and shares eta[l] across the steps; Ar[1] is untied, A[l] is not; the first step's A(u) with u = 0 is
folded away, so A[1] is applied once (grid 1, step 2) and A[2] twice (the coarsening's A[2](u[2]) is
also step 1's A[2](u) on grid 2: one application).
"""
import json

import pytest

from mgdsl.cli import main

SPEC = """model share {
  param nu = 2
  input x : 3 x 8 x 8
  classes 10
  grids 2
  smooth nu
  space u = 4, f = 6
  f_in = relu . bn . conv3(x -> f)
  A[l] = conv3(u -> f)
  Ar[l] = A[l]
  Ar[1] = conv3(u -> f)
  eta[l] = conv3(f -> u)
  B[l, i] = relu . bn . eta[l]
  Pi[l] = conv3(u -> u, stride 2)
  R[l] = conv3(f -> f, stride 2)
  fc = linear(u -> classes)
  init f = f_in(x); u = 0
  step u = u + B(f - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - Ar(u)) + A[l+1](u[l+1])
  output fc(avgpool(u))
}
"""

ROWS = {
    "f_in": dict(module="f_in", scope="model", kind="conv+bn+relu", **{"class": "nonlinear"}, **{"in": 3}, out=6,
                 in_space="x", out_space="f", stride=1, params=3 * 6 * 9 + 2 * 6, uses=1, shares=[]),
    "A[1]": dict(module="A.1", scope="[l]", kind="conv", **{"class": "linear"}, **{"in": 4}, out=6, in_space="u",
                 out_space="f", stride=1, params=4 * 6 * 9, uses=1, shares=[]),
    "A[2]": dict(module="A.2", scope="[l]", kind="conv", **{"class": "linear"}, **{"in": 4}, out=6, in_space="u",
                 out_space="f", stride=1, params=4 * 6 * 9, uses=2, shares=[]),
    "Ar[1]": dict(module="Ar.1", scope="[1]", kind="conv", **{"class": "linear"}, **{"in": 4}, out=6, in_space="u",
                  out_space="f", stride=1, params=4 * 6 * 9, uses=1, shares=[]),
    "eta[1]": dict(module="eta.1", scope="[l]", kind="conv", **{"class": "linear"}, **{"in": 6}, out=4,
                   in_space="f", out_space="u", stride=1, params=6 * 4 * 9, uses=2, shares=[]),
    "B[1, 2]": dict(module="B.1.2", scope="[l, i]", kind="eta[1]+bn+relu", **{"class": "nonlinear"}, **{"in": 6},
                    out=4, in_space="f", out_space="u", stride=1, params=2 * 4, uses=1, shares=["eta[1]"]),
    "Pi[1]": dict(module="Pi.1", scope="[l]", kind="conv", **{"class": "linear"}, **{"in": 4}, out=4, in_space="u",
                  out_space="u", stride=2, params=4 * 4 * 9, uses=1, shares=[]),
    "R[1]": dict(module="R.1", scope="[l]", kind="conv", **{"class": "linear"}, **{"in": 6}, out=6, in_space="f",
                 out_space="f", stride=2, params=6 * 6 * 9, uses=1, shares=[]),
    "fc": dict(module="fc", scope="model", kind="linear", **{"class": "affine"}, **{"in": 4}, out=10, in_space="u",
               out_space="classes", stride=1, params=4 * 10 + 10, uses=1, shares=[]),
}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    p = tmp_path_factory.mktemp("share") / "share.mg"
    p.write_text(SPEC)
    return p


def test_sharing_table_rows_are_the_specs(table, capsys):
    assert main(["check", "--json", str(table)]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in out["operators"]}
    for name, want in ROWS.items():
        got = {k: rows[name][k] for k in want}
        assert got == want, name
    # every instance once; Ar[2] is A[2] itself and is never applied on a 2-grid model
    assert sorted(rows) == sorted(["f_in", "A[1]", "A[2]", "Ar[1]", "eta[1]", "eta[2]", "B[1, 1]", "B[1, 2]",
                                   "B[2, 1]", "B[2, 2]", "Pi[1]", "R[1]", "fc"])
    assert out["params"] == sum(r["params"] for r in out["operators"])


def test_sharing_table_in_the_text_output(table, capsys):
    assert main(["check", str(table)]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("B[1, 2]"))
    assert line.split()[-1] == "eta[1]" and "[l, i]" in line


def test_galerkin_operator_lists_what_it_is_built_from(capsys):
    """A[2] = R[1] . A[1] . P[1] (5.11) reuses those three modules; jacobi(A) and inverse(A) are built from A's
    values but hold no reference to A's parameters, so they share nothing."""
    assert main(["check", "--json", "specs/multigrid/poisson-v11.mg", "-D", "n=9"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["operators"]}
    assert rows["A[2]"]["shares"] == ["P[1]", "A[1]", "R[1]"]  # in the order they are applied
    assert rows["A[2]"]["kind"] == "P[1]+A[1]+R[1]" and rows["A[2]"]["params"] == 0
    assert rows["S[1]"]["shares"] == [] and rows["S[1]"]["kind"] == "jacobi"
    assert rows["S[3]"]["shares"] == [] and rows["S[3]"]["kind"] == "inverse"
