"""Hand-written PyTorch models, written directly from DESIGN.md / the paper, to prove the lowering right."""
import torch
import torch.nn.functional as F
from torch import nn


class HandMgNet(nn.Module):
    """MgNet (Algorithm 3) as the authors' public code runs it, plus the untied Ar[1] of specs/mgnet.mg."""

    def __init__(self, c_u=256, c_f=256, grids=4, nu=2, classes=10, untied_first=True):
        super().__init__()
        conv = lambda a, b, s=1: nn.Conv2d(a, b, 3, s, 1, bias=False)
        self.grids, self.nu = grids, nu
        self.stem = conv(3, c_f)
        self.stem_bn = nn.BatchNorm2d(c_f)
        self.A = nn.ModuleList(conv(c_u, c_f) for _ in range(grids))
        self.Ar1 = conv(c_u, c_f) if untied_first else None
        self.eta = nn.ModuleList(conv(c_f, c_u) for _ in range(grids))
        self.bn1 = nn.ModuleList(nn.ModuleList(nn.BatchNorm2d(c_f) for _ in range(nu)) for _ in range(grids))
        self.bn2 = nn.ModuleList(nn.ModuleList(nn.BatchNorm2d(c_u) for _ in range(nu)) for _ in range(grids))
        self.Pi = nn.ModuleList(conv(c_u, c_u, 2) for _ in range(grids - 1))
        self.Pi_bn = nn.ModuleList(nn.BatchNorm2d(c_u) for _ in range(grids - 1))
        self.R = nn.ModuleList(conv(c_f, c_f, 2) for _ in range(grids - 1))
        self.R_bn = nn.ModuleList(nn.BatchNorm2d(c_f) for _ in range(grids - 1))
        self.fc = nn.Linear(c_u, classes)
        self.c_u = c_u

    def forward(self, x):
        f = F.relu(self.stem_bn(self.stem(x)))
        u = torch.zeros(x.shape[0], self.c_u, *f.shape[2:], dtype=x.dtype)
        for l in range(self.grids):
            for i in range(self.nu):
                r = F.relu(self.bn1[l][i](f - self.A[l](u)))
                u = u + F.relu(self.bn2[l][i](self.eta[l](r)))
            if l < self.grids - 1:
                A_res = self.Ar1 if (l == 0 and self.Ar1 is not None) else self.A[l]
                u_next = F.relu(self.Pi_bn[l](self.Pi[l](u)))
                f = F.relu(self.R_bn[l](self.R[l](f - A_res(u)))) + self.A[l + 1](u_next)
                u = u_next
        return self.fc(u.mean((2, 3)))

    def mgdsl_names(self):
        """This model's parameter names -> the lowered spec's parameter names."""
        m = {"stem.weight": "f_in.0.weight", "fc.weight": "fc.weight", "fc.bias": "fc.bias"}
        m.update({f"stem_bn.{p}": f"f_in.1.{p}" for p in ("weight", "bias", "running_mean", "running_var")})
        if self.Ar1 is not None:
            m["Ar1.weight"] = "Ar.1.weight"
        for l in range(self.grids):
            m[f"A.{l}.weight"] = f"A.{l + 1}.weight"
            m[f"eta.{l}.weight"] = f"eta.{l + 1}.weight"
            for i in range(self.nu):
                for k, pos in (("bn1", 0), ("bn2", 3)):
                    for p in ("weight", "bias", "running_mean", "running_var"):
                        m[f"{k}.{l}.{i}.{p}"] = f"B.{l + 1}.{i + 1}.{pos}.{p}"
            if l < self.grids - 1:
                for k, name in (("Pi", "Pi"), ("R", "R")):
                    m[f"{k}.{l}.weight"] = f"{name}.{l + 1}.0.weight"
                    for p in ("weight", "bias", "running_mean", "running_var"):
                        m[f"{k}_bn.{l}.{p}"] = f"{name}.{l + 1}.1.{p}"
        return m


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class HandResNet18(nn.Module):
    """The CIFAR ResNet-18 (3x3 stem, no max pool) in torchvision's BasicBlock style."""

    def __init__(self, classes=10, width=64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        chans, cin, layers = [width, 2 * width, 4 * width, 8 * width], width, []
        for s, c in enumerate(chans):
            stride = 1 if s == 0 else 2
            layers.append(nn.Sequential(BasicBlock(cin, c, stride), BasicBlock(c, c, 1)))
            cin = c
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.linear = nn.Linear(8 * width, classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(out.mean((2, 3)))

    def mgdsl_names(self):
        m = {"conv1.weight": "f_in.0.weight", "linear.weight": "fc.weight", "linear.bias": "fc.bias"}
        bn = lambda src, dst: {f"{src}.{p}": f"{dst}.{p}" for p in ("weight", "bias", "running_mean", "running_var")}
        m.update(bn("bn1", "f_in.1"))
        for s in range(4):
            L = f"layer{s + 1}"
            blocks = [(0, None), (1, 1)] if s == 0 else [(0, "coarsen"), (1, 1)]
            for b, kind in blocks:
                if kind == "coarsen":  # first block of stages 2..4 is the coarsen equation on grid s
                    m[f"{L}.0.conv1.weight"] = f"eta0.{s}.0.weight"
                    m.update(bn(f"{L}.0.bn1", f"eta0.{s}.1"))
                    m[f"{L}.0.conv2.weight"] = f"xi0.{s}.0.weight"
                    m.update(bn(f"{L}.0.bn2", f"xi0.{s}.1"))
                    m[f"{L}.0.shortcut.0.weight"] = f"S.{s}.0.weight"
                    m.update(bn(f"{L}.0.shortcut.1", f"S.{s}.1"))
                else:
                    i = b + 1 if s == 0 else 1
                    m[f"{L}.{b}.conv1.weight"] = f"eta.{s + 1}.{i}.0.weight"
                    m.update(bn(f"{L}.{b}.bn1", f"eta.{s + 1}.{i}.1"))
                    m[f"{L}.{b}.conv2.weight"] = f"xi.{s + 1}.{i}.0.weight"
                    m.update(bn(f"{L}.{b}.bn2", f"xi.{s + 1}.{i}.1"))
        return m
