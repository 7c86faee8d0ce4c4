"""Streaming data: images decoded and augmented per batch by DataLoader workers, each rank reading its shard.

The in-memory path decodes a whole data set into one tensor: fast for CIFAR-sized sets, impossible for
ImageNet (about 190 GB as uint8 at 224 x 224). Here a torchvision-style data set (an ImageFolder, or any
Dataset returning (PIL image, label)) is read through `torch.utils.data.DataLoader`; training batches are
RandomResizedCrop + horizontal flip, evaluation batches Resize + CenterCrop, both at the spec's input size.

Exact resume: the order of a rank's samples is a function of (seed, epoch) alone (DistributedSampler) and
each sample's augmentation of (seed, epoch, index) alone, so a run restarted at step k of an epoch sees the
very batches an uninterrupted run sees, whatever the number of workers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from .recipes import DATA_MODES  # noqa: F401  (the feed checks --data-mode against it)

# channels the spec wants -> the PIL mode every image is converted to
PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}

# Evaluation resizes the shorter side to size / EVAL_CROP and takes the centre crop: 256 -> 224 for
# ImageNet, as in the torchvision classification reference (--val-resize-size 256 --val-crop-size 224).
EVAL_CROP = 224 / 256

# normalisation statistics are estimated from this many training images (evenly spaced, eval transform)
STATS_SAMPLE = 256



def _error(message: str, hint: str | None = None) -> Exception:
    from .data import DataError  # the one "bad data, exit 2" error of the training stage
    return DataError(message, hint)


# ------------------------------------------------------------------ decoding

def pil_mode(channels: int) -> str:
    """The PIL mode an image is converted to so that it has the spec's channel count."""
    if channels not in PIL_MODES:
        raise _error(f"the spec's input has {channels} channels; images can be read as 1 (grey), 3 (RGB) or 4 (RGBA)")
    return PIL_MODES[channels]


def to_mode(im, mode: str):
    """Any PIL image (grey, 16-bit grey, RGBA, palette, CMYK, ...) as `mode`, values on the 0..255 scale."""
    from PIL import Image
    if im.mode.startswith("I;16") or im.mode == "I":
        # 16-bit grey (PNG): scale 0..65535 to 0..255; PIL's own convert would clip at 255 instead
        a = np.asarray(im, dtype=np.float64) / 257.0
        im = Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "L")
    if im.mode == "P":  # a palette may carry transparency; expand it before dropping or keeping alpha
        im = im.convert("RGBA")
    return im if im.mode == mode else im.convert(mode)


