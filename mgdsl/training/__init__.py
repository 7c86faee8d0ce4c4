"""Training: `train(spec, data, **options) -> summary`, what the CLI calls. Torch is imported only when used.

data.py loads and augments data sets, recipes.py holds the recipes, runs.py the run folder and its atomic
writes, loop.py the loop and evaluation.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..diagnostics import Diagnostic, SpecError
from .recipes import Config


def adapt(ir, shape: tuple[int, int, int], classes: int):
    """The spec recompiled for the data's channels, size and class count (the spec adapts or says why not)."""
    from .. import recompile
    from .data import DataError

    try:
        new = recompile(ir, input_shape=shape, classes=classes)
    except SpecError as e:
        e.diagnostics.insert(0, Diagnostic(
            f"the spec cannot take this data ({shape[0]} x {shape[1]} x {shape[2]}, {classes} classes)", None,
            "the data's channels, size and class count replace the spec's `input` and `classes`"))
        raise
    if new.classes is None or new.output_ty.shape != (classes,):
        raise DataError(f"{ir.name} does not end in a {classes}-class output (its output is {new.output_ty.shape})",
                        "a classifier spec needs `classes N` and an output like fc(avgpool(u))")
    return new


def _file_ref(name: str | None) -> dict | None:
    """Where a data set is and, for a file, its sha256 (so a resumed run can tell that the data changed)."""
    if name is None:
        return None
    p = Path(name)
    if not p.exists():
        return {"name": name}
    ref = {"name": name, "path": str(p.resolve())}
    if p.is_file():
        ref["sha256"] = hashlib.sha256(p.read_bytes()).hexdigest()
    return ref


def _absolute(name: str | None) -> str | None:
    """A data set given as a path, made absolute so that the run folder works from anywhere."""
    return str(Path(name).resolve()) if name is not None and Path(name).exists() else name


def load_run(run_dir: str) -> dict:
    """A run folder's config.json."""
    from .data import DataError
    p = Path(run_dir) / "config.json"
    if not p.exists():
        raise DataError(f"{run_dir}: not a run folder (no config.json in it)")
    try:
        return json.loads(p.read_text())
    except ValueError as e:
        raise DataError(f"{p}: not valid JSON ({e})") from None


def spec_of_run(rec: dict):
    """The IR of the spec text and -D values saved in a run's config.json (the file on disk is not read)."""
    from .. import compile_spec
    from ..check import DEFAULT_MAX_PARAMS
    spec = rec["spec"]
    return compile_spec(spec["path"], rec.get("params_override") or {}, text=spec["text"],
                        max_params=rec.get("max_params") or DEFAULT_MAX_PARAMS)


def _contradictions(saved: Config, given: dict) -> list[str]:
    from .recipes import RESUMABLE_KEYS
    bad = []
    for k, v in given.items():
        if k in RESUMABLE_KEYS or v is None:
            continue
        if k in ("train", "test") and _absolute(v) == getattr(saved, k):
            continue
        if v != getattr(saved, k):
            bad.append(f"--{k.replace('_', '-')} {v} (the run has {getattr(saved, k)})")
    return bad


def train(spec, data: str | None = None, *, callback=None, **options) -> dict | None:
    """Train a spec (a path or a compiled IR) on a data set; return the summary (None on ranks other than 0).

    options are recipes.Config's fields (plus `defines`, a dict of -D values, when spec is a path, and `resume`,
    a run folder to continue). callback(metrics of an epoch) -> True stops the run after that epoch. Raises
    SpecError (bad spec, data or options), loop.Diverged (NaN loss) or loop.Interrupted (Ctrl-C)."""
    from .. import compile_spec, parse_overrides
    from .data import DataError
    from .recipes import CONFIG_KEYS, RECIPES

    defines = options.pop("defines", None)
    resume = options.pop("resume", None)
    if data is not None:
        options["train"] = data
    unknown = sorted(set(options) - set(CONFIG_KEYS))
    if unknown:
        raise DataError(f"unknown training option(s): {', '.join(unknown)}", f"known: {', '.join(CONFIG_KEYS)}")
    from . import faults
    if not resume and faults.restarted() and options.get("train") is not None:
        # torchrun restarted this process after a failure: continue the run this job started, if it has one
        if isinstance(spec, (str, os.PathLike)):
            spec = compile_spec(str(spec), parse_overrides(defines))
        prev = faults.find_own_run(options.get("out") or default_out(spec.name, options["train"]),
                                   numbered=options.get("out") is None)
        if prev is not None and (prev / "last.pt").exists():
            resume = str(prev)
        elif prev is not None:
            options.update(out=str(prev), overwrite=True)
    if resume:
        return _resume(spec, Path(resume), defines, options, callback)
    if options.get("recipe", Config.recipe) not in RECIPES:
        raise DataError(f"unknown recipe '{options['recipe']}'", f"one of {', '.join(sorted(RECIPES))}")
    if isinstance(spec, (str, os.PathLike)):
        spec = compile_spec(str(spec), parse_overrides(defines))
    cfg = Config(**options)
    if cfg.train is None:
        raise DataError("no data set to train on", "pass --train DATASET")
    return _new_run(spec, cfg, callback)


