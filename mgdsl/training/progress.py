"""What a run tells its user while it runs: where it writes, a progress bar or log lines, labelled epoch lines,
and optionally TensorBoard scalars. Only rank 0 reports."""
from __future__ import annotations

import sys


class Progress:
    """Reports one run on stderr (and to TensorBoard if asked)."""

    def __init__(self, *, enabled: bool, log_interval: int = 0, tensorboard_dir=None, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.log_interval = log_interval
        self.tty = enabled and self.stream.isatty()
        self.writer = None
        if enabled and tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                from ..diagnostics import install_hint
                from .data import DataError
                raise DataError("--tensorboard needs the tensorboard package", install_hint("train")) from None
            self.writer = SummaryWriter(str(tensorboard_dir))
        self.bar = None

    def say(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)

    def epoch_start(self, epoch: int, epochs: int, steps: int, done: int = 0) -> None:
        """done: the steps of this epoch already taken (a run resumed mid-epoch): the batch counter runs on."""
        self.epoch, self.epochs, self.steps, self.step = epoch, epochs, steps, done
        if self.tty:
            from tqdm import tqdm
            self.bar = tqdm(total=steps, initial=done, desc=f"epoch {epoch}/{epochs}", leave=False, file=self.stream,
                            dynamic_ncols=True)

    def batch(self, loss: float | None, lr: float) -> None:
        """After each batch; loss is only read (a device sync) when it is shown."""
        self.step += 1
        if self.bar is not None:
            self.bar.update(1)
            if loss is not None:
                self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.3g}", refresh=False)
        elif self.enabled and self.log_interval and self.step % self.log_interval == 0 and loss is not None:
            self.say(f"  epoch {self.epoch}/{self.epochs}  batch {self.step}/{self.steps}  loss {loss:.4f}  "
                     f"lr {lr:.4g}")

    def wants_loss(self) -> bool:
        """Whether the next batch's loss will be shown (so the loop syncs only then)."""
        if not self.enabled:
            return False
        if self.bar is not None:
            return (self.step + 1) % 10 == 0
        return bool(self.log_interval) and (self.step + 1) % self.log_interval == 0

    def epoch_end(self, m: dict, best: bool) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        top5 = "" if m.get("test_top5") is None else f" top-5 {100 * m['test_top5']:5.2f}%"  # > 5 classes only
        lr = f"{m['lr_start']:.4g}" + (f"->{m['lr_end']:.4g}" if m["lr_end"] != m["lr_start"] else "")
        self.say(f"epoch {m['epoch']:>{len(str(self.epochs))}}/{self.epochs}  lr {lr}  "
                 f"train loss {m['train_loss']:.4f} acc {100 * m['train_acc']:5.1f}%  "
                 f"test loss {m['test_loss']:.4f} acc {100 * m['test_acc']:5.2f}%{top5}{' (best)' if best else ''}  "
                 f"{m['train_seconds']:.1f} s  {m['images_per_s']:.0f} img/s")
        if self.writer is not None:
            for k in ("train_loss", "test_loss", "train_acc", "test_acc", "lr_start", "lr_end", "images_per_s"):
                group = "loss" if k.endswith("loss") else "accuracy" if k.endswith("acc") else k
                self.writer.add_scalar(f"{group}/{k}" if group != k else k, m[k], m["epoch"])
            self.writer.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
