"""The lowered modules of the less common primitives compute what the paper defines, checked by value:
scale (a trained scalar), and split / delta / sub_id through Theorem 8.3 (a classic CNN and its Mg-ResNet
rewrite compute the same function with the same weights)."""
import itertools

import pytest
import torch
import torch.nn.functional as F

import mgdsl
from helpers import nontrivial_bn
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


def test_mg_resnet_rewrite_computes_the_classic_cnn(tmp_path):
    """f = chi(relu f) equals f = relu f - xi(relu(eta(relu f))) with xi = delta, eta = split . sub_id(chi)
    (8.12), (8.13): the rewritten model, given the CNN's weights, gives the CNN's outputs."""
    out = tmp_path / "rw.mg"
    assert main(["rewrite", "--to", "mg-resnet", "specs/cnn/classic-cnn.mg", "-D", "width=4", "-o", str(out)]) == 0
    with default_dtype(torch.float64):
        cnn = mgdsl.load("specs/cnn/classic-cnn.mg", width=4).eval()
        mg = mgdsl.load(str(out), width=4).eval()
    nontrivial_bn(cnn, 0)
    src = cnn.state_dict()
    with torch.no_grad():
        for name, t in itertools.chain(mg.named_parameters(), mg.named_buffers()):  # each tensor once
            t.copy_(src[name])
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        want, got = cnn(x), mg(x)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)


POOL = """model p {
  input f : 2 x 9 x 9
  grids 2
  smooth 1
  space f = 2
  init f = f
  step f = relu(f)
  coarsen f[l+1] = POOL(f)
  output f
}
"""

# the inline pooling primitives of the language, and what torch computes for them (ceil mode: a 9x9 grid
# has a 5x5 coarse grid, as a stride-2 'same' convolution gives)
POOLS = {"maxpool2": lambda x: F.max_pool2d(x, 2, 2, ceil_mode=True),
         "avgpool2": lambda x: F.avg_pool2d(x, 2, 2, ceil_mode=True),
         "maxpool3": lambda x: F.max_pool2d(x, 3, 2, 1)}


@pytest.mark.parametrize("pool", sorted(POOLS))
def test_inline_pooling_computes_torchs_pooling(tmp_path, pool):
    p = tmp_path / "p.mg"
    p.write_text(POOL.replace("POOL", pool))
    model = mgdsl.load(str(p))
    x = torch.randn(3, 2, 9, 9)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (3, 2, 5, 5)
    torch.testing.assert_close(y, F.relu(POOLS[pool](F.relu(x))))


def test_the_lowered_module_reports_the_specs_shapes_and_shows_its_code():
    import inspect
    model = mgdsl.load("specs/mgnet.mg", width=4, nu=1)
    assert (model.input_shape, model.output_shape, model.spec_name) == ((3, 32, 32), (10,), "mgnet")
    # the generated forward is registered with linecache: tracebacks and inspect show its lines
    assert inspect.getsource(type(model).forward).rstrip() == model.code.rstrip()


def test_the_lowered_module_survives_pickling():
    """torch.save(model) / torch.load: the generated class is rebuilt on load, outputs unchanged."""
    import pickle
    model = mgdsl.load("specs/mgnet.mg", width=4, nu=1).eval()
    again = pickle.loads(pickle.dumps(model))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))
    assert type(again).__name__ == type(model).__name__ and again.code == model.code


CONV = """model c {
  input f : 2 x 6 x 6
  grids 1
  smooth 1
  space f = 2
  S[l] = conv3(f -> f, pad PAD)
  init f = f
  step f = S(f)
  output f
}
"""
# the boundary each pad word promises, as torch's F.pad writes it
PADS = {"zero": "constant", "periodic": "circular", "reflect": "reflect"}


@pytest.mark.parametrize("pad", sorted(PADS))
def test_a_convolutions_pad_option_pads_the_grid_as_it_says(tmp_path, pad):
    """`pad periodic` wraps the grid around, `pad reflect` mirrors it; neither may silently zero-pad."""
    p = tmp_path / "c.mg"
    p.write_text(CONV.replace("PAD", pad))
    model = mgdsl.load(str(p))
    w = dict(model.named_parameters())["S.1.weight"]
    x = torch.randn(3, 2, 6, 6)
    with torch.no_grad():
        want = F.conv2d(F.pad(x, (1, 1, 1, 1), mode=PADS[pad]), w)
        torch.testing.assert_close(model(x), want)
    if pad != "zero":  # the boundary is seen: a zero-padded convolution differs on the edge points
        assert not torch.allclose(want, F.conv2d(x, w, padding=1))


BN = """model b {
  input f : 3 x 4 x 4
  grids 1
  smooth 1
  space f = 3
  S[l] = bn
  N = bn
  init f = f
  step f = S(f)
  output N(avgpool(f))
}
"""


def test_bn_keeps_pytorchs_running_statistics_and_eps(tmp_path):
    """A batch in training moves the running statistics by PyTorch's momentum 0.1, on a grid (BatchNorm2d)
    and on a pooled vector (BatchNorm1d); eval divides by sqrt(var + 1e-5): checkpoints and published weights
    trained elsewhere mean the same here."""
    p = tmp_path / "b.mg"
    p.write_text(BN)
    model = mgdsl.load(str(p)).train()
    x = 2 + 3 * torch.randn(8, 3, 4, 4)
    with torch.no_grad():
        model(x)
    grid, vec = dict(model.named_modules())["S.1"], dict(model.named_modules())["N"]
    pooled = F.batch_norm(x, None, None, training=True).mean((2, 3))  # what N saw: S's output, pooled
    for bn, seen, dims in ((grid, x, (0, 2, 3)), (vec, pooled, (0,))):
        torch.testing.assert_close(bn.running_mean, 0.1 * seen.mean(dims))
        torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * seen.var(dims, unbiased=True))
    model.eval()
    with torch.no_grad():
        m, v = grid.running_mean.view(1, 3, 1, 1), grid.running_var.view(1, 3, 1, 1)
        y = ((x - m) / torch.sqrt(v + 1e-5)).mean((2, 3))
        torch.testing.assert_close(model(x), (y - vec.running_mean) / torch.sqrt(vec.running_var + 1e-5))
