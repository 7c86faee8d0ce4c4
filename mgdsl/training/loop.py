"""The training loop: one epoch over any iterable of batches, evaluation, and the run around them."""
from __future__ import annotations

import itertools
import math
import os
import time
from dataclasses import asdict, dataclass, field
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


@dataclass
class Session:
    """One process's training as _setup builds it: what stays fixed while the epochs run."""
    cfg: Config
    ir: object
    out: Path
    rank: int
    world: int
    device: object
    model: object  # the module whose state_dict the run folder saves (SyncBN-converted under --sync-bn)
    opt: object
    feed: object
    params: int
    t_start: float  # when this session began: wall_seconds_this_session counts from here
    fwd: object = None  # what the steps call: the model, in DDP and/or torch.compile (_parallelise)
    progress: Progress | None = None

    @property
    def lead(self) -> bool:
        """Rank 0: the one process that writes the run folder and reports."""
        return self.rank == 0


@dataclass
class Position:
    """Where the run stands: the epoch and step to continue at, and what the epochs before them left."""
    epoch: int = 0
    step: int = 0
    partial: object = None  # a resumed epoch's sums so far (float64 [loss, correct, images], all ranks)
    best: dict | None = None  # {"acc", "epoch"} once an epoch is scored
    wall_before: float | None = 0.0  # wall seconds of the earlier sessions (None: an older version did not keep them)
    metrics: list = field(default_factory=list)  # metrics.jsonl's lines of the finished epochs


def fit(ir, cfg: Config, data, record: dict, *, resume: bool = False, callback=None) -> dict | None:
    """Train ir's model on data as the resolved cfg says, writing the run folder cfg.out (continuing the run in it
    if resume); record holds what config.json keeps besides cfg. Returns the summary (None on ranks other
    than 0)."""
    from . import faults
    from .metrics import evaluate

    s = _setup(ir, cfg, data, record)  # threads, device, process group, model, data feed, optimizer
    pos = _restore(s) if resume else Position()  # last.pt: weights, optimizer, RNG, position, best epoch
    _parallelise(s)  # SyncBN, DDP and torch.compile around the restored model
    _open_run_folder(s, record, pos, resume)  # config.json, metrics.jsonl, the progress report
    steps, stopped = s.feed.steps, False
    try:
        with faults.StopRequest() as stop_request:
            for epoch in range(pos.epoch, cfg.epochs):
                step = pos.step if epoch == pos.epoch else 0  # mid-epoch: the skipped steps' draws are replayed
                stats = _resumed_sums(s, pos.partial) if epoch == pos.epoch else None
                before = stats.seen if stats is not None else 0  # images trained before a resume (rank 0 holds them)
                taken = itertools.count(step + 1)  # each step's number in its epoch, as it finishes
                t0 = time.time()
                s.progress.epoch_start(epoch + 1, cfg.epochs, steps, done=step)
                stats = train_epoch(s.fwd, s.opt, s.feed.batches(epoch, step), device=s.device, amp=cfg.amp,
                                    channels_last=cfg.channels_last, label_smoothing=cfg.label_smoothing,
                                    lr_for_batch=lambda i, e=epoch, k=step: lr_at(cfg, e * steps + k + i, steps),
                                    progress=s.progress, stats=stats,
                                    on_step=lambda st, e=epoch: _after_step(s, pos, e, next(taken), st, stop_request))
                loss_sum, correct, seen = global_sums(stats, s.world, s.device).tolist()
                _stop_if_diverged(s, epoch, loss_sum / seen)
                train_seconds = time.time() - t0
                sc = evaluate(s.model, s.feed.eval_batches(), s.device, cfg.amp, s.feed.classes, s.world, tta=cfg.tta)
                m = {"epoch": epoch + 1, "lr_start": lr_at(cfg, epoch * steps, steps),
                     "lr_end": lr_at(cfg, epoch * steps + steps - 1, steps), "train_loss": loss_sum / seen,
                     "train_acc": correct / seen, "test_loss": sc.loss, "test_acc": sc.top1, "test_top5": sc.top5,
                     "train_seconds": train_seconds, "eval_seconds": time.time() - t0 - train_seconds,
                     "images_per_s": (seen - before) / train_seconds, "train_images": int(seen)}
                if _end_epoch(s, pos, m, callback):
                    stopped = True
                    break
    except Interrupted:
        _close_after_interrupt(s)
        raise
    except KeyboardInterrupt:
        _close_after_interrupt(s)
        raise Interrupted(s.out) from None
    finally:
        s.progress.close()
    summary = _finish(s, pos, stopped) if s.lead and pos.metrics else None
    if s.world > 1:  # every rank done with its collectives before any tears its connections down
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    return summary


