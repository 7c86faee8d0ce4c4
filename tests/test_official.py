"""specs/mgnet-official.mg is the authors' public MgNet: same count, same outputs as the hand-written model.

The reference is tests/reference.py's HandMgNet(untied_first=False), written from DESIGN.md's description
of the public code (4 A, 4 B with an eta per grid, 3 R, 3 Pi, R(f - A(u)) with the grid's own A).
"""
import pytest
import torch

import mgdsl
from helpers import nontrivial_bn
from reference import HandMgNet

SPEC = "specs/mgnet-official.mg"


def test_official_parameter_count_is_exactly_the_public_code():
    with torch.device("meta"):  # counted, not allocated
        hand = HandMgNet(c_u=256, c_f=256, untied_first=False)
    count = sum(p.numel() for p in hand.parameters())
    assert count == 8_278_794  # the public code at 256/256; the paper rounds it to 8.28M
    assert mgdsl.compile_ir(SPEC).total_params == count
    assert mgdsl.compile_ir("specs/mgnet.mg").total_params == count  # Algorithm 3, the spec users start from


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_official_spec_computes_the_public_codes_forward(mode):
    torch.manual_seed(0)
    hand = HandMgNet(c_u=8, c_f=8, untied_first=False)
    model = mgdsl.load(SPEC, width=8)
    names = hand.mgdsl_names()
    hand_keys = [k for k in hand.state_dict() if "num_batches" not in k]
    # every distinct tensor once (state_dict lists a shared eta under each B that uses it)
    model_keys = [k for k, _ in [*model.named_parameters(), *model.named_buffers()] if "num_batches" not in k]
    assert len(names) == len(hand_keys) == len(model_keys)  # a one-to-one map of every tensor
    assert set(names.values()) == set(model_keys)
    nontrivial_bn(hand)
    sd = model.state_dict()
    for src, dst in names.items():
        assert sd[dst].shape == hand.state_dict()[src].shape, (src, dst)
        sd[dst] = hand.state_dict()[src].clone()
    model.load_state_dict(sd)
    getattr(hand, mode)()
    getattr(model, mode)()
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(model(x), hand(x), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("spec,c_u,c_f,count", [("specs/table2/mgnet-256-256-pi1.mg", 256, 256, 8_868_618),
                                                ("specs/table2/mgnet-256-512-pi1.mg", 256, 512, 19_498_506)])
def test_table2_counts_are_exactly_the_hand_written_models(spec, c_u, c_f, count):
    """The Pi1 rows of Table 2 (8.9M, 19.5M in the paper) against HandMgNet with the untied Ar[1]."""
    with torch.device("meta"):
        hand = HandMgNet(c_u=c_u, c_f=c_f, untied_first=True)
    assert sum(p.numel() for p in hand.parameters()) == count
    assert mgdsl.compile_ir(spec).total_params == count
