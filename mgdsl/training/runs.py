"""The run folder: where a run is written, its config, metrics and checkpoints; every write atomic and fsynced."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from ..files import atomic_write, figure_bytes

RUN_FILES = ("config.json", "metrics.jsonl", "model.pt", "last.pt", "summary.json")


def holds_run(d: Path) -> bool:
    """True if d already holds (part of) a run that must not be overwritten."""
    return d.is_dir() and any((d / f).exists() for f in RUN_FILES)


def remove_started_run(d: Path) -> None:
    """Remove what a run that never finished an epoch wrote (config.json, an empty metrics.jsonl, tensorboard),
    and the folder if that leaves it empty: nothing of the user's is in it."""
    import shutil
    for f in ("config.json", "metrics.jsonl"):
        (d / f).unlink(missing_ok=True)
    shutil.rmtree(d / "tensorboard", ignore_errors=True)
    try:
        d.rmdir()
    except OSError:  # something else is in it: leave it
        pass


def fresh_run_dir(base: str) -> str:
    """runs/NAME-DATA, or runs/NAME-DATA-2, -3, ... so that an earlier run is never overwritten."""
    k, out = 1, base
    while holds_run(Path(out)):
        k += 1
        out = f"{base}-{k}"
    return out


def save_torch(obj, path: Path) -> None:
    """torch.save through atomic_write."""
    import torch
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(path, buf.getvalue())


def write_json(obj, path: Path) -> None:
    atomic_write(path, json.dumps(obj, indent=2))


# metrics.jsonl names of runs written before issue 20 -> the names that say what they measure (read_metrics renames
# them, so a run folder of an older version resumes and reads like a new one)
RENAMED_METRICS = {"seconds": "train_seconds", "lr": "lr_start"}


def read_metrics(path: Path) -> list[dict]:
    """The metrics.jsonl lines, one dict per epoch (older runs' field names renamed)."""
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{RENAMED_METRICS.get(k, k): v for k, v in m.items()} for m in lines]


def write_metrics(metrics: list[dict], path: Path) -> None:
    """Rewrite metrics.jsonl whole (atomically): one line per finished epoch."""
    atomic_write(path, "".join(json.dumps(m) + "\n" for m in metrics))


def remove_partial_writes(out: Path) -> None:
    """A write cut short leaves only a .tmp file: the previous complete file is still in place."""
    for tmp in out.glob("*.tmp*"):
        tmp.unlink(missing_ok=True)


def versions() -> dict:
    """Versions of what produced the run, saved in its config."""
    import lark
    import numpy
    import torch

    from .. import __version__
    return {"mgdsl": __version__, "torch": torch.__version__, "numpy": numpy.__version__, "lark": lark.__version__,
            "python": sys.version.split()[0]}


def plot(metrics: list[dict], path: Path) -> None:
    """curves.png: loss and accuracy per epoch, train and test."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ep = [m["epoch"] for m in metrics]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    ax[0].plot(ep, [m["train_loss"] for m in metrics], label="train")
    ax[0].plot(ep, [m["test_loss"] for m in metrics], label="test")
    ax[0].set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax[1].plot(ep, [m["train_acc"] for m in metrics], label="train")
    ax[1].plot(ep, [m["test_acc"] for m in metrics], label="test")
    ax[1].set(xlabel="epoch", ylabel="top-1 accuracy", title="accuracy")
    for a in ax:
        a.legend()
        a.grid(alpha=0.3)
    atomic_write(path, figure_bytes(fig))
