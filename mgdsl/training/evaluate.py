"""`mgdsl eval`: saved weights scored as in training (the run's spec, -D, normalisation, TTA and test set), with
the accuracy of each class and the confusion matrix, written as JSON and as a picture."""
from __future__ import annotations

import json
from pathlib import Path

from . import adapt, load_run, load_state, spec_of_run
from .recipes import Config


def evaluate_run(target: str, *, defines=None, weights: str | None = None, test: str | None = None,
                 data_root: str | None = None, tta: bool | None = None) -> dict:
    """Top-1 accuracy, loss, per-class accuracy and confusion matrix of saved weights, normalised and tested as in
    training.

    target is a run folder (its spec, -D, normalisation, recipe and test set are used; weights default to its
    model.pt) or a spec file (then weights is required and the run is the folder that holds them).
    tta None scores as the run did (flip test-time augmentation if its recipe used it); True/False force it."""
    import torch

    from .data import DataError
    from .metrics import evaluate

    ir, rec, wpath = _spec_and_weights(target, defines, weights)
    cfg = Config.from_dict(rec.get("config", {}))
    use_tta = bool(cfg.tta) if tta is None else tta
    if test is not None:  # another test set, scored whole
        name = test
    elif cfg.train is not None:  # the run's own test set
        name = cfg.test or cfg.train
    else:
        raise DataError(f"eval {target}: pass --test DATA (no run config beside {wpath})")
    if (rec.get("data_plan") or {}).get("mode") == "stream" and Path(name).is_dir():
        batches, shape, classes, names = _streamed_test_set(rec, cfg, name, test)
    else:
        batches, shape, classes, names = _memory_test_set(rec, cfg, name, test, data_root or cfg.data_root)
    model = _load_weights(adapt(ir, shape, classes), wpath)
    sc = evaluate(model, batches, torch.device("cpu"), False, classes, 1, tta=use_tta, confusion=True)
    return {"top1": sc.top1, "top5": sc.top5, "loss": sc.loss, "n": sc.n, "weights": str(wpath), "test": name,
            "tta": use_tta, **per_class(sc.confusion, names)}


def _spec_and_weights(target: str, defines, weights: str | None):
    """(the spec's IR, the run's config.json or {}, the weights file) of a run folder or of a spec + weights."""
    from .. import compile_spec, parse_overrides
    from .data import DataError
    t = Path(target)
    if t.is_dir():
        rec = load_run(target)
        return spec_of_run(rec), rec, _existing(Path(weights) if weights else t / "model.pt")
    if not weights:
        if not t.exists():
            raise DataError(f"eval {target}: no such run folder", "a folder that `mgdsl compile --train` wrote, "
                            "or a spec with --weights FILE.pt")
        raise DataError(f"eval {target}: pass --weights FILE.pt (or give a run folder instead of a spec)")
    ir = compile_spec(target, parse_overrides(defines))
    wpath = Path(weights)
    rec = load_run(str(wpath.parent)) if (wpath.parent / "config.json").exists() else {}
    return ir, rec, _existing(wpath)


def _existing(path: Path) -> Path:
    from .data import DataError
    if not path.exists():
        raise DataError(f"no such file: {path}")
    return path


def _streamed_test_set(rec: dict, cfg: Config, name: str, test: str | None):
    """(batches, shape, classes, class names) of an image folder, resized and centre-cropped to the spec's input
    as the run evaluated it."""
    from .data import DataError
    from .stream import Augmented, EvalShard, eval_transform, folder_split, image_folder, make_loader, \
        open_folders, pil_mode
    shape = tuple(rec["input_shape"])
    classes = rec["classes"]
    if test is None:  # exactly as in training: a held-out split stays the same split
        _, ds, names = open_folders(Path(cfg.train), Path(cfg.test) if cfg.test else None, shape[0])
    else:  # scored whole
        ds = image_folder(folder_split(Path(name), None).test or Path(name), pil_mode(shape[0]))
        names = ds.classes
    if len(names) != classes:
        raise DataError(f"{name}: {len(names)} class folders, but the run has {classes} classes")
    norm = rec["normalize"]
    loader = make_loader(Augmented(ds, eval_transform(shape, norm["mean"], norm["std"])),
                         EvalShard(len(ds), 1, 0), 64, 0, False, False)
    return loader, shape, classes, list(names)


