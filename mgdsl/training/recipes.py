"""Training recipes (named sets of hyper-parameters), the config a run is saved with, and the lr schedule."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

RECIPES = {
    # Section 9.2 of the paper: SGD 0.1, momentum 0.9, batch 128, lr / 10 every 30 of 120 epochs, no weight decay.
    # With --epochs E the steps are compressed to every round(30 E / 120) epochs (E = 15: / 10 at 4, 8, 12).
    "paper": dict(epochs=120, batch_size=128, lr=0.1, momentum=0.9, nesterov=False, weight_decay=0.0,
                  label_smoothing=0.0, schedule="step", lr_step=30, lr_gamma=0.1, warmup_epochs=0.0, tta=False),
    # The authors' later public code: weight decay 5e-4, 300 epochs, lr / 10 every 50.
    "official": dict(epochs=300, batch_size=128, lr=0.1, momentum=0.9, nesterov=False, weight_decay=5e-4,
                     label_smoothing=0.0, schedule="step", lr_step=50, lr_gamma=0.1, warmup_epochs=0.0, tta=False),
    # For a budget of epochs (tricks from airbench, Jordan 2024, and the usual CIFAR recipes), whatever E is:
    "budget": dict(epochs=15, batch_size=128, lr=0.1, momentum=0.9,
                   nesterov=True,           # Nesterov momentum
                   weight_decay=5e-4,       # weight decay (L2 through SGD)
                   label_smoothing=0.1,     # label smoothing 0.1 in the training loss (not in the test loss)
                   schedule="linear",       # linear decay to zero at the last batch of the last epoch, per batch
                   lr_step=0, lr_gamma=1.0,
                   warmup_epochs=1.0,        # linear warm-up from 0 over the first epoch, per batch
                   tta=True),               # test-time augmentation: mean of the logits of x and its mirror
    # ResNet on ImageNet as in Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour"
    # (arXiv:1706.02677, sections 2.1, 2.2, 5.1), which the torchvision classification reference also uses:
    # SGD momentum 0.9, weight decay 1e-4, 90 epochs, lr 0.1 per 256 images scaled linearly with the batch
    # (lr_base_batch), / 10 at epochs 30, 60 and 80; above batch 256 a 5-epoch linear warm-up (per batch)
    # from the lr of batch 256 up to the scaled lr.
    "imagenet": dict(epochs=90, batch_size=256, lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4,
                     label_smoothing=0.0, schedule="multistep", lr_step=30, lr_gamma=0.1, warmup_epochs=5.0,
                     tta=False, lr_milestones=[30, 60, 80], lr_base_batch=256),
}
SCHEDULES = ("step", "linear", "multistep")
# how a data set is fed: stream.choose_mode picks for "auto"
DATA_MODES = ("auto", "memory", "stream")
DEFAULT_RECIPE = "budget"
RECIPE_KEYS = tuple(RECIPES["paper"])


@dataclass
class Config:
    """Everything a run is asked to do: the CLI's flags, the API's keywords, a --config file's keys.

    None means "the recipe's value" (or, for flip, "the data set's default"); fill_defaults() fills them in and the
    resolved config is saved with the run."""
    train: str | None = None
    test: str | None = None
    data_root: str = os.path.join(os.path.expanduser("~"), ".cache", "mgdsl")
    recipe: str = DEFAULT_RECIPE
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    momentum: float | None = None
    nesterov: bool | None = None
    weight_decay: float | None = None
    label_smoothing: float | None = None
    schedule: str | None = None
    lr_step: int | None = None
    lr_gamma: float | None = None
    warmup_epochs: float | None = None
    tta: bool | None = None
    augment: bool = True
    flip: bool | None = None
    device: str = "auto"
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False
    seed: int = 0
    out: str | None = None
    overwrite: bool = False
    threads: int | None = None
    log_interval: int = 0
    tensorboard: bool = False
    lr_milestones: list[int] | None = None  # multistep: epochs where lr is multiplied by lr_gamma
    lr_base_batch: int | None = None  # the batch the recipe's lr is for: lr scales linearly with the batch
    data_mode: str = "auto"  # memory, stream, or auto (stream.choose_mode)
    workers: int | None = None  # DataLoader processes per rank when streaming (None: stream.default_workers)
    checkpoint_interval: int = 0  # also write last.pt every this many steps (0: at each epoch's end only)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        """From a saved config (keys this version does not know are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


CONFIG_KEYS = tuple(f.name for f in fields(Config))
# what may differ when a run is resumed: how it runs, not what it computes; a value given replaces the run's,
# except those of KEPT_ON_RESUME
RESUMABLE_KEYS = frozenset({"epochs", "device", "threads", "log_interval", "tensorboard", "data_root", "out",
                            "overwrite", "workers", "checkpoint_interval"})
# out: a resumed run stays in its own folder (checked apart); overwrite: a resume overwrites nothing
KEPT_ON_RESUME = frozenset({"out", "overwrite"})


def fill_defaults(cfg: Config, flip_default: bool) -> Config:
    """Recipe values under the flags given; the paper's step schedule is compressed with --epochs."""
    base = RECIPES[cfg.recipe]
    r = {k: (getattr(cfg, k) if getattr(cfg, k) is not None else v) for k, v in base.items()}
    if cfg.epochs is not None and cfg.lr_step is None and base["schedule"] == "step":
        r["lr_step"] = max(1, round(base["lr_step"] * r["epochs"] / base["epochs"]))
    if cfg.epochs is not None and cfg.lr_milestones is None and base.get("lr_milestones"):
        r["lr_milestones"] = [max(1, round(m * r["epochs"] / base["epochs"])) for m in base["lr_milestones"]]
    if base.get("lr_base_batch"):
        if cfg.lr is None:  # the linear scaling rule (Goyal et al. 2.1)
            r["lr"] = base["lr"] * r["batch_size"] / base["lr_base_batch"]
        if cfg.warmup_epochs is None and r["batch_size"] <= base["lr_base_batch"]:
            r["warmup_epochs"] = 0.0  # warm-up only where the lr is above the one tuned at the base batch
    if r.get("schedule") == "multistep" and not r.get("lr_milestones", cfg.lr_milestones):
        from .data import DataError
        raise DataError("--schedule multistep needs lr_milestones (epochs)", "use --recipe imagenet, or a --config "
                        "file with lr_milestones: [30, 60, 80]")
    flip = (flip_default if cfg.flip is None else cfg.flip) and cfg.augment
    r["tta"] = r["tta"] and flip  # mirrored test images help only a model trained on mirrored images
    return replace(cfg, **r, flip=flip)


# flag -> (lowest, highest, whether the lowest itself is allowed): what torch and the schedule accept
LIMITS = {"epochs": (1, None, True), "batch_size": (1, None, True), "lr": (0, None, True),
          "momentum": (0, None, True), "weight_decay": (0, None, True), "label_smoothing": (0, 1, True),
          "warmup_epochs": (0, None, True), "lr_step": (1, None, True), "lr_gamma": (0, None, False),
          "threads": (1, None, True), "seed": (0, 2**32 - 1, True), "log_interval": (0, None, True),
          "workers": (0, None, True), "checkpoint_interval": (0, None, True), "lr_base_batch": (1, None, True)}


def validate(cfg: Config) -> None:
    """Every number of a resolved config within what it means (before any file is written): exit 2, one line."""
    import math

    from .data import DataError
    for name, (lo, hi, closed) in LIMITS.items():
        v = getattr(cfg, name)
        if v is None or (name == "lr_step" and cfg.schedule != "step"):  # lr_step means something only there
            continue
        flag = f"--{name.replace('_', '-')} {v}"
        if isinstance(v, float) and not math.isfinite(v):
            raise DataError(f"{flag}: must be a finite number")
        if v < lo or (v == lo and not closed):
            raise DataError(f"{flag}: must be {'at least' if closed else 'more than'} {lo}")
        if hi is not None and v > hi:
            raise DataError(f"{flag}: must be at most {hi}")


def lr_at(cfg: Config, step: int, steps_per_epoch: int) -> float:
    """The learning rate of global batch `step` (0-based): a pure function, so a resumed run gets the same."""
    if cfg.schedule == "step":  # the paper's: lr * gamma^(epoch // lr_step), constant within an epoch
        return cfg.lr * cfg.lr_gamma ** ((step // steps_per_epoch) // cfg.lr_step)
    if cfg.schedule == "multistep":  # Goyal et al.: warm-up from lr * base / batch, then / 10 at milestones
        lr = cfg.lr * cfg.lr_gamma ** sum(1 for m in cfg.lr_milestones if m * steps_per_epoch <= step)
        warm = cfg.warmup_epochs * steps_per_epoch
        if step < warm:
            start = min(1.0, (cfg.lr_base_batch or cfg.batch_size) / cfg.batch_size)
            return lr * (start + (1 - start) * step / warm)
        return lr
    total = cfg.epochs * steps_per_epoch
    warm = round(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return cfg.lr * max(0, total - step) / (total - warm + 1)