def load_image(path: str, mode: str):
    """Open and fully decode one image file as `mode` (module-level so DataLoader workers can pickle it)."""
    from PIL import Image
    try:
        with open(path, "rb") as fh:
            im = Image.open(fh)
            im.load()
    except Exception as e:  # truncated, not an image, unreadable: name the file (mgdsl exits 2)
        raise _error(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
    return to_mode(im, mode)


class ImageLoader:
    """ImageFolder's `loader`: a picklable callable that reads a file as a fixed PIL mode."""

    def __init__(self, mode: str):
        self.mode = mode

    def __call__(self, path: str):
        return load_image(path, self.mode)


class ArrayImages(Dataset):
    """A uint8 N x H x W x C array (digits, CIFAR, .npz) as a torchvision-style data set of PIL images."""

    def __init__(self, x: np.ndarray, y: np.ndarray, mode: str):
        self.x, self.y, self.mode = x, y, mode
        self.targets = [int(t) for t in y]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        from PIL import Image
        a = self.x[i]
        im = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
        return to_mode(im, self.mode), self.targets[i]


# ------------------------------------------------------------------ folders

@dataclass(frozen=True)
class FolderSplit:
    """Where the training and evaluation images of an image folder are."""
    train: Path
    test: Path | None  # None: hold out 20% of `train` (holdout_split)


def folder_split(root: Path, test: Path | None) -> FolderSplit:
    """root/train + root/val (ImageNet) or root/test, an explicit --test folder, or one folder to split."""
    if test is not None:
        return FolderSplit(root, test)
    for held in ("val", "test"):
        if (root / "train").is_dir() and (root / held).is_dir():
            return FolderSplit(root / "train", root / held)
    return FolderSplit(root, None)


def holdout_split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed 80/20 split of n items (numpy default_rng(0)), the same for every run and rank."""
    idx = np.random.default_rng(0).permutation(n)
    cut = int(0.8 * n)
    return idx[:cut], idx[cut:]


def image_folder(root: Path, mode: str):
    """torchvision's ImageFolder reading every image as `mode`; only file names are read here."""
    from torchvision.datasets import ImageFolder
    if not root.is_dir():
        raise _error(f"no such folder: {root}")
    try:
        # a class folder without images still names a class: labels stay folder positions, and a split
        # that lacks some class (a tiny validation set) keeps the same labels as the training set
        ds = ImageFolder(str(root), loader=ImageLoader(mode), allow_empty=True)
    except (FileNotFoundError, RuntimeError):
        raise _error(f"{root}: no class folders with images in it (expected {root}/CLASS/IMAGE.png, one "
                     "sub-folder per class)") from None
    if not len(ds):
        raise _error(f"{root}: no images found (expected one sub-folder of images per class)")
    return ds


def _warn_empty(ds, root: Path) -> None:
    """Say which training class folders hold no images (their classes can never be predicted right)."""
    import sys
    empty = [c for i, c in enumerate(ds.classes) if i not in set(ds.targets)]
    if empty and os.environ.get("RANK", "0") == "0":
        print(f"mgdsl: warning: {len(empty)} of {len(ds.classes)} class folders in {root} hold no images "
              f"(e.g. {', '.join(empty[:3])}); their labels are kept", file=sys.stderr)


def open_folders(root: Path, test: Path | None, channels: int):
    """(train set, eval set, class names) of an image folder; the eval set must name the same classes."""
    from torch.utils.data import Subset
    split = folder_split(root, test)
    mode = pil_mode(channels)
    tr = image_folder(split.train, mode)
    _warn_empty(tr, split.train)
    if split.test is None:
        a, b = holdout_split(len(tr))
        return Subset(tr, a.tolist()), Subset(tr, b.tolist()), tr.classes
    te = image_folder(split.test, mode)
    if te.classes != tr.classes:
        missing = sorted(set(tr.classes) ^ set(te.classes))[:5]
        raise _error(f"{split.test} and {split.train} have different class folders (e.g. {', '.join(missing)})",
                     "labels are class-folder positions; both splits need the same class sub-folders")
    return tr, te, tr.classes


# ------------------------------------------------------------------ transforms

def _size(shape: Sequence[int]) -> tuple[int, int]:
    return int(shape[-2]), int(shape[-1])


def train_transform(shape: Sequence[int], mean: Sequence[float], std: Sequence[float], flip: bool = True):
    """RandomResizedCrop (+ horizontal flip) to the spec's H x W, then float and normalise."""
    from torchvision.transforms import v2
    steps = [v2.ToImage(), v2.RandomResizedCrop(_size(shape), antialias=True)]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])


def eval_transform(shape: Sequence[int], mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
    """Resize the shorter side to size / EVAL_CROP and centre-crop the spec's H x W (normalised if given)."""
    from torchvision.transforms import v2
    h, w = _size(shape)
    steps = [v2.ToImage(), v2.Resize(round(max(h, w) / EVAL_CROP), antialias=True), v2.CenterCrop((h, w)),
             v2.ToDtype(torch.float32, scale=True)]
    if mean is not None:
        steps.append(v2.Normalize(list(mean), list(std)))
    return v2.Compose(steps)


def estimate_stats(ds, shape: Sequence[int], k: int = STATS_SAMPLE) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the training images, from k evenly spaced ones (deterministic)."""
    t = eval_transform(shape)
    picks = np.unique(np.linspace(0, len(ds) - 1, min(k, len(ds))).round().astype(int))
    x = torch.stack([t(ds[int(i)][0]) for i in picks])
    return x.mean((0, 2, 3)).tolist(), x.std((0, 2, 3)).clamp_min(1e-6).tolist()


# ------------------------------------------------------------------ samplers

def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one sample in one epoch: independent of worker, rank and position."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0] >> 1)


class Augmented(Dataset):
    """Applies a transform to (image, label) under the sample's own seed; indexed by (index, seed) pairs."""

    def __init__(self, base, transform: Callable):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]):
        i, seed = key
        im, label = self.base[i]
        with torch.random.fork_rng(devices=[]):  # the caller's CPU RNG is left as it was
            torch.default_generator.manual_seed(seed)  # CPU only: a GPU's generators are not touched
            return self.transform(im), label


class ShardSampler(DistributedSampler):
    """This rank's shuffled, equal-length shard of an epoch (DistributedSampler, drop_last), resumable mid-epoch.

    Yields (index, augmentation seed) pairs for `Augmented`. `start` samples of the shard are skipped: a run
    resumed after k steps of batch b sets start = k * b.
    """

    def __init__(self, n: int, world: int, rank: int, seed: int):
        super().__init__(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.start = 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self):
        for i in list(super().__iter__())[self.start:]:
            yield i, sample_seed(self.seed, self.epoch, i)

    def __len__(self) -> int:
        return self.num_samples - self.start


