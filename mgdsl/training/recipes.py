"""Training recipes: named sets of hyper-parameters, and the resolved config a run is saved with."""
from __future__ import annotations

from dataclasses import dataclass, fields

RECIPES = {
    # section 9.2 of the paper
    "paper": dict(epochs=120, batch_size=128, lr=0.1, momentum=0.9, weight_decay=0.0, lr_step=30, lr_gamma=0.1),
    # the authors' later public code
    "official": dict(epochs=300, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4, lr_step=50, lr_gamma=0.1),
}


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

    @classmethod
    def from_json(cls, d: dict) -> "Config":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def resolve_recipe(recipe: str, epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
                   weight_decay: float | None = None) -> dict:
    """Recipe values, then single flags on top."""
    r = dict(RECIPES[recipe])
    for key, v in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr), ("weight_decay", weight_decay)):
        if v is not None:
            r[key] = v
    if epochs is not None:
        # compress the step schedule with the run: paper divides by 10 every quarter of its 120 epochs
        base = RECIPES[recipe]
        r["lr_step"] = max(1, round(base["lr_step"] * r["epochs"] / base["epochs"]))
    return r
