"""The training loop: one epoch over any iterable of batches, evaluation, and the run around them."""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import runs
from .data import DIGITS_NOTE, DataError, channel_stats, in_memory_batches, load_dataset, steps_per_epoch, to_images
from .recipes import Config


class Diverged(FloatingPointError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""

    def __init__(self, message: str, checkpoint: Path):
        super().__init__(message)
        self.checkpoint = checkpoint


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training; every file in the run folder is complete (the last epoch's)."""

    def __init__(self, out: Path):
        super().__init__(str(out))
        self.out = out


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


def train_epoch(fwd, opt, batches, *, device, amp: bool, channels_last: bool, on_step=None) -> EpochStats:
    """One pass over `batches` (an iterable of (images, labels) on the device): forward, loss, step."""
    import torch
    fwd.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for xb, yb in batches:
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, torch.bfloat16, enabled=amp):
            logits = fwd(xb)
            loss = torch.nn.functional.cross_entropy(logits.float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * len(yb)
        correct += (logits.detach().argmax(1) == yb).sum()
        seen += len(yb)
        if on_step:
            on_step()
    return EpochStats(loss_sum, correct, seen)


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

    xtr, ytr, xte, yte = load_dataset(cfg.dataset, cfg.test, cfg.data)
    classes = int(max(ytr.max(), yte.max()) + 1)
    ir = adapt(ir, (xtr.shape[3], xtr.shape[1], xtr.shape[2]), classes)

    from ..lowering import lower_ir
    model = lower_ir(ir).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in model.parameters())

    xtr_t, xte_t = to_images(xtr, device), to_images(xte, device)
    mean, std = channel_stats(xtr_t)
    xtr_t, xte_t = (xtr_t - mean) / std, (xte_t - mean) / std
    ytr_t, yte_t = torch.from_numpy(ytr).to(device), torch.from_numpy(yte).to(device)

    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    out = Path(cfg.out)
    start_epoch = 0
    if resume:
        ck = torch.load(out / "last.pt", map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["rng"]["torch"])
        start_epoch = ck["epoch"]
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
            "params": params, "normalize": {"mean": mean.flatten().tolist(), "std": std.flatten().tolist()},
            "world_size": world, "versions": runs.versions(),
            "data_note": DIGITS_NOTE if cfg.dataset == "digits" else None}, out / "config.json")
    metrics_path = out / "metrics.jsonl"
    metrics = runs.read_metrics(metrics_path)[:start_epoch] if resume else []
    if lead:
        runs.write_metrics(metrics, metrics_path)

    pad = max(1, round(4 * xtr_t.shape[2] / 32))  # the paper's pad 4 at 32x32, scaled with the image
    flip_ok = cfg.dataset != "digits"  # a mirrored digit is another symbol
    steps = steps_per_epoch(len(xtr_t), cfg.batch_size)
    tty = sys.stderr.isatty() and lead
    t_run = time.time()
    try:
        for epoch in range(start_epoch, cfg.epochs):
            gen = torch.Generator(device=device).manual_seed(cfg.seed * 100003 + epoch)
            batches = in_memory_batches(xtr_t, ytr_t, batch_size=cfg.batch_size, gen=gen, rank=rank, world=world,
                                        augment_on=cfg.augment, pad=pad, flip_ok=flip_ok)
            t0 = time.time()
            bar = None
            if tty:
                from tqdm import tqdm
                bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, file=sys.stderr)
            st = train_epoch(fwd, opt, batches, device=device, amp=cfg.amp, channels_last=cfg.channels_last,
                             on_step=bar.update if bar else None)
            if bar:
                bar.close()
            loss_sum, correct, seen = st.loss_sum, st.correct, st.seen
            if world > 1:  # the logged epoch metrics are over the global batch (one sync per epoch)
                import torch.distributed as dist
                tot = torch.stack([loss_sum, correct.to(loss_sum.dtype), torch.tensor(float(seen), device=device)])
                dist.all_reduce(tot)
                loss_sum, correct, seen = tot[0], tot[1], int(tot[2].item())
            train_loss = loss_sum.item() / seen
            if not math.isfinite(train_loss):
                raise Diverged(f"epoch {epoch + 1}: the training loss is {train_loss}", out / "last.pt")
            lr = sched.get_last_lr()[0]
            sched.step()
            secs = time.time() - t0
            if lead:
                test_loss, test_acc = evaluate(model, xte_t, yte_t, 512, cfg.amp)
                m = {"epoch": epoch + 1, "lr": lr,
                     "train_loss": train_loss, "train_acc": float(correct.item()) / seen, "test_loss": test_loss,
                     "test_acc": test_acc, "seconds": secs, "images_per_s": seen / secs}
                metrics.append(m)
                runs.write_metrics(metrics, metrics_path)
                runs.save_torch(model.state_dict(), out / "model.pt")
                runs.save_torch({"model": model.state_dict(), "optimizer": opt.state_dict(),
                                 "scheduler": sched.state_dict(), "epoch": epoch + 1,
                                 "rng": {"torch": torch.get_rng_state()}}, out / "last.pt")
                print(f"epoch {epoch + 1:3d}  lr {m['lr']:.4g}  train {train_loss:.4f} / {m['train_acc']:.4f}  "
                      f"test {test_loss:.4f} / {test_acc:.4f}  {secs:.1f}s  {m['images_per_s']:.0f} img/s",
                      file=sys.stderr)
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