def default_out(name: str, data: str) -> str:
    """runs/NAME-DATA: where a run goes without --out (numbered by runs.fresh_run_dir when taken)."""
    return os.path.join("runs", f"{name}-{Path(data).stem}")


def _new_run(ir, cfg: Config, callback) -> dict | None:
    from . import runs
    from .data import DataError
    from .feed import open_source
    from .loop import fit
    from .recipes import fill_defaults, validate
    validate(cfg)  # the flags given, before the data is read
    data = open_source(cfg.train, cfg.test, cfg.data_root, cfg.data_mode, ir.input_ty.shape)
    cfg = fill_defaults(cfg, data.flip_default)
    validate(cfg)  # and the recipe's values under them
    cfg.out = cfg.out or runs.fresh_run_dir(default_out(ir.name, cfg.train))
    rank0 = os.environ.get("RANK", "0") == "0"  # only rank 0 writes; the others must not race its first files
    if rank0 and runs.holds_run(Path(cfg.out)) and not cfg.overwrite:
        raise DataError(f"{cfg.out} already holds a run (config.json / model.pt): it is not overwritten",
                        f"continue it with --resume {cfg.out}, pick another --out, or pass --overwrite")
    record = {"spec": {"path": ir.path, "text": ir.source.text,
                       "sha256": hashlib.sha256(ir.source.text.encode()).hexdigest()},
              "params_override": dict(ir.params), "max_params": ir.max_params,
              "data": {"train": _file_ref(cfg.train), "test": _file_ref(cfg.test), "note": data.note}}
    cfg.train, cfg.test = _absolute(cfg.train), _absolute(cfg.test)
    ir = _adapt_to(ir, data, record)
    return fit(ir, cfg, data, record, callback=callback)


def _adapt_to(ir, data, record: dict):
    shape = data.shape  # the images' (in memory) or the spec's (streamed: images are resized to it)
    record.update(input_shape=list(shape), classes=data.classes)
    return adapt(ir, shape, data.classes)


def _resume(spec, run: Path, defines, given: dict, callback) -> dict | None:
    """Continue the run in folder `run` from its last checkpoint, with its own spec, -D, data and recipe."""
    import torch

    from .. import compile_spec, parse_overrides
    from .data import DataError
    from .feed import open_source
    from .loop import fit
    rec = load_run(str(run))
    if not (run / "last.pt").exists():
        raise DataError(f"--resume {run}: no last.pt there (the run never finished an epoch)")
    saved = Config.from_dict(rec["config"])
    bad = _contradictions(saved, given)
    if given.get("out") is not None and Path(given["out"]).resolve() != run.resolve():
        bad.append(f"--out {given['out']} (a resumed run stays in {run})")
    ir = spec_of_run(rec)
    saved_defines = rec.get("params_override") or {}
    if spec is not None:
        other = spec if not isinstance(spec, (str, os.PathLike)) else compile_spec(str(spec), parse_overrides(defines))
        if other.source.text != rec["spec"]["text"]:
            bad.append(f"the spec {other.path} (its text differs from the run's)")
        if dict(other.params) != saved_defines:
            bad.append(f"-D {other.params} (the run has {saved_defines})")
    else:
        for k, v in parse_overrides(defines).items():
            if saved_defines.get(k) != v:
                bad.append(f"-D {k}={v} (the run has {k}={saved_defines.get(k)})")
    if bad:
        raise DataError(f"--resume {run}: the run was made with other settings, not {'; '.join(bad)}")
    done = torch.load(run / "last.pt", map_location="cpu", weights_only=False)["epoch"]
    epochs = given.get("epochs") or saved.epochs
    if epochs < done:
        raise DataError(f"--resume {run} --epochs {epochs}: the run has already done {done} epochs")
    if epochs == done and given.get("epochs") is None:
        raise DataError(f"--resume {run}: the run is complete ({done} of {done} epochs)",
                        f"extend it with --resume {run} --epochs N (N > {done}), or score it with mgdsl eval {run}")
    for k in ("epochs", "device", "threads", "log_interval", "tensorboard", "data_root", "workers",
              "checkpoint_interval"):
        if given.get(k) is not None:
            setattr(saved, k, given[k])
    saved.out = str(run)
    from .recipes import validate
    validate(saved)
    data = open_source(saved.train, saved.test, saved.data_root, saved.data_mode, rec["input_shape"])
    for role in ("train", "test"):
        ref = (rec.get("data") or {}).get(role) or {}
        now = _file_ref(getattr(saved, role))
        if ref.get("sha256") and now and now.get("sha256") != ref["sha256"]:
            raise DataError(f"--resume {run}: the {role} data {getattr(saved, role)} changed since the run started")
    record = {k: v for k, v in rec.items() if k not in ("config", "params", "world_size", "versions")}
    ir = adapt(ir, tuple(rec["input_shape"]), rec["classes"])
    return fit(ir, saved, data, record, resume=True, callback=callback)


