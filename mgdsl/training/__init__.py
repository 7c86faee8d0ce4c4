"""Training: `train(spec, data, **options) -> summary`, what the CLI calls. Torch is imported only when used.

data.py loads and augments data sets, recipes.py holds the recipes, runs.py the run folder and its atomic
writes, loop.py the loop and evaluation.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

from ..diagnostics import Diagnostic, SpecError


@dataclass
class Options:
    """What a user may ask of a run (the CLI's flags, the API's keywords); None means "the recipe's value"."""
    test: str | None = None
    data_root: str = os.path.join(os.path.expanduser("~"), ".cache", "mgdsl")
    recipe: str = "paper"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    device: str = "auto"
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    out: str | None = None
    overwrite: bool = False
    resume: str | None = None
    augment: bool = True
    sync_bn: bool = False
    data_mode: str = "auto"
    workers: int | None = None
    checkpoint_interval: int = 0


OPTION_NAMES = tuple(f.name for f in fields(Options))


def adapt(ir, shape: tuple[int, int, int], classes: int):
    """Re-elaborate the spec for the data's channels, size and class count (the spec adapts or says why not)."""
    from dataclasses import replace

    from .. import syntax as S
    from ..check import check
    from ..diagnostics import Source
    from ..elaborate import elaborate
    from ..syntax import parse, read_source
    from .data import DataError

    source = ir.source or Source(ir.path, read_source(ir.path))  # the very text the IR was compiled from
    model = parse(source.text, ir.path)
    items = []
    for it in model.items:
        if isinstance(it, S.Input):
            it = replace(it, channels=S.Num(shape[0], it.channels.span), height=S.Num(shape[1], it.height.span),
                         width=S.Num(shape[2], it.width.span))
        if isinstance(it, S.Setting) and it.key == "classes":
            it = replace(it, values=(S.Num(classes, it.values[0].span),))
        items.append(it)
    model = replace(model, items=tuple(items))
    overrides = dict(ir.params)
    try:
        new = elaborate(model, source, overrides)
    except SpecError as e:
        e.diagnostics.insert(0, Diagnostic(
            f"the spec cannot take this data ({shape[0]} x {shape[1]} x {shape[2]}, {classes} classes)", None,
            "the data's channels, size and class count replace the spec's `input` and `classes`"))
        raise
    if new.classes is None or new.output_ty.shape != (classes,):
        raise DataError(f"{ir.name} does not end in a {classes}-class output (its output is {new.output_ty.shape})",
                        "a classifier spec needs `classes N` and an output like fc(avgpool(u))")
    return check(new, source)


def default_out(ir, data: str) -> str:
    """runs/NAME-DATA: where a run goes without --out (numbered by runs.fresh_run_dir when taken)."""
    return os.path.join("runs", f"{ir.name}-{Path(data).stem}")


def _config(ir, data: str, o: Options):
    """The resolved config of a new run: recipe, flags on top, and a run folder that holds no earlier run."""
    from . import runs
    from .data import DataError
    from .recipes import Config, resolve_recipe
    r = resolve_recipe(o.recipe, o.epochs, o.batch_size, o.lr, o.weight_decay)
    for name in ("workers", "checkpoint_interval"):
        if (getattr(o, name) or 0) < 0:
            raise DataError(f"--{name.replace('_', '-')} {getattr(o, name)}: must be 0 or more")
    out = o.out or runs.fresh_run_dir(default_out(ir, data))
    rank0 = os.environ.get("RANK", "0") == "0"  # only rank 0 writes; the others must not race its first files
    if rank0 and o.out and runs.holds_run(Path(out)) and not o.overwrite:
        raise DataError(f"{out} already holds a run (config.json / model.pt): it is not overwritten",
                        f"continue it with --resume {out}, pick another --out, or pass --overwrite")
    return Config(dataset=data, test=o.test, data=o.data_root, recipe=o.recipe, device=o.device, amp=o.amp,
                  channels_last=o.channels_last, compile=o.compile, seed=o.seed, out=out, augment=o.augment,
                  data_mode=o.data_mode, workers=o.workers, checkpoint_interval=o.checkpoint_interval, **r)


def train(spec, data: str | None, *, callback=None, **options) -> dict | None:
    """Train a spec (a path or a compiled IR) on a data set; return the summary (None on ranks other than 0).

    options are Options' fields (plus `defines`, a dict of -D values, when spec is a path). Raises SpecError
    (bad spec, data or options), loop.Diverged (NaN loss) or loop.Interrupted (Ctrl-C)."""
    from .data import DataError
    from .loop import fit
    from .recipes import Config

    defines = options.pop("defines", None)
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise DataError(f"unknown training option(s): {', '.join(unknown)}", f"known: {', '.join(OPTION_NAMES)}")
    o = Options(**options)
    if isinstance(spec, (str, os.PathLike)):
        from .. import compile_spec, parse_overrides
        spec = compile_spec(str(spec), parse_overrides(defines))
    from . import faults
    if data is not None and not o.resume and faults.restarted():
        # torchrun restarted this process after a failure: continue the run this job started, if any
        prev = faults.find_own_run(o.out or default_out(spec, data), numbered=o.out is None)
        if prev is not None and (prev / "last.pt").exists():
            o.resume = str(prev)
        elif prev is not None:
            o.out, o.overwrite = str(prev), True
    if o.resume:
        resume = Path(o.resume)
        if not (resume / "config.json").exists() or not (resume / "last.pt").exists():
            raise DataError(f"--resume {resume}: no config.json and last.pt there")
        cfg = Config.from_json(json.loads((resume / "config.json").read_text())["config"])
        cfg.out = str(resume)
        return fit(spec, cfg, resume=True, sync_bn=o.sync_bn, callback=callback)
    if data is None:
        raise DataError("no data set to train on", "pass --train DATASET")
    return fit(spec, _config(spec, data, o), sync_bn=o.sync_bn, callback=callback)


def evaluate_weights(ir, weights: str, test: str, data_root: str) -> dict:
    """Top-1 accuracy and loss of saved weights on a test set, normalised with the run's statistics."""
    import numpy as np
    import torch

    from ..lowering import lower_ir
    from .data import DataError, channel_stats, load_dataset, read_npz, to_images
    from .loop import evaluate

    if test.endswith(".npz"):
        x, y = read_npz(Path(test))
    else:
        _, _, x, y = load_dataset(test, None, data_root)
    wpath = Path(weights)
    if not wpath.exists():
        raise DataError(f"no such file: {wpath}")
    cfg_path = wpath.parent / "config.json"
    cfgj = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    classes = cfgj.get("classes", int(y.max()) + 1)
    ir = adapt(ir, (x.shape[3], x.shape[1], x.shape[2]), classes)
    model = lower_ir(ir)
    try:
        model.load_state_dict(torch.load(wpath, map_location="cpu", weights_only=True))
    except RuntimeError as e:
        raise DataError(f"{wpath} does not fit {ir.name}: {str(e).splitlines()[0]}",
                        "pass the same spec and -D values as in training") from None
    xt = to_images(x, "cpu")
    norm = cfgj.get("normalize")
    if norm:  # the training set's statistics, saved with the run
        mean = torch.tensor(norm["mean"]).view(1, -1, 1, 1)
        std = torch.tensor(norm["std"]).view(1, -1, 1, 1)
    else:
        mean, std = channel_stats(xt)
    loss, acc = evaluate(model, (xt - mean) / std, torch.from_numpy(np.asarray(y)), 512, False)
    return {"top1": acc, "loss": loss, "n": len(y)}
