"""Differential testing (issue 10): what `check` accepts lowers and runs with the checker's shape, parameter
count and MACs; what it refuses is a located SpecError. A bounded run here; tools/fuzz_specs.py runs longer."""
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from helpers import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import fuzz_specs as F  # noqa: E402

PER_SPEC = 3  # seeded mutants of each shipped spec


def _no_defect(name, text):
    o = F.trial(text)
    assert o.verdict != "defect", f"{name}: {o.detail}\n{text}"
    return o


@pytest.mark.parametrize("path", [p for p, _ in F.base_specs()])
def test_seeded_mutants_of_every_shipped_spec_run_or_are_refused_with_a_location(path):
    import random
    text = dict(F.base_specs())[path]
    rng = random.Random(path)
    for k in range(PER_SPEC):
        mutant = text
        for _ in range(rng.choice((1, 2))):
            mutant = F.mutate(mutant, rng)
        _no_defect(f"{path} mutant {k}", mutant)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_generated_specs_run_or_are_refused_with_a_location(data):
    text = F.generated_spec(lambda xs: data.draw(st.sampled_from(xs)))
    _no_defect("generated", text)


def test_the_mutation_bases_are_accepted_at_the_harness_size():
    """Mutants of a spec the harness itself refuses (e.g. over its parameter budget) would test nothing."""
    import mgdsl
    for path, text in F.base_specs():
        mgdsl.compile_spec(path, F._small(text), text, max_params=F.MAX_PARAMS)


ODD_DECONV = """model odd {
  input x : 3 x 28 x 28
  classes 10
  grids 4
  smooth 1
  postsmooth 1
  cycle V
  space u = 4, f = 4
  f_in = conv3(x -> f)
  A[l] = conv3(u -> f)
  B[l] = conv3(f -> u)
  Pi[l] = conv3(u -> u, stride 2)
  R[l] = conv3(f -> f, stride 2)
  P[l] = deconv4(u -> u)
  fc = linear(u -> classes)
  init f = f_in(x); u = 0
  step u = u + B(f - A(u))
  coarsen u[l+1] = Pi(u); f[l+1] = R(f - A(u)) + A[l+1](u[l+1])
  refine u = u + P(u[l+1] - u[l+1, 0])
  output fc(avgpool(u))
}
"""


def test_the_harness_reports_a_checker_that_accepts_too_much(monkeypatch):
    """The oracle can fail: a shape rule that lets deconv4 reach odd grids is caught as a defect."""
    import mgdsl.prims as prims
    assert F.trial(ODD_DECONV).verdict == "refused"
    monkeypatch.setattr(prims, "deconv_sizes", lambda k, h: (2 * h - 1, 2 * h))
    o = F.trial(ODD_DECONV)
    assert o.verdict == "defect" and o.detail.startswith(("lower", "forward")), o.detail


def test_the_harness_reports_an_unlocated_refusal(monkeypatch):
    from mgdsl.diagnostics import Diagnostic, SpecError
    import mgdsl

    def refuse(*a, **k):
        raise SpecError([Diagnostic("something is wrong somewhere")])
    monkeypatch.setattr(mgdsl, "compile_spec", refuse)
    assert F.trial(ODD_DECONV).verdict == "defect"
