"""The witnesses that are reported for a failed premise: each measures exactly what refutes its
premise, over every grid and step, and finds nothing where nothing is wrong (then the verdict stays
"undecided"). The spec's states are given by hand here, so each test knows the answer: a moved state at one
(grid, step), a negative right-hand side on one grid, a linear or a nonlinear operator, two operators that
are or are not one."""
from types import SimpleNamespace

import pytest
import torch

from mgdsl import numerics as X
from mgdsl.forms import Premise, Witness

GRIDS, NU = 3, [2, 2, 1]
SHAPE = (2, 3, 4, 4)


def _spec(states: dict, carried: dict | None = None, seed: int = 0):
    """What witness() reads of a SpecRun: its IR's grids and steps, its seed, its states and its operators."""
    return SimpleNamespace(ir=SimpleNamespace(grids=GRIDS, nu=NU), seed=seed, states=lambda trial: states,
                           carry=lambda op: carried[op])


def _still(state: str = "f") -> dict:
    """`state` the same at every grid and step (a fixed right-hand side), positive."""
    base = torch.rand(SHAPE, dtype=torch.float64) + 0.1
    return {(state, lv, "down", i): base.clone() for lv in range(1, GRIDS + 1) for i in range(NU[lv - 1] + 1)}


PLACES = [(lv, i) for lv in range(1, GRIDS + 1) for i in range(1, NU[lv - 1] + 1)]


def test_a_fixed_state_has_no_witness():
    assert X.witness(_spec(_still()), None, Premise("f fixed", "unproved", witness=Witness("fixed", "f")), 0) == 0.0


@pytest.mark.parametrize("lv,i", PLACES)
def test_a_state_that_moves_at_one_grid_and_step_is_the_witness(lv, i):
    st = _still()
    st[("f", lv, "down", i)] = st[("f", lv, "down", i)] + 0.375
    got = X.witness(_spec(st), None, Premise("f fixed", "failed", witness=Witness("fixed", "f")), 0)
    assert got == pytest.approx(0.375, abs=1e-12)


def test_the_start_of_a_grid_is_the_reference_not_a_move():
    # f^{l,0} may differ from grid to grid (it is restricted); only a change within a grid is a move
    st = _still()
    for lv in range(1, GRIDS + 1):
        for i in range(NU[lv - 1] + 1):
            st[("f", lv, "down", i)] = st[("f", lv, "down", i)] + lv
    assert X.witness(_spec(st), None, Premise("f fixed", "failed", witness=Witness("fixed", "f")), 0) == 0.0


@pytest.mark.parametrize("lv", range(1, GRIDS + 1))
def test_a_negative_input_to_sigma_on_one_grid_is_the_witness(lv):
    st = {k: v for k, v in _still().items() if k[3] == 0}  # only each grid's input: (8.3) reads nothing else
    p = Premise("reads sigma(f)", "failed", witness=Witness("relu-input", "f"))
    assert X.witness(_spec(st), None, p, 0) == 0.0  # positive: sigma(f) = f everywhere
    st[("f", lv, "down", 0)] = st[("f", lv, "down", 0)] - 5.0
    low = float(-st[("f", lv, "down", 0)].min())
    assert X.witness(_spec(st), None, p, 0) == pytest.approx(low, abs=1e-12)
    st[("f", lv, "down", 1)] = st[("f", lv, "down", 0)] + 9.0  # a later iterate, positive: it changes nothing
    assert X.witness(_spec(st), None, p, 0) == pytest.approx(low, abs=1e-12)


def _ops():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1, bias=False).double()
    return {"lin": conv, "relu": torch.nn.Sequential(conv, torch.nn.ReLU()),
            "bias": torch.nn.Conv2d(3, 3, 3, padding=1, bias=True).double(), "other": torch.nn.Conv2d(
                3, 3, 3, padding=1, bias=False).double()}


