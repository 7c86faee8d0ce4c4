"""The training loop: one epoch over any iterable of batches, evaluation, and the run around them."""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import runs
from .data import DataError
from .progress import Progress
from .recipes import Config, lr_at


class Diverged(FloatingPointError):
    """The training loss became NaN or infinite; the last good checkpoint is kept (None: no epoch finished)."""

    def __init__(self, message: str, checkpoint: Path | None):
        super().__init__(message)
        self.checkpoint = checkpoint


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during training; every file in the run folder is complete, last.pt holds the step the
    run stopped at. status: the exit status (faults.EXIT_STATUS: 130 for Ctrl-C, 143 for SIGTERM)."""

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


BACKEND = {"cuda": "nccl", "cpu": "gloo"}  # torch.distributed's backend for the devices a process trains on


def pick_device(kind: str, local_rank: int, cuda_available: bool):
    """--device auto|cpu|cuda as the torch.device this process trains on: auto is the GPU when there is one;
    under torchrun each process uses the GPU of its local rank."""
    import torch
    if kind == "auto":
        kind = "cuda" if cuda_available else "cpu"
    if kind == "cuda" and not cuda_available:
        raise DataError("--device cuda but no CUDA device is available", "use --device cpu")
    return torch.device("cuda", local_rank) if kind == "cuda" else torch.device("cpu")


def train_epoch(fwd, opt, batches, *, device, amp: bool, channels_last: bool, label_smoothing: float,
                lr_for_batch=None, progress: Progress | None = None, stats: EpochStats | None = None,
                on_step=None) -> EpochStats:
    """One pass over `batches` (an iterable of (images, labels) on the device): forward, loss, SGD step.
    lr_for_batch(i) sets the learning rate of the i-th of these batches (a per-batch schedule); stats: the
    sums of the steps this epoch already took (a run resumed mid-epoch); on_step(stats) after each step."""
    import torch
    fwd.train()
    if stats is None:
        stats = EpochStats(torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long), 0)
    for i, (xb, yb) in enumerate(batches):
        lr = opt.param_groups[0]["lr"]
        if lr_for_batch is not None:
            lr = lr_for_batch(i)
            for g in opt.param_groups:
                g["lr"] = lr
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, torch.bfloat16, enabled=amp):
            logits = fwd(xb)
            loss = torch.nn.functional.cross_entropy(logits.float(), yb, label_smoothing=label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        stats.loss_sum += loss.detach() * len(yb)
        stats.correct += (logits.detach().argmax(1) == yb).sum()
        stats.seen += len(yb)
        if progress is not None:
            progress.batch(loss.item() if progress.wants_loss() else None, lr)
        if on_step is not None:
            on_step(stats)
    return stats


def standardise(x, normalize: dict):
    """Images in [0, 1] to the training set's per-channel standard scores (the statistics saved with the run)."""
    mean = x.new_tensor(normalize["mean"]).view(1, -1, 1, 1)  # x's dtype and device
    std = x.new_tensor(normalize["std"]).view(1, -1, 1, 1)
    return (x - mean) / std