def evaluate_run(target: str, *, defines=None, weights: str | None = None, test: str | None = None,
                 data_root: str | None = None, tta: bool | None = None) -> dict:
    """Top-1 accuracy and loss of saved weights, normalised and tested as in training.

    target is a run folder (its spec, -D, normalisation, recipe and test set are used; weights default to its
    model.pt) or a spec file (then weights is required and the run is the folder that holds them).
    tta None scores as the run did (flip test-time augmentation if its recipe used it); True/False force it."""
    import torch

    from .. import compile_spec, parse_overrides
    from ..ir import shape_text
    from ..lowering import lower_ir
    from .data import DataError, channel_stats, load_dataset, load_test_set, to_images
    from .loop import standardise
    from .metrics import evaluate

    t = Path(target)
    if t.is_dir():
        rec, run = load_run(target), t
        ir = spec_of_run(rec)
        wpath = Path(weights) if weights else run / "model.pt"
    else:
        if not weights:
            if not t.exists():
                raise DataError(f"eval {target}: no such run folder", "a folder that `mgdsl compile --train` wrote, "
                                "or a spec with --weights FILE.pt")
            raise DataError(f"eval {target}: pass --weights FILE.pt (or give a run folder instead of a spec)")
        ir = compile_spec(target, parse_overrides(defines))
        wpath = Path(weights)
        rec = load_run(str(wpath.parent)) if (wpath.parent / "config.json").exists() else {}
    if not wpath.exists():
        raise DataError(f"no such file: {wpath}")
    cfg = Config.from_dict(rec.get("config", {}))
    use_tta = bool(cfg.tta) if tta is None else tta
    root = data_root or cfg.data_root
    if test is not None:  # another test set, scored whole
        name = test
    elif cfg.train is not None:  # the run's own test set
        name = cfg.test or cfg.train
    else:
        raise DataError(f"eval {target}: pass --test DATA (no run config beside {wpath})")
    streamed = (rec.get("data_plan") or {}).get("mode") == "stream" and Path(name).is_dir()
    if streamed:  # images resized and centre-cropped to the spec's input, as the run evaluated them
        from .stream import folder_split, image_folder, open_folders, pil_mode
        shape = tuple(rec["input_shape"])
        classes = rec["classes"]
        if test is None:  # exactly as in training: a held-out split stays the same split
            _, ds, names = open_folders(Path(cfg.train), Path(cfg.test) if cfg.test else None, shape[0])
        else:  # scored whole
            ds = image_folder(folder_split(Path(name), None).test or Path(name), pil_mode(shape[0]))
            names = ds.classes
        if len(names) != classes:
            raise DataError(f"{name}: {len(names)} class folders, but the run has {classes} classes")
    else:
        if test is None:  # exactly as in training: a split stays the same split
            d = load_dataset(cfg.train, cfg.test, root)
            x, y, k = d.x_test, d.y_test, d.classes
        else:  # scored whole
            x, y, k = load_test_set(name, root)
        classes = rec.get("classes", k if k is not None else int(y.max()) + 1)
        shape = (x.shape[3], x.shape[1], x.shape[2])
        trained = tuple(rec.get("input_shape") or shape)
        if shape != trained:
            raise DataError(f"{name}: its images are {shape_text(shape)} (channels x height x width), but "
                            f"the run was trained on {shape_text(trained)} images",
                            "score it on data of the training set's shape")
        if int(y.max(initial=0)) >= classes:
            raise DataError(f"{name}: label {int(y.max())} is out of range for the run's {classes} classes")
    ir = adapt(ir, shape, classes)
    model = lower_ir(ir)
    try:
        state = torch.load(wpath, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"] if isinstance(state, dict) and "model" in state else state)
    except Exception as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        why = "; ".join(lines[1:3]) if len(lines) > 1 else (lines[0] if lines else type(e).__name__)
        why = why if len(why) <= 240 else why[:237] + "..."
        raise DataError(f"{wpath} does not fit {ir.name}: {why}",
                        "pass the same spec and -D values as in training") from None
    if streamed:
        from .stream import Augmented, EvalShard, eval_transform, make_loader
        norm = rec["normalize"]
        loader = make_loader(Augmented(ds, eval_transform(shape, norm["mean"], norm["std"])),
                             EvalShard(len(ds), 1, 0), 64, 0, False, False)
        sc = evaluate(model, loader, torch.device("cpu"), False, classes, 1, tta=use_tta)
        return {"top1": sc.top1, "top5": sc.top5, "loss": sc.loss, "n": sc.n, "weights": str(wpath), "test": name,
                "tta": use_tta}
    xt = to_images(x, "cpu")
    if "normalize" in rec:  # the training set's statistics, saved with the run
        xt = standardise(xt, rec["normalize"])
    else:
        mean, std = channel_stats(xt)
        xt = (xt - mean) / std
    yt = torch.from_numpy(y)
    batches = ((xt[s:s + 512], yt[s:s + 512]) for s in range(0, len(xt), 512))
    sc = evaluate(model, batches, torch.device("cpu"), False, classes, 1, tta=use_tta)
    return {"top1": sc.top1, "top5": sc.top5, "loss": sc.loss, "n": sc.n, "weights": str(wpath), "test": name,
            "tta": use_tta}
