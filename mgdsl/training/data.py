"""In-memory data sets: loading, validation of malformed data, normalisation and augmentation."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..diagnostics import Diagnostic, SpecError


class DataError(SpecError):
    """Bad data or data-set name: a clear message and exit code 2, like a spec error."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__([Diagnostic(message, None, hint)])


DIGITS_NOTE = "scikit-learn's 8x8 digits (1,797 images): a stratified split, 1,437 train / 360 test, random_state=0"
NATURAL = ("cifar10", "cifar100")  # natural images: a mirror image is the same class, so flips are on by default


def flip_default(name: str) -> bool:
    """Random horizontal flips by default only for natural images (cifar10, cifar100, an image folder): a mirrored
    digit or symbol is another class, and an .npz says nothing about what it holds (--flip asks)."""
    return name in NATURAL or Path(name).is_dir()


@dataclass
class DataSet:
    """A training and a test split in memory: uint8 N x H x W x C images and int64 labels."""
    x_train: object
    y_train: object
    x_test: object
    y_test: object
    flip_default: bool  # random horizontal flips unless asked otherwise: natural images only
    classes: int
    note: str | None = None
    names: list[str] | None = None  # the class names in label order, where the data has them


def load_dataset(name: str, test: str | None, root: str) -> DataSet:
    """The named data set (digits, cifar10, cifar100), an .npz pair or an image folder, validated."""
    import numpy as np
    if name == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
        d = load_digits()
        x = np.clip(np.round(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
        xtr, xte, ytr, yte = train_test_split(x, d.target.astype(np.int64), test_size=0.2, random_state=0,
                                              stratify=d.target)
        return DataSet(xtr, ytr, xte, yte, flip_default=False, classes=10, note=DIGITS_NOTE,
                       names=[str(k) for k in range(10)])
    if name in NATURAL:
        tr, te = _torchvision(name, root)
        return DataSet(tr.data, np.asarray(tr.targets), te.data, np.asarray(te.targets), flip_default=flip_default(name),
                       classes=len(tr.classes), names=list(tr.classes))
    p = Path(name)
    if p.suffix == ".npz" or (p.is_file() and not p.is_dir()):
        xtr, ytr, ktr = read_npz(p)
        if test is None:
            raise DataError(f"{name} is a training set; pass the evaluation set with --test PATH.npz")
        xte, yte, kte = read_npz(Path(test))
        if xte.shape[1:] != xtr.shape[1:]:
            raise DataError(f"{test}: test images are {xte.shape[1:]} but training images ({name}) are "
                            f"{xtr.shape[1:]} (H x W x C)")
        k = ktr if ktr is not None else kte
        k = _classes(name, ytr, test, yte, k)
        return DataSet(xtr, ytr, xte, yte, flip_default=flip_default(name), classes=k, names=npz_names(p, k))
    if p.is_dir():
        from .stream import folder_split, holdout_split  # one rule for the split, memory and stream alike
        split = folder_split(p, Path(test) if test else None)
        p, test = split.train, (str(split.test) if split.test else None)
        x, y, names = read_image_folder(p)
        if test is None:  # no test folder: a fixed 80 / 20 split
            a, b = holdout_split(len(x))
            return DataSet(x[a], y[a], x[b], y[b], flip_default=True,
                           classes=len(names), note=f"{p}: a fixed 80 / 20 split (numpy default_rng(0))",
                           names=names)
        xt, yt, tnames = read_image_folder(Path(test))
        if tnames != names:
            raise DataError(f"{test}: its class folders {tnames} differ from the training folder's {names}")
        if xt.shape[1:] != x.shape[1:]:
            raise DataError(f"{test}: test images are {xt.shape[1:]} but training images are {x.shape[1:]}")
        return DataSet(x, y, xt, yt, flip_default=True, classes=len(names), names=names)
    raise DataError(f"unknown data set '{name}'",
                    "use digits, cifar10, cifar100, a .npz file (keys x: uint8 NxHxWxC, y) or an image folder")


def load_test_set(name: str, root: str):
    """(x, y, classes or None) of a test set scored whole: a test split, an .npz, or every image of a folder."""
    p = Path(name)
    if name == "digits" or name in NATURAL:
        d = load_dataset(name, None, root)
        return d.x_test, d.y_test, d.classes
    if p.is_dir():
        from .stream import folder_split
        x, y, names = read_image_folder(folder_split(p, None).test or p)
        return x, y, len(names)
    if p.suffix == ".npz" or p.is_file():
        x, y, k = read_npz(p)
        return x, y, k
    raise DataError(f"unknown test set '{name}'", "use digits, cifar10, cifar100, an .npz file or an image folder")


def _torchvision(name: str, root: str):
    import socket

    import torchvision
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    socket.setdefaulttimeout(30)  # a machine without a network fails in seconds, not minutes
    try:
        return cls(root, train=True, download=True), cls(root, train=False, download=True)
    except Exception as e:
        raise DataError(f"could not download {name} into {root} ({type(e).__name__})",
                        f"without a network, pass a local copy: --data DIR with torchvision's {name} files, "
                        "or an .npz (keys x, y) with --test") from None


def _classes(train: str, ytr, test: str, yte, declared: int | None) -> int:
    """The class count: the file's `classes` key if it has one, else the largest training label + 1; a test
    label the training set cannot have is an error, not a silently larger output layer."""
    k = declared if declared is not None else int(ytr.max()) + 1
    for where, y in ((train, ytr), (test, yte)):
        if int(y.max()) >= k:
            raise DataError(f"{where}: label {int(y.max())} is out of range: the training set has {k} classes "
                            f"(labels 0..{k - 1})")
    return k


def read_npz(p: Path):
    """(x, y, classes or None) of an .npz with x (uint8 N x H x W x C) and y (N labels 0..K-1), validated."""
    import numpy as np
    if not p.exists():
        raise DataError(f"no such file: {p}")
    if p.is_dir():
        raise DataError(f"{p}: a folder, not an .npz file")
    try:
        z = np.load(p, allow_pickle=False)
        keys = set(z.files)
    except Exception as e:
        raise DataError(f"{p}: not a readable .npz file ({type(e).__name__})") from None
    missing = [k for k in ("x", "y") if k not in keys]
    if missing:
        raise DataError(f"{p}: no key {' or '.join(missing)} (an .npz data set needs x: uint8 N x H x W x C "
                        f"and y: N integer labels; it has {', '.join(sorted(keys)) or 'nothing'})")
    try:
        x, y = z["x"], z["y"]
        c = z["classes"] if "classes" in keys else None
    except Exception as e:
        raise DataError(f"{p}: not a readable .npz file ({type(e).__name__})") from None
    # `classes`: the class count K (a whole number) or the K class names (a 1-D array)
    if c is None:
        declared = None
    elif c.ndim == 0 and np.issubdtype(c.dtype, np.integer) and int(c) > 0:
        declared = int(c)
    elif c.ndim == 1 and len(c) > 0:
        declared = len(c)
    else:
        raise DataError(f"{p}: key classes is {c.dtype} of shape {c.shape}; it must be the class count K (a whole "
                        "number > 0) or the K class names")
    validate(x, y, str(p))
    if declared is not None and int(y.max()) >= declared:
        raise DataError(f"{p}: label {int(y.max())} is out of range for its {declared} classes")
    return x, y.astype(np.int64), declared


def npz_names(p: Path, classes: int) -> list[str] | None:
    """The class names an .npz holds (key classes: K names in label order), or None when it holds none."""
    import numpy as np
    try:
        c = np.load(p, allow_pickle=False)["classes"]
    except Exception:  # no key classes (read_npz has validated the file itself)
        return None
    if c.ndim != 1 or len(c) != classes or not (np.issubdtype(c.dtype, np.str_) or np.issubdtype(c.dtype, np.bytes_)):
        return None
    return [v.decode() if isinstance(v, bytes) else str(v) for v in c.tolist()]


def validate(x, y, where: str) -> None:
    """Images uint8 N x H x W x C with N > 0, labels N integers >= 0: else a one-line DataError naming `where`."""
    import numpy as np
    if x.dtype != np.uint8:
        nan = " holding NaN" if np.issubdtype(x.dtype, np.floating) and np.isnan(x).any() else ""
        raise DataError(f"{where}: images x are {x.dtype}{nan}, expected uint8 0..255 (N x H x W x C)")
    if x.ndim != 4:
        raise DataError(f"{where}: images x have shape {x.shape} ({x.ndim} dimensions), expected 4: N x H x W x C")
    if x.shape[1] <= 4 < min(x.shape[2], x.shape[3]):
        raise DataError(f"{where}: images x have shape {x.shape}, which looks channels-first; expected "
                        "N x H x W x C (HWC)")
    if len(x) == 0:
        raise DataError(f"{where}: the data set is empty (0 images)")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: labels y are {y.dtype} with shape {y.shape}, expected N integers")
    if len(y) != len(x):
        raise DataError(f"{where}: {len(x)} images but {len(y)} labels")
    if int(y.min()) < 0:
        raise DataError(f"{where}: label {int(y.min())} is negative (labels are 0..K-1)")


def read_image_folder(folder: Path):
    """(x, y, class names) of an ImageFolder: one sub-folder of same-size images per class."""
    import numpy as np
    from torchvision.datasets import ImageFolder
    if not folder.is_dir():
        raise DataError(f"no such folder: {folder}")
    try:
        ds = ImageFolder(str(folder))
    except FileNotFoundError:
        raise DataError(f"{folder}: no class folders with images in it (expected {folder}/CLASS/IMAGE.png, "
                        "one sub-folder per class)") from None
    if not len(ds):
        raise DataError(f"{folder}: no images found (expected one sub-folder of images per class)")
    imgs = []
    for path, _ in ds.samples:
        try:
            imgs.append(np.asarray(ds.loader(path).convert("RGB")))
        except Exception as e:
            raise DataError(f"{path}: not a readable image ({type(e).__name__})") from None
    if len({im.shape for im in imgs}) != 1:
        raise DataError(f"{folder}: images differ in size; resize them to one size first")
    return np.stack(imgs), np.asarray(ds.targets, dtype=np.int64), list(ds.classes)


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
