import pytest
import torch

import mgdsl
from conftest import SPECS
from reference import HandMgNet, HandResNet18

SMALL = {"width": 8, "fwidth": 8, "n": 17}


def _small(path):
    ir = mgdsl.compile_ir(path)
    return mgdsl.compile_ir(path, **{k: v for k, v in SMALL.items() if k in ir.params})


@pytest.mark.parametrize("path", SPECS)
def test_every_spec_lowers_and_runs_with_the_checked_shape(path):
    if "imagenet" in path:
        pytest.skip("224x224, 71M parameters: counted statically in test_counts, not run here")
    ir = _small(path)
    model = mgdsl.lower(ir)
    assert sum(p.numel() for p in model.parameters()) == ir.total_params
    model.eval()
    x = torch.randn(2, *ir.input_ty.shape)
    with torch.no_grad():
        y = model(x)
    assert tuple(y.shape[1:]) == ir.output_ty.shape


@pytest.mark.parametrize("path,count", [("specs/table2/resnet18.mg", 11_173_962),
                                        ("specs/table2/resnet34.mg", 21_282_122)])
def test_resnet_counts_exact(path, count):
    assert mgdsl.compile_ir(path).total_params == count
    assert sum(p.numel() for p in mgdsl.load(path).parameters()) == count


@pytest.mark.parametrize("path,paper", [("specs/table2/mgnet-256-256-pi0.mg", 7.1e6),
                                        ("specs/table2/mgnet-256-256-pi1.mg", 8.9e6),
                                        ("specs/table2/mgnet-256-512-pi1.mg", 19.5e6),
                                        ("specs/table2/mgnet-256-512-pi2.mg", 17.7e6),
                                        ("specs/mgnet-official.mg", 8.28e6),
                                        ("specs/variants/mgnet-imagenet.mg", 71.3e6)])
def test_mgnet_counts_within_one_percent_of_the_paper(path, paper):
    assert abs(mgdsl.compile_ir(path).total_params - paper) / paper < 0.01


def _copy(hand, lowered):
    sd = lowered.state_dict()
    for src, dst in hand.mgdsl_names().items():
        sd[dst] = hand.state_dict()[src].clone()
    lowered.load_state_dict(sd)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_lowered_mgnet_equals_hand_written(mode):
    torch.manual_seed(0)
    hand = HandMgNet(c_u=16, c_f=16)  # with the untied Ar[1] of the Table 2 count reading
    model = mgdsl.load("specs/table2/mgnet-256-256-pi1.mg", width=16)
    assert set(hand.mgdsl_names().values()) <= set(model.state_dict())
    assert len(hand.mgdsl_names()) == len([k for k in hand.state_dict() if "num_batches" not in k])
    assert sum(p.numel() for p in hand.parameters()) == sum(p.numel() for p in model.parameters())
    for m in hand.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    _copy(hand, model)
    getattr(hand, mode)()
    getattr(model, mode)()
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(model(x), hand(x), atol=1e-6, rtol=1e-6)


def test_cu_ne_cf_matches_hand_written():
    torch.manual_seed(1)
    hand = HandMgNet(c_u=8, c_f=12).eval()
    model = mgdsl.load("specs/table2/mgnet-256-512-pi1.mg", width=8, fwidth=12).eval()
    _copy(hand, model)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), hand(x), atol=1e-6, rtol=1e-6)


def test_lowered_resnet18_equals_hand_written():
    torch.manual_seed(0)
    hand = HandResNet18().eval()
    model = mgdsl.load("specs/table2/resnet18.mg").eval()
    names = hand.mgdsl_names()
    assert len(names) == len([k for k in hand.state_dict() if "num_batches" not in k])
    _copy(hand, model)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), hand(x), atol=1e-5, rtol=1e-5)


def test_sharing_is_exactly_the_spec():
    model = mgdsl.load("specs/table2/mgnet-256-256-pi1.mg", width=8)
    # one A per grid, used in every step and in the coarsening: a single tensor
    assert model.instance("A[2]").weight is model.A["2"].weight
    # Ar[2] = A[2] is the same module; Ar[1] is its own
    assert model.instance("Ar[2]")[0] is model.instance("A[2]")
    assert model.instance("Ar[1]") is not model.instance("A[1]")
    # B[l, i] shares its convolution eta[l] across steps but has its own BN
    b1, b2 = model.instance("B[1, 1]"), model.instance("B[1, 2]")
    assert b1[2] is b2[2] and b1[0] is not b2[0]
    names = dict(model.named_parameters())
    assert "A.1.weight" in names and "B.1.2.0.weight" in names


def test_readable_parameter_names_and_kaiming_init():
    model = mgdsl.load("specs/mgnet.mg", width=64)
    w = model.A["1"].weight
    fan_out = w.shape[0] * 9
    assert abs(w.std().item() - (2 / fan_out) ** 0.5) < 0.1 * (2 / fan_out) ** 0.5


def test_channels_last_and_autocast():
    model = mgdsl.load("specs/mgnet.mg", width=8).eval().to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", torch.bfloat16):
        y = model(x)
    assert y.shape == (2, 10) and torch.isfinite(y.float()).all()


def test_torch_compile_fullgraph_tiny_model():
    model = mgdsl.load("specs/mgnet.mg", width=4, nu=1).eval()
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=1e-5)


def test_generated_code_is_readable():
    model = mgdsl.load("specs/mgnet.mg", width=4)
    assert 'self.A["1"]' in model.code and "return" in model.code
