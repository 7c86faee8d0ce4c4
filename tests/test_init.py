"""Kaiming initialisation (paper section 9.2) in fan-out mode, as the authors' public code and torchvision do.

With c_u != c_f fan-in and fan-out differ by the ratio of the widths, so a switch to fan-in (or to any
other init) moves the std of A (u -> f) and eta (f -> u) in opposite directions.
"""
import math

import pytest
import torch

import mgdsl

C_U, C_F = 16, 48
SPEC = "specs/table2/mgnet-256-512-pi1.mg"  # space u = width, f = fwidth

# parameter name -> (cout, cin) read off the spec's definitions
CONVS = {
    "f_in.0.weight": (C_F, 3),       # f_in = relu . bn . conv3(x -> f)
    "A.1.weight": (C_F, C_U),        # A[l] = conv3(u -> f)
    "A.3.weight": (C_F, C_U),
    "Ar.1.weight": (C_F, C_U),       # Ar[1] = conv3(u -> f)
    "eta.1.weight": (C_U, C_F),      # eta[l] = conv3(f -> u)
    "eta.4.weight": (C_U, C_F),
    "Pi.1.0.weight": (C_U, C_U),     # Pi[l] = relu . bn . conv3(u -> u, stride 2)
    "R.2.0.weight": (C_F, C_F),      # R[l] = relu . bn . conv3(f -> f, stride 2)
}


@pytest.fixture(scope="module")
def params():
    torch.manual_seed(0)
    return dict(mgdsl.load(SPEC, width=C_U, fwidth=C_F).named_parameters())


@pytest.mark.parametrize("name", sorted(CONVS))
def test_conv_weights_have_kaiming_fan_out_std(params, name):
    cout, cin = CONVS[name]
    w = params[name]
    assert tuple(w.shape) == (cout, cin, 3, 3)
    want = math.sqrt(2 / (cout * 9))
    # the sample std of n normal draws is within 5 / sqrt(2 n) relative with overwhelming probability
    tol = 5 / math.sqrt(2 * w.numel())
    assert w.std().item() == pytest.approx(want, rel=tol), (name, "fan_in would give", math.sqrt(2 / (cin * 9)))
    assert w.mean().item() == pytest.approx(0, abs=5 * want / math.sqrt(w.numel()))


def test_every_conv_is_covered_by_the_fan_out_rule(params):
    """No convolution keeps torch's default (kaiming_uniform with a=sqrt(5), std = 1/sqrt(3 fan_in))."""
    for name, w in params.items():
        if w.dim() != 4 or w.numel() < 1000:
            continue
        want = math.sqrt(2 / (w.shape[0] * w.shape[2] * w.shape[3]))
        assert w.std().item() == pytest.approx(want, rel=5 / math.sqrt(2 * w.numel())), name
