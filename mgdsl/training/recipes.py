"""Training recipes: named sets of hyper-parameters, and the resolved config a run is saved with."""
from __future__ import annotations

from dataclasses import dataclass, fields

RECIPES = {
    # section 9.2 of the paper
    "paper": dict(epochs=120, batch_size=128, lr=0.1, momentum=0.9, weight_decay=0.0, lr_step=30, lr_gamma=0.1),
    # the authors' later public code
    "official": dict(epochs=300, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4, lr_step=50, lr_gamma=0.1),
    # ResNet on ImageNet as in Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour"
    # (arXiv:1706.02677), sections 2.1, 2.2 and 5.1, and the torchvision classification reference: SGD with
    # momentum 0.9, weight decay 1e-4, 90 epochs, lr 0.1 per 256 images scaled linearly with the batch, divided
    # by 10 at epochs 30, 60 and 80, and a 5-epoch linear warm-up when the batch is larger than 256.
    "imagenet": dict(epochs=90, batch_size=256, lr=0.1, momentum=0.9, weight_decay=1e-4, lr_step=30, lr_gamma=0.1,
                     lr_milestones=[30, 60, 80], lr_base_batch=256, warmup_epochs=5),
}


# how a data set is fed: stream.choose_mode picks for "auto"
DATA_MODES = ("auto", "memory", "stream")


@dataclass
class Config:
    """Everything a run was trained with, saved in its config.json."""
    dataset: str
    test: str | None
    data: str
    recipe: str
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    lr_step: int
    lr_gamma: float
    device: str
    amp: bool
    channels_last: bool
    compile: bool
    seed: int
    out: str
    augment: bool
    lr_milestones: list[int] | None = None  # epochs where lr is multiplied by lr_gamma (else every lr_step)
    warmup_epochs: int = 0  # linear warm-up from lr * lr_base_batch / batch_size to lr (Goyal et al. 2.2)
    lr_base_batch: int | None = None  # the batch size the recipe's lr is given for (linear scaling rule)
    data_mode: str = "auto"  # memory, stream, or auto (stream.choose_mode)
    workers: int | None = None  # DataLoader processes per rank (None: stream.default_workers)
    checkpoint_interval: int = 0  # also write last.pt every this many steps (0: once per epoch only)

    @classmethod
    def from_json(cls, d: dict) -> "Config":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def resolve_recipe(recipe: str, epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
                   weight_decay: float | None = None) -> dict:
    """Recipe values, then single flags on top."""
    base = RECIPES[recipe]
    r = dict(base)
    for key, v in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr), ("weight_decay", weight_decay)):
        if v is not None:
            r[key] = v
    if epochs is not None:
        # compress the step schedule with the run: paper divides by 10 every quarter of its 120 epochs
        r["lr_step"] = max(1, round(base["lr_step"] * r["epochs"] / base["epochs"]))
        if base.get("lr_milestones"):
            r["lr_milestones"] = [max(1, round(m * r["epochs"] / base["epochs"])) for m in base["lr_milestones"]]
    if base.get("lr_base_batch"):
        if lr is None:  # the linear scaling rule (Goyal et al. 2.1): lr grows with the batch
            r["lr"] = base["lr"] * r["batch_size"] / base["lr_base_batch"]
        # warm-up only where the scaled lr is larger than the one the recipe was tuned at (Goyal et al. 2.2)
        r["warmup_epochs"] = base.get("warmup_epochs", 0) if r["batch_size"] > base["lr_base_batch"] else 0
    return r


def lr_factor(r, epoch: float) -> float:
    """lr / recipe lr at a (fractional) epoch: a linear warm-up, then x lr_gamma at each milestone (or every
    lr_step epochs). r is a resolved recipe (dict) or a Config."""
    get = r.get if isinstance(r, dict) else (lambda k: getattr(r, k))
    milestones = get("lr_milestones")
    n = sum(1 for m in milestones if m <= epoch) if milestones else int(epoch // get("lr_step"))
    decay = get("lr_gamma") ** n
    warm = get("warmup_epochs") or 0
    if epoch < warm:  # from the recipe's lr at its base batch up to the linearly scaled lr
        start = get("lr_base_batch") / get("batch_size")
        return decay * (start + (1 - start) * epoch / warm)
    return decay
