"""What the loop reads, whether a data set is held in memory or streamed: an epoch's batches from any step
on, and this rank's share of the evaluation set."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from . import stream as S


class MemoryFeed:
    """The data set decoded whole onto the device (digits, CIFAR, .npz, small one-size folders): fastest."""

    def __init__(self, arrays, *, plan: S.DataPlan, dataset: str, batch_size: int, seed: int, augment: bool,
                 device, rank: int, world: int):
        from .data import channel_stats, steps_per_epoch, to_images
        import torch
        xtr, ytr, xte, yte = arrays
        self.plan, self.device, self.rank, self.world = plan, device, rank, world
        self.batch_size, self.seed, self.augment = batch_size, seed, augment
        self.shape = (int(xtr.shape[3]), int(xtr.shape[1]), int(xtr.shape[2]))  # the spec adapts to the data
        self.classes = int(max(ytr.max(), yte.max()) + 1)
        x, xt = to_images(xtr, device), to_images(xte, device)
        mean, std = channel_stats(x)
        self.x, self.xt = (x - mean) / std, (xt - mean) / std
        self.y, self.yt = torch.from_numpy(ytr).to(device), torch.from_numpy(yte).to(device)
        self.mean, self.std = mean.flatten().tolist(), std.flatten().tolist()
        self.n_train, self.n_test = len(xtr), len(xte)
        self.steps = steps_per_epoch(self.n_train, batch_size)
        self.pad = max(1, round(4 * self.shape[1] / 32))  # the paper's pad 4 at 32x32, scaled with the image
        self.flip_ok = dataset != "digits"  # a mirrored digit is another symbol
        self.generator = None

    def batches(self, epoch: int, start: int = 0) -> Iterator:
        """Epoch `epoch` from step `start` on: the skipped steps replay their draws, so the rest is exact."""
        import torch
        from .data import in_memory_batches
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed * 100003 + epoch)
        it = in_memory_batches(self.x, self.y, batch_size=self.batch_size, gen=self.generator, rank=self.rank,
                               world=self.world, augment_on=self.augment, pad=self.pad, flip_ok=self.flip_ok)
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
        self.generator = None  # augmentation seeds are a function of (seed, epoch, index): no state to save

    def _to_device(self, batches) -> Iterator:
        for x, y in batches:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def batches(self, epoch: int, start: int = 0) -> Iterator:
        self.s.sampler.set_position(epoch, start * self.per_rank)
        return self._to_device(self.s.train)

    def eval_batches(self) -> Iterator:
        return self._to_device(self.s.test)


def open_feed(*, dataset: str, test: str | None, data_root: str, data_mode: str, spec_shape, batch_size: int,
              seed: int, augment: bool, workers: int | None, device, rank: int, world: int,
              budget: int | None = None):
    """Memory or stream (stream.choose_mode), then the feed; a folder that streams is never decoded whole."""
    from .data import DataError, load_dataset
    if data_mode not in S.DATA_MODES:
        raise DataError(f"--data-mode {data_mode}: expected one of {', '.join(S.DATA_MODES)}")
    budget = S.default_budget() if budget is None else budget
    workers = S.default_workers() if workers is None else workers
    pin = device.type == "cuda"
    folder = Path(dataset).is_dir()
    if folder:
        plan = S.choose_mode(data_mode, True, None, budget)
        if plan.mode == "stream":
            tr, te, names = S.open_folders(Path(dataset), Path(test) if test else None, int(spec_shape[0]))
            data = S.stream(tr, te, len(names), spec_shape, batch_size=batch_size, world=world, rank=rank, seed=seed,
                            workers=workers, pin=pin, augment=augment)
            return StreamFeed(data, plan=plan, device=device, world=world, batch_size=batch_size)
    arrays = load_dataset(dataset, test, data_root)
    if not folder:
        plan = S.choose_mode(data_mode, False, sum(a.nbytes for a in arrays[::2]), budget)
    if plan.mode == "memory":
        return MemoryFeed(arrays, plan=plan, dataset=dataset, batch_size=batch_size, seed=seed, augment=augment,
                          device=device, rank=rank, world=world)
    xtr, ytr, xte, yte = arrays
    mode = S.pil_mode(int(spec_shape[0]))
    classes = int(max(ytr.max(), yte.max()) + 1)
    data = S.stream(S.ArrayImages(xtr, ytr, mode), S.ArrayImages(xte, yte, mode), classes, spec_shape,
                    batch_size=batch_size, world=world, rank=rank, seed=seed, workers=workers, pin=pin,
                    augment=augment, flip=dataset != "digits")
    return StreamFeed(data, plan=plan, device=device, world=world, batch_size=batch_size)
