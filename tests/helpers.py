"""What several test files share: the repository's paths and a BN randomiser (import from here, not conftest)."""
from pathlib import Path

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
