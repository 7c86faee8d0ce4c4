"""The lowered modules of the less common primitives compute what the paper defines, checked by value:
scale (a trained scalar), and split / delta / sub_id through Theorem 8.3 (a classic CNN and its Mg-ResNet
rewrite compute the same function with the same weights)."""
import itertools

import torch

import mgdsl
from mgdsl.cli import main
from mgdsl.lowering import default_dtype

SCALE = """model s {
  input f : 2 x 4 x 4
  grids 1
  smooth 1
  space f = 2
  S[l] = scale(init 0.5)
  init f = f
  step f = S(f)
  output f
}
"""


def test_scale_multiplies_by_its_trained_weight(tmp_path):
    p = tmp_path / "s.mg"
    p.write_text(SCALE)
    model = mgdsl.load(str(p))
    w = dict(model.named_parameters())["S.1.weight"]
    assert w.requires_grad and w.item() == 0.5
    x = torch.randn(3, 2, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(model(x), 0.5 * x)
        w.fill_(-3.0)
        torch.testing.assert_close(model(x), -3.0 * x)


def _nontrivial_bn(model, seed):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)


def test_mg_resnet_rewrite_computes_the_classic_cnn(tmp_path):
    """f = chi(relu f) equals f = relu f - xi(relu(eta(relu f))) with xi = delta, eta = split . sub_id(chi)
    (8.12), (8.13): the rewritten model, given the CNN's weights, gives the CNN's outputs."""
    out = tmp_path / "rw.mg"
    assert main(["rewrite", "--to", "mg-resnet", "specs/cnn/classic-cnn.mg", "-D", "width=4", "-o", str(out)]) == 0
    with default_dtype(torch.float64):
        cnn = mgdsl.load("specs/cnn/classic-cnn.mg", width=4).eval()
        mg = mgdsl.load(str(out), width=4).eval()
    _nontrivial_bn(cnn, 0)
    src = cnn.state_dict()
    with torch.no_grad():
        for name, t in itertools.chain(mg.named_parameters(), mg.named_buffers()):  # each tensor once
            t.copy_(src[name])
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        want, got = cnn(x), mg(x)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)