def fit(ir, cfg: Config, data, record: dict, *, resume: bool = False, callback=None) -> dict | None:
    """Train ir's model on data as the resolved cfg says, writing the run folder cfg.out (continuing the run in it
    if resume); record holds what config.json keeps besides cfg. Returns the summary (None on ranks other
    than 0)."""
    import torch

    rank, world, local_rank = dist_env()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device, local_rank, torch.cuda.is_available())
    if world > 1 and cfg.sync_bn and device.type != "cuda":
        raise DataError("--sync-bn needs CUDA devices: torch's SyncBatchNorm runs on GPUs only",
                        "drop --sync-bn on CPU (each process then normalises over its own share of the batch)")
    if world > 1:
        import torch.distributed as dist
        from .faults import attempt_store
        dist.init_process_group(BACKEND[device.type], store=attempt_store(), rank=rank, world_size=world)
        if device.type == "cuda":
            torch.cuda.set_device(device)
    if cfg.batch_size % world:
        raise DataError(f"--batch-size {cfg.batch_size} does not split over {world} processes")
    torch.manual_seed(cfg.seed)  # every random draw of training is torch's (numpy's global generator is not used)

    from ..lowering import lower_ir
    model = lower_ir(ir).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in model.parameters())

    from . import faults
    from .feed import make_feed
    from .metrics import evaluate as evaluate_sharded
    feed = make_feed(data, cfg, device=device, rank=rank, world=world, normalize=record.get("normalize"))
    record["normalize"] = {"mean": feed.mean, "std": feed.std}
    record["data_plan"] = {"mode": feed.plan.mode, "reason": feed.plan.reason, "train_images": feed.n_train,
                           "test_images": feed.n_test}

    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                          weight_decay=cfg.weight_decay)
    out = Path(cfg.out)
    start_epoch, start_step, partial, best = 0, 0, None, None  # best: {"acc", "epoch"} once an epoch is scored
    if resume:
        ck = torch.load(out / "last.pt", map_location="cpu", weights_only=False)  # RNG states stay CPU tensors
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        faults.restore_rng(ck["rng"])
        start_epoch, start_step, partial = ck["epoch"], ck.get("step", 0), ck.get("epoch_stats")
        best = ck.get("best", best)
    net = model
    if world > 1 and cfg.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    fwd = torch.compile(net) if cfg.compile else net
    lead = rank == 0
    progress = Progress(enabled=lead, log_interval=cfg.log_interval,
                        tensorboard_dir=out / "tensorboard" if cfg.tensorboard else None)
    metrics_path = out / "metrics.jsonl"
    metrics = runs.read_metrics(metrics_path)[:start_epoch] if resume else []
    if lead:
        out.mkdir(parents=True, exist_ok=True)
        record.update(params=params, world_size=world, job=faults.job_id(), versions=runs.versions())
        runs.write_json({"config": asdict(cfg), **record}, out / "config.json")
        runs.write_metrics(metrics, metrics_path)
        at = f" at epoch {start_epoch + 1}, step {start_step}" if resume else ""
        progress.say(f"mgdsl: {'resuming' if resume else 'training'} {ir.name} ({params:,} parameters) on "
                     f"{cfg.train} for epochs {start_epoch + 1}..{cfg.epochs}{at}, recipe {cfg.recipe}, "
                     f"{feed.plan.mode} data ({feed.plan.reason}); writing {out}/")

    steps = feed.steps

    def checkpoint(epoch: int, step: int, stats: EpochStats | None) -> None:
        """last.pt: all a run needs to continue at step `step` of epoch `epoch` exactly (written atomically)."""
        part = None
        if stats is not None:  # the epoch's sums so far over all ranks (rank 0 carries them on resume)
            part = torch.stack([stats.loss_sum.double(), stats.correct.double(),
                                torch.tensor(float(stats.seen), dtype=torch.float64, device=device)])
            if world > 1:
                import torch.distributed as dist
                dist.all_reduce(part)
            part = part.cpu()
        if lead:
            runs.save_torch({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                             "step": step, "epoch_stats": part, "best": best,
                             "rng": faults.rng_states()}, out / "last.pt")

    t_run = time.time()
    stopped = False  # by the callback
    try:
        with faults.StopRequest() as stop_request:
            for epoch in range(start_epoch, cfg.epochs):
                first = epoch == start_epoch
                step = start_step if first else 0
                batches = feed.batches(epoch, step)  # mid-epoch: the skipped steps' draws are replayed
                stats = None
                if first and partial is not None:
                    p = partial.to(device) if lead else torch.zeros(3, dtype=torch.float64, device=device)
                    stats = EpochStats(p[0].float(), p[1].long(), int(p[2].item()))
                before = stats.seen if stats is not None else 0  # images trained before a resume (rank 0 holds them)
                t0 = time.time()
                progress.epoch_start(epoch + 1, cfg.epochs, steps)

                def on_step(st: EpochStats) -> None:
                    nonlocal step
                    step += 1
                    saved = cfg.checkpoint_interval > 0 and step % cfg.checkpoint_interval == 0
                    if saved:
                        checkpoint(epoch, step, st)
                    faults.inject_fault(rank, epoch, step)
                    if stop_request.agreed(world, device):  # SIGTERM / Ctrl-C: stop here, at a step boundary
                        if not saved:
                            checkpoint(epoch, step, st)
                        raise Interrupted(out, stop_request.exit_status)

                st = train_epoch(fwd, opt, batches, device=device, amp=cfg.amp, channels_last=cfg.channels_last,
                                 label_smoothing=cfg.label_smoothing,
                                 lr_for_batch=lambda i, e=epoch, k=step: lr_at(cfg, e * steps + k + i, steps),
                                 progress=progress, stats=stats, on_step=on_step)
                loss_sum, correct, seen = st.loss_sum, st.correct, st.seen
                if world > 1:  # the logged epoch metrics are over the global batch (one sync per epoch)
                    import torch.distributed as dist
                    tot = torch.stack([loss_sum.double(), correct.double(),
                                       torch.tensor(float(seen), dtype=torch.float64, device=device)])
                    dist.all_reduce(tot)
                    loss_sum, correct, seen = tot[0], tot[1], int(tot[2].item())
                train_loss = loss_sum.item() / seen
                if not math.isfinite(train_loss):
                    kept = out / "last.pt"
                    if lead and not kept.exists():  # no epoch finished: undo this run's first files, so the
                        kept = None                 # folder does not pose as a run that could be resumed
                        runs.remove_started_run(out)
                    raise Diverged(f"epoch {epoch + 1}: the training loss is {train_loss}", kept)
                secs = time.time() - t0
                sc = evaluate_sharded(model, feed.eval_batches(), device, cfg.amp, feed.classes, world, tta=cfg.tta)
                stop = False
                if lead:
                    m = {"epoch": epoch + 1, "lr": lr_at(cfg, epoch * steps, steps), "train_loss": train_loss,
                         "train_acc": float(correct.item()) / seen, "test_loss": sc.loss, "test_acc": sc.top1,
                         "test_top5": sc.top5, "seconds": secs, "images_per_s": (seen - before) / secs,
                         "train_images": seen}
                    is_best = best is None or sc.top1 > best["acc"]
                    if is_best:
                        best = {"acc": sc.top1, "epoch": epoch + 1}
                        runs.save_torch(model.state_dict(), out / "best.pt")
                    metrics.append(m)
                    runs.write_metrics(metrics, metrics_path)
                    runs.save_torch(model.state_dict(), out / "model.pt")
                    progress.epoch_end(m, is_best)
                    stop = bool(callback(dict(m))) if callback else False
                checkpoint(epoch + 1, 0, None)  # after metrics.jsonl: a resume never skips an epoch's line
                if world > 1:  # every process stops where the callback on rank 0 said
                    import torch.distributed as dist
                    flag = torch.tensor([float(stop)], device=device)
                    dist.broadcast(flag, 0)
                    stop = bool(flag.item())
                if stop:
                    stopped = True
                    break
    except Interrupted:
        progress.close()
        if lead:
            runs.remove_partial_writes(out)
        raise
    except KeyboardInterrupt:
        progress.close()
        if lead:
            runs.remove_partial_writes(out)
        raise Interrupted(out) from None
    finally:
        progress.close()
    summary = None
    if lead and metrics:
        runs.plot(metrics, out / "curves.png")
        from ..cost import macs
        summary = {"name": ir.name, "dataset": cfg.train, "params": params, "macs": macs(ir).total, "epochs": cfg.epochs,
                   "epochs_done": metrics[-1]["epoch"], "stopped_by_callback": stopped,
                   "final_test_acc": metrics[-1]["test_acc"], "best_test_acc": best["acc"],
                   "best_epoch": best["epoch"], "seconds": sum(m["seconds"] for m in metrics),
                   "wall_seconds": time.time() - t_run, "device": str(device), "out": str(out)}
        runs.write_json(summary, out / "summary.json")
        progress.say(f"mgdsl: done: test accuracy {100 * summary['final_test_acc']:.2f}% (model.pt), best "
                     f"{100 * best['acc']:.2f}% at epoch {best['epoch']} (best.pt); the run is in {out}/")
    if world > 1:  # every rank done with its collectives before any tears its connections down
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    return summary
