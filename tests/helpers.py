"""What several test files share: the repository's paths and a BN randomiser (import from here, not conftest)."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "specs").rglob("*.mg"))


def nontrivial_bn(model, seed: int = 0):
    """BN statistics and affine weights away from their defaults (mean 0, var 1, weight 1, bias 0), from a
    seeded generator: with the defaults BN is the identity in eval mode, and a wrong BN wiring would go unseen."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return model


def colour_set(path, n, seed):
    """An .npz of n 16 x 16 images whose label is the bright colour channel (under noise): learnable only if
    labels stay with their images."""
    import numpy as np
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.random((n, 16, 16, 3)) * 100).astype(np.uint8)
    x[np.arange(n), :, :, y] += 100
    np.savez(path, x=x, y=y)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """One torch thread: on a busy shared machine more threads make small runs many times slower."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(before)
