"""Training: `train(spec, data, **options) -> summary`, what the CLI calls. Torch is imported only when used.

data.py loads and augments data sets, recipes.py holds the recipes, runs.py the run folder and its atomic
writes, loop.py the loop, evaluate.py `mgdsl eval`.
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


def run_ir(rec: dict):
    """The IR a run trained: its saved spec text and -D values adapted to its data's channels, size and classes."""
    from .data import DataError
    if not rec.get("input_shape") or not rec.get("classes"):
        raise DataError("the run's config.json has no input_shape or classes (made by an older mgdsl?)")
    return adapt(spec_of_run(rec), tuple(rec["input_shape"]), rec["classes"])


def load_state(model, wpath: Path, name: str) -> None:
    """Saved weights (model.pt, best.pt, or last.pt's model) into a lowered model; a mismatch is one error."""
    import torch

    from .data import DataError
    try:
        state = torch.load(wpath, map_location="cpu", weights_only=False)
    except Exception as e:  # a text file, a truncated download: not a mismatch of spec and -D values
        raise DataError(f"{wpath}: not a PyTorch weights file ({type(e).__name__})",
                        "pass a model.pt, best.pt or last.pt that mgdsl wrote") from None
    try:
        model.load_state_dict(state["model"] if isinstance(state, dict) and "model" in state else state)
    except Exception as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        why = "; ".join(lines[1:3]) if len(lines) > 1 else (lines[0] if lines else type(e).__name__)
        why = why if len(why) <= 240 else why[:237] + "..."
        raise DataError(f"{wpath} does not fit {name}: {why}",
                        "pass the same spec and -D values as in training") from None


class RunSummary(dict):
    """What train returns: the summary dict, and .load() for the trained model (mgdsl.load_run of the run)."""

    def load(self, weights: str = "last"):
        """The trained model with its preprocessing (a Predictor); weights "last" (model.pt) or "best"."""
        from .predict import load_run as load_trained
        return load_trained(self["out"], weights)


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


def train(spec, data: str | None = None, *, callback=None, **options) -> RunSummary | None:
    """Train a spec (a path or a compiled IR) on a data set; return the summary (None on ranks other than 0), a
    dict whose .load() gives the trained model (mgdsl.load_run of the run folder).

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
        return _summary(_resume(spec, Path(resume), defines, options, callback))
    if options.get("recipe", Config.recipe) not in RECIPES:
        raise DataError(f"unknown recipe '{options['recipe']}'", f"one of {', '.join(sorted(RECIPES))}")
    if isinstance(spec, (str, os.PathLike)):
        spec = compile_spec(str(spec), parse_overrides(defines))
    cfg = Config(**options)
    if cfg.train is None:
        raise DataError("no data set to train on", "pass --train DATASET")
    return _summary(_new_run(spec, cfg, callback))


def _summary(summary: dict | None) -> RunSummary | None:
    return RunSummary(summary) if summary is not None else None


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
    record.update(input_shape=list(shape), classes=data.classes, class_names=data.names)
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
    from .recipes import KEPT_ON_RESUME, RESUMABLE_KEYS, validate
    for k in sorted(RESUMABLE_KEYS - KEPT_ON_RESUME):
        if given.get(k) is not None:
            setattr(saved, k, given[k])
    saved.out = str(run)
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
