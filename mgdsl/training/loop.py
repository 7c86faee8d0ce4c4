"""The training loop: one epoch over any iterable of batches, evaluation, and the run around them."""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import runs
from .data import DIGITS_NOTE, DataError
from .recipes import Config


class Diverged(FloatingPointError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""

    def __init__(self, message: str, checkpoint: Path):
        super().__init__(message)
        self.checkpoint = checkpoint


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during training; every file in the run folder is complete, last.pt holds the step
    the run stopped at. status: the exit status (faults.EXIT_STATUS: 130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(self, out: Path, status: int = 130):
        super().__init__(str(out))
        self.out = out
        self.status = status


@dataclass
class EpochStats:
    """Sums over one epoch's training batches (this process's share)."""
    loss_sum: object
    correct: object
    seen: int


def dist_env() -> tuple[int, int, int]:
    """(rank, world, local_rank) under torchrun, else (0, 1, 0)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def train_epoch(fwd, opt, batches, *, device, amp: bool, channels_last: bool, on_step=None,
                stats: EpochStats | None = None) -> EpochStats:
    """One pass over `batches` (an iterable of (images, labels) on the device): forward, loss, step.

    stats: the sums of the steps already taken this epoch (a resumed epoch); on_step(stats) after each step."""
    import torch
    fwd.train()
    if stats is None:
        stats = EpochStats(torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long), 0)
    for xb, yb in batches:
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, torch.bfloat16, enabled=amp):
            logits = fwd(xb)
            loss = torch.nn.functional.cross_entropy(logits.float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        stats.loss_sum += loss.detach() * len(yb)
        stats.correct += (logits.detach().argmax(1) == yb).sum()
        stats.seen += len(yb)
        if on_step:
            on_step(stats)
    return stats


def evaluate(model, x, y, batch_size: int, amp: bool) -> tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy) of model on normalised images x with labels y."""
    import torch
    model.eval()
    correct, loss = 0, 0.0
    with torch.no_grad(), torch.autocast(x.device.type, torch.bfloat16, enabled=amp):
        for s in range(0, len(x), batch_size):
            out = model(x[s:s + batch_size]).float()
            loss += torch.nn.functional.cross_entropy(out, y[s:s + batch_size], reduction="sum").item()
            correct += (out.argmax(1) == y[s:s + batch_size]).sum().item()
    return loss / len(x), correct / len(x)


def fit(ir, cfg: Config, *, resume: bool = False, sync_bn: bool = False, callback=None) -> dict:
    """Train ir's model as cfg says (continuing the run in cfg.out if resume); return the summary."""
    import numpy as np
    import torch

    from . import adapt

    rank, world, local_rank = dist_env()
    if cfg.device == "auto":
        cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise DataError("--device cuda but no CUDA device is available", "use --device cpu")
    if world > 1:
        import torch.distributed as dist
        backend = "nccl" if cfg.device == "cuda" else "gloo"
        dist.init_process_group(backend)
        if cfg.device == "cuda":
            torch.cuda.set_device(local_rank)
    device = torch.device(cfg.device, local_rank) if cfg.device == "cuda" else torch.device("cpu")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    from . import faults
    from .feed import open_feed
    from .metrics import evaluate as evaluate_sharded
    from .recipes import lr_factor
    feed = open_feed(dataset=cfg.dataset, test=cfg.test, data_root=cfg.data, data_mode=cfg.data_mode,
                     spec_shape=ir.input_ty.shape, batch_size=cfg.batch_size, seed=cfg.seed, augment=cfg.augment,
                     workers=cfg.workers, device=device, rank=rank, world=world)
    classes = feed.classes
    ir = adapt(ir, feed.shape, classes)

    from ..lowering import lower_ir
    model = lower_ir(ir).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in model.parameters())

    steps = feed.steps
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    # one scheduler step per optimizer step: warm-up is per step, decay at epoch milestones (recipes.lr_factor)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_factor(cfg, k / steps))
    out = Path(cfg.out)
    start_epoch, start_step, partial = 0, 0, None
    if resume:
        ck = torch.load(out / "last.pt", map_location="cpu", weights_only=False)  # RNG states stay CPU tensors
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        faults.restore_rng(ck["rng"])
        start_epoch, start_step, partial = ck["epoch"], ck.get("step", 0), ck.get("epoch_stats")
        if rank == 0:
            print(f"mgdsl: resuming {out} at epoch {start_epoch + 1}, step {start_step}", file=sys.stderr)
    net = model
    if world > 1 and sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if cfg.device == "cuda" else None)
    fwd = torch.compile(net) if cfg.compile else net
    lead = rank == 0
    if lead:
        import hashlib
        out.mkdir(parents=True, exist_ok=True)
        spec_text = Path(ir.path).read_text()
        runs.write_json({
            "config": asdict(cfg), "spec": ir.path, "spec_sha256": hashlib.sha256(spec_text.encode()).hexdigest(),
            "params_override": ir.params, "input_shape": list(ir.input_ty.shape), "classes": classes,
            "params": params, "normalize": {"mean": feed.mean, "std": feed.std},
            "data_plan": {"mode": feed.plan.mode, "reason": feed.plan.reason, "train_images": feed.n_train,
                          "test_images": feed.n_test},
            "world_size": world, "job": faults.job_id(), "versions": runs.versions(),
            "data_note": DIGITS_NOTE if cfg.dataset == "digits" else None}, out / "config.json")
    metrics_path = out / "metrics.jsonl"
    metrics = runs.read_metrics(metrics_path)[:start_epoch] if resume else []
    if lead:
        runs.write_metrics(metrics, metrics_path)

    def checkpoint(epoch: int, step: int, stats: EpochStats | None) -> None:
        """last.pt: all a run needs to continue at step `step` of epoch `epoch` exactly (atomic)."""
        part = None
        if stats is not None:  # the epoch's sums so far, over all ranks (rank 0 carries them on resume)
            part = torch.stack([stats.loss_sum.double(), stats.correct.double(),
                                torch.tensor(float(stats.seen), dtype=torch.float64, device=device)])
            if world > 1:
                import torch.distributed as dist
                dist.all_reduce(part)
            part = part.cpu()
        if lead:
            runs.save_torch({"model": model.state_dict(), "optimizer": opt.state_dict(),
                             "scheduler": sched.state_dict(), "epoch": epoch, "step": step, "epoch_stats": part,
                             "rng": faults.rng_states(feed.generator)}, out / "last.pt")

    tty = sys.stderr.isatty() and lead
    t_run = time.time()
    try:
        with faults.StopRequest() as stop:
            for epoch in range(start_epoch, cfg.epochs):
                first = epoch == start_epoch
                step = start_step if first else 0
                batches = feed.batches(epoch, step)
                stats = None
                if first and step > 0 and feed.generator is not None and ck["rng"].get("data") is not None:
                    feed.generator.set_state(ck["rng"]["data"])  # mid-epoch: the memory path's crop/flip generator
                if first and partial is not None:
                    p = partial.to(device) if lead else torch.zeros(3, dtype=torch.float64, device=device)
                    stats = EpochStats(p[0].float(), p[1].long(), int(p[2].item()))
                t0 = time.time()
                bar = None
                if tty:
                    from tqdm import tqdm
                    bar = tqdm(total=steps, initial=step, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                               file=sys.stderr)

                def on_step(st: EpochStats) -> None:
                    nonlocal step
                    step += 1
                    sched.step()
                    if bar:
                        bar.update(1)
                    saved = cfg.checkpoint_interval > 0 and step % cfg.checkpoint_interval == 0
                    if saved:
                        checkpoint(epoch, step, st)
                    faults.inject_fault(rank, epoch, step)
                    if stop.agreed(world, device):
                        if not saved:
                            checkpoint(epoch, step, st)
                        raise Interrupted(out, stop.exit_status)

                st = train_epoch(fwd, opt, batches, device=device, amp=cfg.amp, channels_last=cfg.channels_last,
                                 on_step=on_step, stats=stats)
                if bar:
                    bar.close()
                loss_sum, correct, seen = st.loss_sum, st.correct, st.seen
                if world > 1:  # the logged epoch metrics are over the global batch (one sync per epoch)
                    import torch.distributed as dist
                    tot = torch.stack([loss_sum.double(), correct.double(),
                                       torch.tensor(float(seen), dtype=torch.float64, device=device)])
                    dist.all_reduce(tot)
                    loss_sum, correct, seen = tot[0], tot[1], int(tot[2].item())
                train_loss = loss_sum.item() / seen
                if not math.isfinite(train_loss):
                    raise Diverged(f"epoch {epoch + 1}: the training loss is {train_loss}", out / "last.pt")
                lr = sched.base_lrs[0] * lr_factor(cfg, epoch)  # the lr the epoch started with
                secs = time.time() - t0
                sc = evaluate_sharded(model, feed.eval_batches(), device, cfg.amp, classes, world)
                if lead:
                    m = {"epoch": epoch + 1, "lr": lr,
                         "train_loss": train_loss, "train_acc": float(correct.item()) / seen, "test_loss": sc.loss,
                         "test_acc": sc.top1, "test_top5": sc.top5, "seconds": secs, "images_per_s": seen / secs}
                    metrics.append(m)
                    runs.write_metrics(metrics, metrics_path)
                    runs.save_torch(model.state_dict(), out / "model.pt")
                    top5 = f" / top-5 {sc.top5:.4f}" if sc.top5 is not None else ""
                    print(f"epoch {epoch + 1:3d}  lr {m['lr']:.4g}  train {train_loss:.4f} / {m['train_acc']:.4f}  "
                          f"test {sc.loss:.4f} / {sc.top1:.4f}{top5}  {secs:.1f}s  {m['images_per_s']:.0f} img/s",
                          file=sys.stderr)
                checkpoint(epoch + 1, 0, None)  # after metrics.jsonl: a resume never skips an epoch's line
    except Interrupted:
        if lead:
            runs.remove_partial_writes(out)
        raise
    except KeyboardInterrupt:
        if lead:
            runs.remove_partial_writes(out)
        raise Interrupted(out) from None
    summary = None
    if lead and metrics:
        runs.plot(metrics, out / "curves.png")
        summary = {"name": ir.name, "dataset": cfg.dataset, "params": params, "epochs": cfg.epochs,
                   "final_test_acc": metrics[-1]["test_acc"], "best_test_acc": max(m["test_acc"] for m in metrics),
                   "seconds": sum(m["seconds"] for m in metrics), "wall_seconds": time.time() - t_run,
                   "device": str(device)}
        runs.write_json(summary, out / "summary.json")
    if world > 1:
        import torch.distributed as dist
        dist.destroy_process_group()
    return summary
