"""What the loop reads, whether a data set is held in memory or streamed: an epoch's batches from any step
on, and this rank's share of the evaluation set."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from . import stream as S


@dataclass
class Source:
    """A data set opened but, when it streams, not decoded: what the spec adapts to and the feed reads."""
    plan: S.DataPlan
    shape: tuple[int, int, int]  # C x H x W of the model's input: the images' (memory) or the spec's (stream)
    classes: int
    flip_default: bool
    note: str | None
    arrays: object = None  # data.DataSet (memory, or arrays that stream)
    sets: tuple | None = None  # (train, test) torchvision-style data sets of a streamed folder
    names: list[str] | None = None  # the class names in label order, where the data has them


def open_source(name: str, test: str | None, root: str, data_mode: str, spec_shape) -> Source:
    """Memory or stream (stream.choose_mode); a folder that streams is listed, never decoded whole."""
    from .data import DataError, flip_default, load_dataset
    if data_mode not in S.DATA_MODES:
        raise DataError(f"--data-mode {data_mode}: expected one of {', '.join(S.DATA_MODES)}")
    spec_shape = tuple(int(v) for v in spec_shape)
    if Path(name).is_dir():
        plan = S.choose_mode(data_mode, True, None, S.default_budget())
        if plan.mode == "stream":
            tr, te, names = S.open_folders(Path(name), Path(test) if test else None, spec_shape[0])
            note = None if not hasattr(tr, "indices") else f"{name}: a fixed 80 / 20 split (numpy default_rng(0))"
            return Source(plan, spec_shape, len(names), flip_default(name), note, sets=(tr, te), names=list(names))
    data = load_dataset(name, test, root)
    if not Path(name).is_dir():
        plan = S.choose_mode(data_mode, False, data.x_train.nbytes + data.x_test.nbytes, S.default_budget())
    x = data.x_train
    shape = (int(x.shape[3]), int(x.shape[1]), int(x.shape[2])) if plan.mode == "memory" else spec_shape
    return Source(plan, shape, data.classes, data.flip_default, data.note, arrays=data, names=data.names)


def make_feed(src: Source, cfg, *, device, rank: int, world: int, normalize: dict | None):
    """The feed of this rank; normalize: the run's saved statistics (a resumed run), else computed here."""
    if src.plan.mode == "memory":
        return MemoryFeed(src, cfg, device=device, rank=rank, world=world, normalize=normalize)
    if src.sets is not None:
        tr, te = src.sets
    else:
        mode = S.pil_mode(src.shape[0])
        d = src.arrays
        tr, te = S.ArrayImages(d.x_train, d.y_train, mode), S.ArrayImages(d.x_test, d.y_test, mode)
    workers = S.default_workers() if cfg.workers is None else cfg.workers
    data = S.stream(tr, te, src.classes, src.shape, batch_size=cfg.batch_size, world=world, rank=rank,
                    seed=cfg.seed, workers=workers, pin=device.type == "cuda", augment=cfg.augment, flip=cfg.flip,
                    stats=(normalize["mean"], normalize["std"]) if normalize else None)
    return StreamFeed(data, plan=src.plan, device=device, world=world, batch_size=cfg.batch_size)


class MemoryFeed:
    """The data set decoded whole onto the device (digits, CIFAR, .npz, small one-size folders): fastest."""

    def __init__(self, src: Source, cfg, *, device, rank: int, world: int, normalize: dict | None):
        import torch

        from .data import channel_stats, steps_per_epoch, to_images
        d = src.arrays
        self.plan, self.device, self.rank, self.world = src.plan, device, rank, world
        self.batch_size, self.seed, self.augment, self.flip = cfg.batch_size, cfg.seed, cfg.augment, cfg.flip
        self.shape, self.classes = src.shape, src.classes
        x, xt = to_images(d.x_train, device), to_images(d.x_test, device)
        if normalize:
            mean = torch.tensor(normalize["mean"], device=device).view(1, -1, 1, 1)
            std = torch.tensor(normalize["std"], device=device).view(1, -1, 1, 1)
        else:
            mean, std = channel_stats(x)
        self.x, self.xt = (x - mean) / std, (xt - mean) / std
        self.y, self.yt = torch.from_numpy(d.y_train).to(device), torch.from_numpy(d.y_test).to(device)
        self.mean, self.std = mean.flatten().tolist(), std.flatten().tolist()
        self.n_train, self.n_test = len(d.x_train), len(d.x_test)
        self.steps = steps_per_epoch(self.n_train, self.batch_size)
        self.pad = max(1, round(4 * self.shape[1] / 32))  # the paper's pad 4 at 32x32, scaled with the image

    def batches(self, epoch: int, start: int = 0) -> Iterator:
        """Epoch `epoch` from step `start` on: the skipped steps replay their draws, so the rest is exact."""
        import torch

        from .data import in_memory_batches
        gen = torch.Generator(device=self.device).manual_seed(self.seed * 100003 + epoch)
        it = in_memory_batches(self.x, self.y, batch_size=self.batch_size, gen=gen, rank=self.rank,
                               world=self.world, augment_on=self.augment, pad=self.pad, flip_ok=self.flip)
        for _ in range(start):
            next(it)
        return it

    def eval_batches(self, batch_size: int = 512) -> Iterator:
        """This rank's evaluation images: rank, rank + world, ... (every image on exactly one rank)."""
        import torch
        idx = torch.arange(self.rank, self.n_test, self.world, device=self.device)
        for s in range(0, len(idx), batch_size):
            yield self.xt[idx[s:s + batch_size]], self.yt[idx[s:s + batch_size]]


class StreamFeed:
    """Images decoded and augmented per batch by DataLoader workers; each rank reads its shard only."""

    def __init__(self, data: S.Stream, *, plan: S.DataPlan, device, world: int, batch_size: int):
        self.s, self.plan, self.device = data, plan, device
        self.shape, self.classes = data.shape, data.classes
        self.mean, self.std = data.mean, data.std
        self.n_train, self.n_test = data.n_train, data.n_test
        self.per_rank = batch_size // world
        self.steps = data.sampler.num_samples // self.per_rank

    def _to_device(self, batches) -> Iterator:
        from .data import DataError
        try:
            for x, y in batches:
                yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        except DataError as e:  # raised in a loader worker: its message carries the worker's traceback
            raise DataError(str(e).strip().splitlines()[-1].split("DataError: ")[-1]) from None

    def batches(self, epoch: int, start: int = 0) -> Iterator:
        self.s.sampler.set_position(epoch, start * self.per_rank)
        return self._to_device(self.s.train)

    def eval_batches(self) -> Iterator:
        return self._to_device(self.s.test)