def _setup(ir, cfg: Config, data, record: dict) -> Session:
    """This process's device and process group, the seeded model, the data feed and the optimizer; the feed's
    normalisation and plan go into record (config.json)."""
    import torch

    from ..lowering import lower_ir
    from .feed import make_feed
    t_start = time.time()
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
    model = lower_ir(ir).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    feed = make_feed(data, cfg, device=device, rank=rank, world=world, normalize=record.get("normalize"))
    record["normalize"] = {"mean": feed.mean, "std": feed.std}
    record["data_plan"] = {"mode": feed.plan.mode, "reason": feed.plan.reason, "train_images": feed.n_train,
                           "test_images": feed.n_test}
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                          weight_decay=cfg.weight_decay)
    return Session(cfg, ir, Path(cfg.out), rank, world, device, model, opt, feed,
                   sum(p.numel() for p in model.parameters()), t_start)


def _restore(s: Session) -> Position:
    """Continue from last.pt: the weights, the optimizer, every RNG, the position, the best epoch so far."""
    import torch

    from . import faults
    ck = torch.load(s.out / "last.pt", map_location="cpu", weights_only=False)  # RNG states stay CPU tensors
    s.model.load_state_dict(ck["model"])
    s.opt.load_state_dict(ck["optimizer"])
    faults.restore_rng(ck["rng"])
    return Position(ck["epoch"], ck.get("step", 0), ck.get("epoch_stats"), ck.get("best"),
                    ck.get("wall_seconds"),  # absent in checkpoints of older versions: the total is unknown
                    runs.read_metrics(s.out / "metrics.jsonl")[:ck["epoch"]])


def _parallelise(s: Session) -> None:
    """SyncBatchNorm (--sync-bn), DistributedDataParallel (under torchrun) and torch.compile (--compile)."""
    import torch
    net = s.model
    if s.world > 1 and s.cfg.sync_bn:
        s.model = net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(s.model)
    if s.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            s.model, device_ids=[s.device] if s.device.type == "cuda" else None)
    s.fwd = torch.compile(net) if s.cfg.compile else net


def _open_run_folder(s: Session, record: dict, pos: Position, resume: bool) -> None:
    """The progress report, and on rank 0 config.json, metrics.jsonl (the epochs kept) and the opening line."""
    from . import faults
    s.progress = Progress(enabled=s.lead, log_interval=s.cfg.log_interval,
                          tensorboard_dir=s.out / "tensorboard" if s.cfg.tensorboard else None)
    if not s.lead:
        return
    s.out.mkdir(parents=True, exist_ok=True)
    record.update(params=s.params, world_size=s.world, job=faults.job_id(), versions=runs.versions())
    runs.write_json({"config": asdict(s.cfg), **record}, s.out / "config.json")
    runs.write_metrics(pos.metrics, s.out / "metrics.jsonl")
    cfg, plan = s.cfg, s.feed.plan
    at = f" at epoch {pos.epoch + 1}, step {pos.step}" if resume else ""
    s.progress.say(f"mgdsl: {'resuming' if resume else 'training'} {s.ir.name} ({s.params:,} parameters) on "
                   f"{cfg.train} for epochs {pos.epoch + 1}..{cfg.epochs}{at}, recipe {cfg.recipe}, "
                   f"{plan.mode} data ({plan.reason}); writing {s.out}/")


def global_sums(stats: EpochStats, world: int, device):
    """[loss sum, correct, images] of an epoch's steps so far, float64, added over every process (one all-reduce):
    what an epoch's logged metrics and a mid-epoch checkpoint hold."""
    import torch

    from .metrics import reduce_sums
    return reduce_sums(torch.stack([stats.loss_sum.double(), stats.correct.double(),
                                    torch.tensor(float(stats.seen), dtype=torch.float64, device=device)]), world)


def _resumed_sums(s: Session, partial) -> EpochStats | None:
    """The sums a resumed epoch's earlier steps left (rank 0 carries them; the others start from zero)."""
    import torch
    if partial is None:
        return None
    p = partial.to(s.device) if s.lead else torch.zeros(3, dtype=torch.float64, device=s.device)
    return EpochStats(p[0].float(), p[1].long(), int(p[2].item()))


