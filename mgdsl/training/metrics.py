"""Evaluation metrics (loss, top-1, top-5, the confusion matrix) summed per rank and all-reduced, so no sample
counts twice."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

import torch


@dataclass(frozen=True)
class Scores:
    """Mean cross-entropy and accuracies over every evaluated sample of every rank."""
    loss: float
    top1: float
    top5: float | None  # None when there are 5 classes or fewer: every label is then in the top 5
    n: int
    # confusion[i][j]: images of class i the model put in class j (asked for only; its diagonal sums to top1 * n)
    confusion: list[list[int]] | None = None


def guesses(logits: torch.Tensor) -> torch.Tensor:
    """The top min(5, classes) classes of each row, best first: top-1, top-5 and the confusion matrix all read
    these, so a tie between two logits is broken the same way for each."""
    return logits.float().topk(min(5, logits.shape[1])).indices


def score_sums(logits: torch.Tensor, y: torch.Tensor, top: torch.Tensor | None = None) -> torch.Tensor:
    """[summed loss, top-1 hits, top-5 hits, count] of one batch, in float64 (top: guesses(logits) if known)."""
    logits = logits.float()
    loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
    hits = (guesses(logits) if top is None else top) == y[:, None]  # column j: the label is the (j+1)-th guess
    return torch.stack([loss, hits[:, 0].sum(), hits.any(1).sum(), loss.new_tensor(len(y))]).double()


def confusion_counts(top1: torch.Tensor, y: torch.Tensor, classes: int) -> torch.Tensor:
    """The batch's classes x classes counts (row: the label, column: the first guess), flat, in float64."""
    return torch.bincount(y * classes + top1, minlength=classes * classes).double()


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
             world: int = 1, tta: bool = False, confusion: bool = False) -> Scores:
    """Scores of rank 0's `model` (the plain module, not DDP: shards may differ in length) over all ranks, from
    `batches` of (images, labels) already on `device` (the feeds put them there); with tta the logits are the mean over each image and its mirror (test-time augmentation).
    confusion: also count the confusion matrix (`mgdsl eval`; training's epochs do not need it)."""
    sync_buffers(model, world)
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    cm = torch.zeros(classes * classes if confusion else 0, dtype=torch.float64, device=device)
    with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=amp):
        for x, y in batches:
            out = model(x).float()
            if tta:
                out = (out + model(x.flip(3)).float()) / 2
            top = guesses(out)
            sums += score_sums(out, y, top)
            if confusion:
                cm += confusion_counts(top[:, 0], y, classes)
    sc = scores(reduce_sums(sums, world), classes)
    if not confusion:
        return sc
    counts = reduce_sums(cm, world).round().long().view(classes, classes)
    return replace(sc, confusion=counts.tolist())
