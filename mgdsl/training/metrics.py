"""Evaluation metrics (loss, top-1, top-5) summed per rank and all-reduced, so no sample counts twice."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch


@dataclass(frozen=True)
class Scores:
    """Mean cross-entropy and accuracies over every evaluated sample of every rank."""
    loss: float
    top1: float
    top5: float | None  # None when there are 5 classes or fewer: every label is then in the top 5
    n: int


def score_sums(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[summed loss, top-1 hits, top-5 hits, count] of one batch, in float64."""
    logits = logits.float()
    loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
    k = min(5, logits.shape[1])
    hits = logits.topk(k).indices == y[:, None]  # column j: the label is the (j+1)-th guess
    return torch.stack([loss, hits[:, 0].sum(), hits.any(1).sum(), loss.new_tensor(len(y))]).double()


def reduce_sums(sums: torch.Tensor, world: int) -> torch.Tensor:
    """Add the per-rank sums of all processes (a no-op for one process)."""
    if world > 1:
        import torch.distributed as dist
        dist.all_reduce(sums)
    return sums


def scores(sums: torch.Tensor, classes: int) -> Scores:
    loss, top1, top5, n = sums.tolist()
    d = max(n, 1.0)  # an empty set scores 0 over 0 samples, not a division by zero
    return Scores(loss / d, top1 / d, top5 / d if classes > 5 else None, int(n))


def sync_buffers(model: torch.nn.Module, world: int) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics differ per rank after DDP training)."""
    if world > 1:
        import torch.distributed as dist
        for b in model.buffers():
            dist.broadcast(b, 0)


def evaluate(model: torch.nn.Module, batches: Iterable, device: torch.device, amp: bool, classes: int,
             world: int = 1, tta: bool = False) -> Scores:
    """Scores of rank 0's `model` (the plain module, not DDP: shards may differ in length) over all ranks, from
    `batches` of (images, labels) already on `device` (the feeds put them there); with tta the logits are the mean over each image and its mirror (test-time augmentation)."""
    sync_buffers(model, world)
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=amp):
        for x, y in batches:
            out = model(x).float()
            if tta:
                out = (out + model(x.flip(3)).float()) / 2
            sums += score_sums(out, y)
    return scores(reduce_sums(sums, world), classes)
