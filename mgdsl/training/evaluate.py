"""`mgdsl eval`: saved weights scored as in training (the run's spec, -D, normalisation, TTA and test set)."""
from __future__ import annotations

from pathlib import Path

from . import adapt, load_run, spec_of_run
from .recipes import Config


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
    from .loop import normalise
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
        xt = normalise(xt, rec["normalize"])
    else:
        mean, std = channel_stats(xt)
        xt = (xt - mean) / std
    yt = torch.from_numpy(y)
    batches = ((xt[s:s + 512], yt[s:s + 512]) for s in range(0, len(xt), 512))
    sc = evaluate(model, batches, torch.device("cpu"), False, classes, 1, tta=use_tta)
    return {"top1": sc.top1, "top5": sc.top5, "loss": sc.loss, "n": sc.n, "weights": str(wpath), "test": name,
            "tta": use_tta}