def _memory_test_set(rec: dict, cfg: Config, name: str, test: str | None, root: str):
    """(batches, shape, classes, class names or None) of a test set decoded into memory and normalised with the
    training set's statistics."""
    import torch

    from ..ir import shape_text
    from .data import DataError, channel_stats, load_dataset, load_test_set, to_images
    from .loop import standardise
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
    xt = to_images(x, "cpu")
    if "normalize" in rec:  # the training set's statistics, saved with the run
        xt = standardise(xt, rec["normalize"])
    else:
        mean, std = channel_stats(xt)
        xt = (xt - mean) / std
    yt = torch.from_numpy(y)
    batches = ((xt[s:s + 512], yt[s:s + 512]) for s in range(0, len(xt), 512))
    # the model's outputs are the training set's classes: its names first, else the scored set's
    saved = rec.get("class_names")  # what the run saved from its data (runs made before that: read the data again)
    names = saved if saved and len(saved) == classes else \
        next((n for n in (names_of(cfg.train, root), names_of(name, root)) if n and len(n) == classes), None)
    return batches, shape, classes, names


def _load_weights(ir, wpath: Path):
    """The lowered spec with the weights in wpath (a state_dict or a last.pt checkpoint), or one clear line."""
    from ..lowering import lower_ir
    model = lower_ir(ir)
    load_state(model, wpath, ir.name)
    return model


def names_of(data: str | None, root: str) -> list[str] | None:
    """The class names a data set carries: an .npz's `classes` key when it holds names, an image folder's class
    folders, CIFAR's; None when it has none (digits: the index is the digit)."""
    if data is None:
        return None
    p = Path(data)
    if data in ("cifar10", "cifar100"):
        import torchvision
        cls = torchvision.datasets.CIFAR10 if data == "cifar10" else torchvision.datasets.CIFAR100
        try:
            return list(cls(root, train=False, download=False).classes)
        except Exception:  # not downloaded where the run says: the indices will do
            return None
    if p.is_dir():
        from torchvision.datasets.folder import find_classes

        from .stream import folder_split
        try:
            return list(find_classes(str(folder_split(p, None).train))[0])
        except (FileNotFoundError, OSError):
            return None
    if p.is_file() and p.suffix == ".npz":
        import numpy as np
        with np.load(p, allow_pickle=False) as z:
            c = z["classes"] if "classes" in z.files else None
            return [str(v) for v in c] if c is not None and c.ndim == 1 else None
    return None


def per_class(confusion: list[list[int]], names: list[str] | None) -> dict:
    """Each class's images, correct guesses and accuracy (a row of the confusion matrix: its diagonal entry over
    its sum; None for a class with no test images), with the matrix itself (row: true class, column: guess)."""
    rows = []
    for i, row in enumerate(confusion):
        n = sum(row)
        rows.append({"class": names[i] if names else str(i), "index": i, "images": n, "correct": row[i],
                     "accuracy": row[i] / n if n else None})
    return {"class_names": names, "per_class": rows, "confusion": confusion}


def report_path(target: str, weights: str, test: str | None, tta: bool | None) -> Path:
    """Where eval writes its report without --out: in the run folder (for a spec, beside the weights), named after
    the weights, the test set if another one was given, and a forced TTA choice, so that each question asked
    of a run has its own file and asking it again replaces it."""
    folder = Path(target) if Path(target).is_dir() else Path(weights).parent
    stem = f"eval-{Path(weights).stem}"
    if test is not None:
        stem += f"-on-{Path(test).stem}"
    if tta is not None:
        stem += "-tta" if tta else "-no-tta"
    return folder / f"{stem}.json"


def write_report(report: dict, path: Path) -> list[Path]:
    """The report as JSON at path and its confusion matrix as a PNG beside it (each written atomically)."""
    from .data import DataError
    from .runs import atomic_write
    png = path.with_suffix(".png")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(report, indent=2) + "\n")
        atomic_write(png, confusion_png(report))
    except OSError as e:
        raise DataError(f"cannot write the eval report {path}: {e.strerror}", "pass --out FILE.json elsewhere") from None
    return [path, png]


def confusion_png(report: dict) -> bytes:
    """The confusion matrix as a picture: rows true classes, columns guesses, each row coloured by its share (so
    a small class is as visible as a large one), counts written in when the matrix is small enough to read."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    cm = np.asarray(report["confusion"], dtype=float)
    k = len(cm)
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    side = min(max(4.0, 0.45 * k + 2), 16)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if k <= 40:
        labels = report["class_names"] or [str(i) for i in range(k)]
        ax.set_xticks(range(k), labels, rotation=90 if any(len(s) > 2 for s in labels) else 0)
        ax.set_yticks(range(k), labels)
    if k <= 15:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                            color="white" if share[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted class", ylabel="true class",
           title=f"top-1 {100 * report['top1']:.2f}% of {report['n']:,} ({Path(report['test']).name})")
    from ..files import figure_bytes
    return figure_bytes(fig)