def _checkpoint(s: Session, pos: Position, epoch: int, step: int, stats: EpochStats | None) -> None:
    """last.pt: all a run needs to continue at step `step` of epoch `epoch` exactly (written atomically)."""
    from . import faults
    part = global_sums(stats, s.world, s.device).cpu() if stats is not None else None  # every rank takes part
    if s.lead:
        runs.save_torch({"model": s.model.state_dict(), "optimizer": s.opt.state_dict(), "epoch": epoch,
                         "step": step, "epoch_stats": part, "best": pos.best, "rng": faults.rng_states(),
                         "wall_seconds": _wall_total(s, pos)}, s.out / "last.pt")


def _wall_total(s: Session, pos: Position) -> float | None:
    """Wall seconds of every session of the run so far (None when an older version did not keep them)."""
    return None if pos.wall_before is None else pos.wall_before + time.time() - s.t_start


def _after_step(s: Session, pos: Position, epoch: int, step: int, stats: EpochStats, stop_request) -> None:
    """After step `step` of an epoch: a checkpoint every --checkpoint-interval steps, the fault drill's signal,
    and a stop here, at a step boundary, when SIGTERM or Ctrl-C reached any process."""
    from . import faults
    saved = s.cfg.checkpoint_interval > 0 and step % s.cfg.checkpoint_interval == 0
    if saved:
        _checkpoint(s, pos, epoch, step, stats)
    faults.inject_fault(s.rank, epoch, step)
    if stop_request.agreed(s.world, s.device):
        if not saved:
            _checkpoint(s, pos, epoch, step, stats)
        raise Interrupted(s.out, stop_request.exit_status)


def _stop_if_diverged(s: Session, epoch: int, train_loss: float) -> None:
    """A NaN or infinite training loss stops the run; with no epoch finished the run's first files go, so the
    folder does not pose as a run that could be resumed."""
    if math.isfinite(train_loss):
        return
    kept = s.out / "last.pt"
    if s.lead and not kept.exists():
        kept = None
        runs.remove_started_run(s.out)
    raise Diverged(f"epoch {epoch + 1}: the training loss is {train_loss}", kept)


def _end_epoch(s: Session, pos: Position, m: dict, callback) -> bool:
    """The epoch's line in metrics.jsonl, model.pt, best.pt if it is the best so far, its report, the callback,
    then last.pt; returns whether to stop (rank 0's callback decides for every process)."""
    import torch
    stop = False
    if s.lead:
        is_best = pos.best is None or m["test_acc"] > pos.best["acc"]
        if is_best:
            pos.best = {"acc": m["test_acc"], "epoch": m["epoch"]}
            runs.save_torch(s.model.state_dict(), s.out / "best.pt")
        pos.metrics.append(m)
        runs.write_metrics(pos.metrics, s.out / "metrics.jsonl")
        runs.save_torch(s.model.state_dict(), s.out / "model.pt")
        s.progress.epoch_end(m, is_best)
        stop = bool(callback(dict(m))) if callback else False
    _checkpoint(s, pos, m["epoch"], 0, None)  # after metrics.jsonl: a resume never skips an epoch's line
    if s.world > 1:  # every process stops where the callback on rank 0 said
        import torch.distributed as dist
        flag = torch.tensor([float(stop)], device=s.device)
        dist.broadcast(flag, 0)
        stop = bool(flag.item())
    return stop


def _close_after_interrupt(s: Session) -> None:
    """Ctrl-C or SIGTERM: the report closed, and no half-written file left (the complete ones stay)."""
    s.progress.close()
    if s.lead:
        runs.remove_partial_writes(s.out)


def _finish(s: Session, pos: Position, stopped: bool) -> dict:
    """curves.png and summary.json (rank 0, once an epoch finished), and the closing line."""
    from ..cost import macs
    ms, best = pos.metrics, pos.best
    runs.plot(ms, s.out / "curves.png")
    summary = {"name": s.ir.name, "dataset": s.cfg.train, "params": s.params, "macs": macs(s.ir).total,
               "epochs": s.cfg.epochs, "epochs_done": ms[-1]["epoch"], "stopped_by_callback": stopped,
               "final_test_acc": ms[-1]["test_acc"], "best_test_acc": best["acc"], "best_epoch": best["epoch"],
               "train_seconds_sum_over_epochs": sum(m["train_seconds"] for m in ms),
               "wall_seconds_this_session": time.time() - s.t_start, "wall_seconds_total": _wall_total(s, pos),
               "device": str(s.device), "out": str(s.out)}
    runs.write_json(summary, s.out / "summary.json")
    s.progress.say(f"mgdsl: done: test accuracy {100 * summary['final_test_acc']:.2f}% (model.pt), best "
                   f"{100 * best['acc']:.2f}% at epoch {best['epoch']} (best.pt); the run is in {s.out}/")
    return summary