class EvalShard(Sampler):
    """Indices rank, rank + world, ...: disjoint across ranks and covering every sample exactly once."""

    def __init__(self, n: int, world: int, rank: int):
        self.n, self.world, self.rank = n, world, rank

    def __iter__(self):
        return ((i, 0) for i in range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


# ------------------------------------------------------------------ loaders

def default_workers() -> int:
    """Loader processes per rank: the CPUs this rank may use (shared with local ranks) less one, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    per_rank = cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(8, per_rank - 1))


def _worker_init(worker_id: int) -> None:
    """Loader workers ignore SIGTERM and Ctrl-C: a cluster signals every process of a job, and the main
    process must finish its step and write its checkpoint with its workers still alive (they exit with it)."""
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(ds: Dataset, sampler: Sampler, batch_size: int, workers: int, pin: bool, drop_last: bool):
    """A DataLoader with worker processes kept across epochs and pinned batches when they go to a GPU."""
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=pin,
                      persistent_workers=workers > 0, drop_last=drop_last, worker_init_fn=_worker_init,
                      prefetch_factor=4 if workers > 0 else None)


@dataclass
class Stream:
    """The streamed training and evaluation data of one rank."""
    train: DataLoader
    test: DataLoader
    sampler: ShardSampler  # set_position(epoch, start) before each epoch
    shape: tuple[int, int, int]  # C x H x W: the spec's input
    classes: int
    n_train: int
    n_test: int
    mean: list[float]
    std: list[float]


def stream(train_set, test_set, classes: int, shape: Sequence[int], *, batch_size: int, world: int, rank: int,
           seed: int, workers: int, pin: bool, augment: bool = True, flip: bool = True,
           stats: tuple[list[float], list[float]] | None = None) -> Stream:
    """Loaders for this rank: training batches of batch_size // world, evaluation sharded without repeats.

    Without augment, training images are resized and centre-cropped like evaluation images. stats: the
    normalisation (mean, std) saved with a run being resumed, else estimated here."""
    per_rank = batch_size // world
    if per_rank < 1 or batch_size % world:
        raise _error(f"--batch-size {batch_size} does not split evenly over {world} processes",
                     f"use a multiple of {world}")
    if len(train_set) < batch_size:
        raise _error(f"the training set has {len(train_set)} images, fewer than one batch of {batch_size}",
                     "use a smaller --batch-size")
    mean, std = stats if stats is not None else estimate_stats(train_set, shape)
    sampler = ShardSampler(len(train_set), world, rank, seed)
    t = train_transform(shape, mean, std, flip) if augment else eval_transform(shape, mean, std)
    train = make_loader(Augmented(train_set, t), sampler, per_rank,
                        workers, pin, drop_last=True)
    test = make_loader(Augmented(test_set, eval_transform(shape, mean, std)), EvalShard(len(test_set), world, rank),
                       per_rank, workers, pin, drop_last=False)
    return Stream(train, test, sampler, tuple(int(s) for s in shape), classes, len(train_set), len(test_set),
                  mean, std)


# ------------------------------------------------------------------ memory or stream

@dataclass(frozen=True)
class DataPlan:
    """How a data set is fed, and why (printed and saved with the run)."""
    mode: str  # "memory" or "stream"
    reason: str


def default_budget() -> int:
    """Bytes the in-memory path may hold: a quarter of the machine's physical memory."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def choose_mode(forced: str, is_folder: bool, decoded_bytes: int | None, budget: int) -> DataPlan:
    """memory for decoded arrays whose float32 copy fits the budget; stream for image folders and the rest.

    An image folder's decoded size is not known without opening every file, and decoding it whole is the
    cost streaming avoids, so folders stream unless the user forces memory (which needs one image size).
    """
    if forced != "auto":
        return DataPlan(forced, f"--data-mode {forced}")
    if is_folder:
        return DataPlan("stream", "an image folder is decoded per batch")
    need = 4 * int(decoded_bytes or 0)  # the in-memory path holds float32 copies
    if need <= budget:
        return DataPlan("memory", f"{need / 2**20:.0f} MiB as float32 fits the {budget / 2**20:.0f} MiB budget")
    return DataPlan("stream", f"{need / 2**20:.0f} MiB as float32 exceeds the {budget / 2**20:.0f} MiB budget")
