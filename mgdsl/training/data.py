"""In-memory data sets: loading, validation of malformed data, normalisation and augmentation."""
from __future__ import annotations

from pathlib import Path

from ..diagnostics import Diagnostic, SpecError


class DataError(SpecError):
    """Bad data or data-set name: a clear message and exit code 2, like a spec error."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__([Diagnostic(message, None, hint)])


DIGITS_NOTE = "scikit-learn's 8x8 digits (1,797 images): a stratified split, 1,437 train / 360 test, random_state=0"


def load_dataset(name: str, test: str | None, root: str):
    """(x_train, y_train, x_test, y_test) as uint8 NHWC and int64 arrays."""
    import numpy as np
    if name == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
        d = load_digits()
        x = np.clip(np.round(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
        xtr, xte, ytr, yte = train_test_split(x, d.target.astype(np.int64), test_size=0.2, random_state=0,
                                              stratify=d.target)
        return xtr, ytr, xte, yte
    if name in ("cifar10", "cifar100"):
        import socket

        import torchvision
        cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        socket.setdefaulttimeout(30)  # a machine without a network fails in seconds, not minutes
        try:
            tr = cls(root, train=True, download=True)
            te = cls(root, train=False, download=True)
        except Exception as e:
            raise DataError(f"could not download {name} into {root} ({type(e).__name__})",
                            f"without a network, pass a local copy: --data DIR with torchvision's {name} files, "
                            "or an .npz (keys x, y) with --test") from None
        return tr.data, np.asarray(tr.targets), te.data, np.asarray(te.targets)
    p = Path(name)
    if p.suffix == ".npz":
        xtr, ytr = read_npz(p)
        if test is None:
            raise DataError(f"{name} is a training set; pass the evaluation set with --test PATH.npz")
        xte, yte = read_npz(Path(test))
        if xte.shape[1:] != xtr.shape[1:]:
            raise DataError(f"--test images are {xte.shape[1:]} but training images are {xtr.shape[1:]}")
        return xtr, ytr, xte, yte
    if p.is_dir():
        return _image_folder(p, Path(test) if test else None)
    raise DataError(f"unknown data set '{name}'",
                    "use digits, cifar10, cifar100, a .npz file (keys x: uint8 NxHxWxC, y) or an image folder")


def read_npz(p: Path):
    """An .npz with x (uint8 N x H x W x C) and y (N integer labels)."""
    import numpy as np
    if not p.exists():
        raise DataError(f"no such file: {p}")
    try:
        z = np.load(p, allow_pickle=False)
        x, y = z["x"], z["y"]
    except KeyError as e:
        raise DataError(f"{p}: missing key {e}", "an .npz data set needs keys x (uint8 N x H x W x C) and y") from None
    except Exception as e:
        raise DataError(f"{p}: not a readable .npz ({type(e).__name__})") from None
    if x.dtype != np.uint8 or x.ndim != 4:
        raise DataError(f"{p}: x is {x.dtype} with shape {x.shape}", "expected uint8 N x H x W x C (HWC, like ../shared/data)")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{p}: y must be N integer labels, got {y.dtype} {y.shape}")
    return x, y.astype(np.int64)


def _image_folder(root: Path, test: Path | None):
    import numpy as np
    from torchvision.datasets import ImageFolder

    def read(folder):
        ds = ImageFolder(str(folder))
        if not len(ds):
            raise DataError(f"{folder}: no images found", "expected one sub-folder of images per class")
        imgs = [np.asarray(ds[i][0].convert("RGB")) for i in range(len(ds))]
        if len({im.shape for im in imgs}) != 1:
            raise DataError(f"{folder}: images differ in size; resize them to one size first")
        return np.stack(imgs), np.asarray(ds.targets, dtype=np.int64)

    from .stream import folder_split  # the one rule for train/ + val/ or test/ (memory and stream alike)
    split = folder_split(root, test)
    root, test = split.train, split.test
    x, y = read(root)
    if test is None:
        rng = np.random.default_rng(0)
        idx = rng.permutation(len(x))
        cut = int(0.8 * len(x))
        return x[idx[:cut]], y[idx[:cut]], x[idx[cut:]], y[idx[cut:]]
    xt, yt = read(test)
    return x, y, xt, yt


def to_images(x, device):
    """uint8 N x H x W x C to float N x C x H x W in [0, 1]."""
    import torch
    return torch.from_numpy(x).to(device).permute(0, 3, 1, 2).float().div_(255)


def channel_stats(x):
    """Per-channel mean and std for normalisation (std floored so a constant channel does not divide by 0)."""
    return x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True).clamp_min(1e-6)


def augment(x, gen, pad: int = 4, flip_ok: bool = True):
    """Random crop (zero pad 4) and horizontal flip on a whole batch at once: no per-image Python."""
    import torch
    n, c, h, w = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    rows = (dy.view(n, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, c, h, w)
    cols = (dx.view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, c, h, w)
    out = xp[torch.arange(n, device=x.device).view(n, 1, 1, 1), torch.arange(c, device=x.device).view(1, c, 1, 1),
             rows, cols]
    flip = (torch.rand(n, generator=gen, device=x.device) < 0.5) & flip_ok
    return torch.where(flip.view(n, 1, 1, 1), out.flip(3), out)


def in_memory_batches(x, y, *, batch_size: int, gen, rank: int = 0, world: int = 1, augment_on: bool = True,
                      pad: int = 4, flip_ok: bool = True):
    """One epoch of (images, labels) batches from tensors in memory: a shuffled order, this process's share of
    each global batch, augmented on the fly."""
    import torch
    n = len(x)
    perm = torch.randperm(n, generator=gen, device=x.device)
    per_rank = batch_size // world
    for s in range(steps_per_epoch(n, batch_size)):
        idx = perm[s * batch_size:(s + 1) * batch_size]
        idx = idx[rank * per_rank:(rank + 1) * per_rank] if world > 1 else idx
        xb = x[idx]
        if augment_on:
            xb = augment(xb, gen, pad, flip_ok)
        yield xb, y[idx]


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Full batches per epoch (the ragged tail is dropped; a set smaller than a batch is one batch)."""
    return n // batch_size if n >= batch_size else 1
