"""The normal form keeps an affine layer's linear part W and its offset b apart: A(x + y) = W x + W y + b,
never A(x) + A(y), and the offsets of A(u + B(r)) − A(u) cancel exactly (Theorem 8.1 with ξ = W)."""
from hypothesis import given, settings
from hypothesis import strategies as st

import mgdsl
from mgdsl import normal as N

SPEC = """model m {{
  input x : 2 x 8 x 8
  grids 1
  smooth 2
  space u = 2, f = 2
  A = {a}
  B = relu . conv3(f -> u)
  E = conv1(x -> f)
  init f = E(x); u = 0
  step u = u + B(f - A(u))
  output u
}}
"""
AFFINE = ["conv3(u -> f, bias)", "bn . conv3(u -> f)", "conv3(u -> f) . conv1(u -> u, bias)"]


def norm(a: str, term) -> tuple:
    ir = mgdsl.compile_ir("x.mg", text=SPEC.format(a=a))
    return N.normalise(ir, term, "step", 1, 2)


def app(op, t):
    return ("app", op, t)


U, F = ("var", "u"), ("var", "f")


@given(a=st.sampled_from(AFFINE), c=st.sampled_from([1.0, 0.5, -2.0]))
@settings(max_examples=9, deadline=None, derandomize=True)
def test_an_affine_layer_is_never_distributed_like_a_linear_one(a, c):
    whole = norm(a, app("A", ("add", U, ("scale", c, F))))
    split = norm(a, ("add", app("A", U), ("scale", c, app("A", F))))
    assert whole != split  # A(u + c f) = W u + c W f + b, not A(u) + c A(f) (which has (1 + c) b)
    offsets = [(x, k) for x, k in whole if isinstance(x.base, N.Offset)]
    assert len(offsets) == 1 and offsets[0][1] == 1.0  # b once, whatever the coefficients
    assert sum(k for x, k in split if isinstance(x.base, N.Offset)) == 1.0 + c


@given(a=st.sampled_from(AFFINE))
@settings(max_examples=3, deadline=None, derandomize=True)
def test_the_offsets_cancel_in_the_residual_update(a):
    # A(u + B(r)) − A(u) = W B(r): Theorem 8.1's r' = r − W B(r) with ξ = W, the linear part
    r = ("sub", F, app("A", U))
    diff = norm(a, ("sub", app("A", ("add", U, app("B", r))), app("A", U)))
    assert not any(isinstance(x.base, N.Offset) for x, _ in diff)
    assert all(f.linear for x, _ in diff for f in x.ops) and len(diff) == 1


def test_a_linear_layer_still_distributes_and_an_affine_one_reads_back_as_one_operator():
    assert norm("conv3(u -> f)", app("A", ("add", U, U))) == norm("conv3(u -> f)", ("scale", 2.0, app("A", U)))
    op, base = N.chain(norm("bn . conv3(u -> f)", app("A", U)))
    assert base == N.Var("u") and [f.kind for f in op.fs] == ["bn", "conv"]
    assert [f.klass for f in op.fs] == ["affine", "linear"]