def test_linearity_witness_is_zero_for_a_linear_operator_and_not_for_relu_or_a_bias():
    st = {("u", 2, "down", 1): torch.randn(SHAPE, dtype=torch.float64)}  # only the state before step 2
    ops = _ops()
    spec = _spec(st, ops)

    def w(op):
        return X.witness(spec, None, Premise("A linear", "unproved", witness=Witness("linear-op", "u", ((2, 2),), op=op)), 0)
    assert w("lin") <= 1e-12
    assert w("relu") > 1e-3 and w("bias") > 1e-3


def test_tied_witness_compares_the_two_operators_on_the_state_the_second_one_reads():
    ops = _ops()
    rd = SimpleNamespace(roles={(3, 1): {"xi": "lin"}, (3, 2): {"xi": "lin"}, (1, 1): {"xi": "other"}})
    # only the state before the second operator's step exists: reading any other one is a KeyError
    one = {("f", 3, "down", 1): torch.randn(SHAPE, dtype=torch.float64)}
    same = Premise("one xi per grid", "unproved", witness=Witness("tied", "f", ((1, 1), (3, 2)), "xi"))
    assert X.witness(_spec(one, ops), rd, same, 0) > 1e-3  # "other" vs "lin"
    tied = Premise("one xi per grid", "unproved", witness=Witness("tied", "f", ((3, 1), (3, 2)), "xi"))
    assert X.witness(_spec(one, ops), rd, tied, 0) == 0.0  # the same operator twice
    start = {("f", 3, "down", 0): one[("f", 3, "down", 1)]}
    first = Premise("one xi per grid", "failed", witness=Witness("tied", "f", ((1, 1), (3, 1)), "xi"))
    assert X.witness(_spec(start, ops), rd, first, 0) > 1e-3


def test_witnesses_are_repeatable_for_a_seed_and_trial_and_differ_between_trials():
    st = {("u", 2, "down", 1): torch.randn(SHAPE, dtype=torch.float64)}
    spec = _spec(st, _ops())
    p = Premise("A linear", "failed", witness=Witness("linear-op", "u", ((2, 2),), op="relu"))
    torch.manual_seed(1)
    a = X.witness(spec, None, p, 0)
    torch.manual_seed(2)  # the global generator must not matter: the witness draws from its own
    assert X.witness(spec, None, p, 0) == a
    assert X.witness(spec, None, p, 1) != a
    assert X.witness(_spec(st, _ops(), seed=5), None, p, 0) != a


def test_an_unknown_witness_refutes_nothing():
    assert X.witness(_spec(_still()), None, Premise("?", "unproved", witness=Witness("something-else")), 0) == 0.0
    assert X.witness(_spec(_still()), None, Premise("?", "unproved"), 0) == 0.0
    # a state the model never computed (it feeds nothing) refutes nothing either
    for kind in ("fixed", "relu-input"):
        assert X.witness(_spec(_still()), None, Premise("?", "unproved", witness=Witness(kind, "g")), 0) == 0.0


def test_an_operator_the_lowering_fused_refutes_nothing():
    # an operator that cannot be carried layer by layer gives no witness: the verdict stays undecided
    def carry(op):
        raise X.Uncarried("fused")
    spec = SimpleNamespace(ir=SimpleNamespace(grids=GRIDS, nu=NU), seed=0, carry=carry,
                           states=lambda t: {("u", 2, "down", 1): torch.randn(SHAPE, dtype=torch.float64),
                                             ("f", 3, "down", 1): torch.randn(SHAPE, dtype=torch.float64)})
    rd = SimpleNamespace(roles={(3, 1): {"xi": "a"}, (3, 2): {"xi": "b"}})
    assert X.witness(spec, None, Premise("A linear", "unproved", witness=Witness("linear-op", "u", ((2, 2),), op="op")), 0) == 0.0
    assert X.witness(spec, rd, Premise("tied", "unproved", witness=Witness("tied", "f", ((3, 1), (3, 2)), "xi")), 0) == 0.0
