"""Training: the paper's recipe in one readable loop, resumable exactly, with atomic outputs."""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .diagnostics import Diagnostic, SpecError

RECIPES = {
    # section 9.2 of the paper
    "paper": dict(epochs=120, batch_size=128, lr=0.1, momentum=0.9, weight_decay=0.0, lr_step=30, lr_gamma=0.1),
    # the authors' later public code
    "official": dict(epochs=300, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4, lr_step=50, lr_gamma=0.1),
}


@dataclass
class Config:
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


RUN_FILES = ("config.json", "metrics.jsonl", "model.pt", "last.pt", "summary.json")


def _holds_run(d: Path) -> bool:
    return d.is_dir() and any((d / f).exists() for f in RUN_FILES)


def _fresh_run_dir(base: str) -> str:
    """runs/NAME-DATA, or runs/NAME-DATA-2, -3, ... so that an earlier run is never overwritten."""
    k, out = 1, base
    while _holds_run(Path(out)):
        k += 1
        out = f"{base}-{k}"
    return out


def add_train_args(p) -> None:
    g = p.add_argument_group("training (with --train)")
    g.add_argument("--test", help="evaluation set for an .npz train set (same layout); default: the data set's own test split")
    g.add_argument("--data", default=os.path.join(os.path.expanduser("~"), ".cache", "mgdsl"),
                   help="folder for downloaded data sets")
    g.add_argument("--recipe", choices=sorted(RECIPES), default="paper",
                   help="paper: section 9.2 (SGD, lr 0.1 /10 every 30 epochs); official: the authors' later code")
    g.add_argument("--epochs", type=int, help="default: from the recipe (paper 120, official 300)")
    g.add_argument("--batch-size", type=int, help="default: from the recipe (128)")
    g.add_argument("--lr", type=float, help="initial learning rate; default: from the recipe (0.1)")
    g.add_argument("--weight-decay", type=float, help="default: from the recipe (paper 0, official 5e-4)")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: cuda when available")
    g.add_argument("--amp", action="store_true", help="bf16 autocast")
    g.add_argument("--channels-last", action="store_true", help="NHWC memory format (faster convolutions on GPUs)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and augmentation")
    g.add_argument("--out", help="output folder (default runs/NAME-DATASET, numbered if taken)")
    g.add_argument("--overwrite", action="store_true", help="let --out replace the run already in it")
    g.add_argument("--resume", metavar="DIR", help="continue the run in DIR exactly; default: a new run")
    g.add_argument("--no-augment", action="store_true", help="no random crop / flip")
    g.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across processes under torchrun")


def resolve_config(ir, args) -> Config:
    """Recipe values, then single flags on top; the result is saved with the run."""
    r = dict(RECIPES[args.recipe])
    for key in ("epochs", "batch_size", "lr", "weight_decay"):
        v = getattr(args, key, None)
        if v is not None:
            r[key] = v
    if getattr(args, "epochs", None) is not None:
        # compress the step schedule with the run: paper divides by 10 every quarter of its 120 epochs
        base = RECIPES[args.recipe]
        r["lr_step"] = max(1, round(base["lr_step"] * r["epochs"] / base["epochs"]))
    dataset = args.train
    out = args.out or _fresh_run_dir(os.path.join("runs", f"{ir.name}-{Path(dataset).stem}"))
    rank0 = os.environ.get("RANK", "0") == "0"  # only rank 0 writes; the others must not race its first files
    if rank0 and args.out and _holds_run(Path(out)) and not getattr(args, "overwrite", False):
        raise DataError(f"{out} already holds a run (config.json / model.pt): it is not overwritten",
                        f"continue it with --resume {out}, pick another --out, or pass --overwrite")
    return Config(dataset=dataset, test=args.test, data=args.data, recipe=args.recipe, device=args.device,
                  amp=args.amp, channels_last=args.channels_last, compile=args.compile, seed=args.seed, out=out,
                  augment=not args.no_augment, **r)


# ------------------------------------------------------------------ data

class DataError(SpecError):
    """Bad data or data-set name: a clear message and exit code 2, like a spec error."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__([Diagnostic(message, None, hint)])


DIGITS_NOTE = "scikit-learn's 8x8 digits (1,797 images): a stratified split, 1,437 train / 360 test, random_state=0"


def load_dataset(name: str, test: str | None, root: str):
    """(x_train, y_train, x_test, y_test) as uint8 NHWC and int64 arrays."""
    import numpy as np
    if name == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
        d = load_digits()
        x = np.clip(np.round(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
        xtr, xte, ytr, yte = train_test_split(x, d.target.astype(np.int64), test_size=0.2, random_state=0,
                                              stratify=d.target)
        return xtr, ytr, xte, yte
    if name in ("cifar10", "cifar100"):
        import torchvision
        import socket
        cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        socket.setdefaulttimeout(30)  # a machine without a network fails in seconds, not minutes
        try:
            tr = cls(root, train=True, download=True)
            te = cls(root, train=False, download=True)
        except Exception as e:
            raise DataError(f"could not download {name} into {root} ({type(e).__name__})",
                            f"without a network, pass a local copy: --data DIR with torchvision's {name} files, "
                            "or an .npz (keys x, y) with --test") from None
        return tr.data, np.asarray(tr.targets), te.data, np.asarray(te.targets)
    p = Path(name)
    if p.suffix == ".npz":
        xtr, ytr = _npz(p)
        if test is None:
            raise DataError(f"{name} is a training set; pass the evaluation set with --test PATH.npz")
        xte, yte = _npz(Path(test))
        if xte.shape[1:] != xtr.shape[1:]:
            raise DataError(f"--test images are {xte.shape[1:]} but training images are {xtr.shape[1:]}")
        return xtr, ytr, xte, yte
    if p.is_dir():
        return _image_folder(p, Path(test) if test else None)
    raise DataError(f"unknown data set '{name}'",
                    "use digits, cifar10, cifar100, a .npz file (keys x: uint8 NxHxWxC, y) or an image folder")


def _npz(p: Path):
    import numpy as np
    if not p.exists():
        raise DataError(f"no such file: {p}")
    try:
        z = np.load(p, allow_pickle=False)
        x, y = z["x"], z["y"]
    except KeyError as e:
        raise DataError(f"{p}: missing key {e}", "an .npz data set needs keys x (uint8 N x H x W x C) and y") from None
    except Exception as e:
        raise DataError(f"{p}: not a readable .npz ({type(e).__name__})") from None
    if x.dtype != np.uint8 or x.ndim != 4:
        raise DataError(f"{p}: x is {x.dtype} with shape {x.shape}", "expected uint8 N x H x W x C (HWC, like ../shared/data)")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{p}: y must be N integer labels, got {y.dtype} {y.shape}")
    return x, y.astype(np.int64)


def _image_folder(root: Path, test: Path | None):
    import numpy as np
    from torchvision.datasets import ImageFolder

    def read(folder):
        ds = ImageFolder(str(folder))
        if not len(ds):
            raise DataError(f"{folder}: no images found", "expected one sub-folder of images per class")
        imgs = [np.asarray(ds[i][0].convert("RGB")) for i in range(len(ds))]
        if len({im.shape for im in imgs}) != 1:
            raise DataError(f"{folder}: images differ in size; resize them to one size first")
        return np.stack(imgs), np.asarray(ds.targets, dtype=np.int64)

    if test is None and (root / "train").is_dir() and (root / "test").is_dir():
        root, test = root / "train", root / "test"
    x, y = read(root)
    if test is None:
        rng = np.random.default_rng(0)
        idx = rng.permutation(len(x))
        cut = int(0.8 * len(x))
        return x[idx[:cut]], y[idx[:cut]], x[idx[cut:]], y[idx[cut:]]
    xt, yt = read(test)
    return x, y, xt, yt


def adapt(ir, shape: tuple[int, int, int], classes: int):
    """Re-elaborate the spec for the data's channels, size and class count (the spec adapts or says why not)."""
    from dataclasses import replace

    from . import syntax as S
    from .check import check
    from .diagnostics import Source
    from .elaborate import elaborate
    from .syntax import parse, read_source

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


# ------------------------------------------------------------------ the loop

def _atomic_save(obj, path: Path) -> None:
    import torch
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_text(text: str, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def augment(x, gen, pad: int = 4, flip_ok: bool = True):
    """Random crop (zero pad 4) and horizontal flip on a whole batch at once: no per-image Python."""
    import torch
    n, c, h, w = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    rows = (dy.view(n, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, c, h, w)
    cols = (dx.view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, c, h, w)
    out = xp[torch.arange(n, device=x.device).view(n, 1, 1, 1), torch.arange(c, device=x.device).view(1, c, 1, 1),
             rows, cols]
    flip = (torch.rand(n, generator=gen, device=x.device) < 0.5) & flip_ok
    return torch.where(flip.view(n, 1, 1, 1), out.flip(3), out)


def to_images(x, device):
    """uint8 N x H x W x C to float N x C x H x W in [0, 1]."""
    import torch
    return torch.from_numpy(x).to(device).permute(0, 3, 1, 2).float().div_(255)


def channel_stats(x):
    """Per-channel mean and std for normalisation (std floored so a constant channel does not divide by 0)."""
    return x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True).clamp_min(1e-6)


def evaluate(model, x, y, batch_size, amp):
    import torch
    model.eval()
    correct, loss = 0, 0.0
    with torch.no_grad(), torch.autocast(x.device.type, torch.bfloat16, enabled=amp):
        for s in range(0, len(x), batch_size):
            out = model(x[s:s + batch_size]).float()
            loss += torch.nn.functional.cross_entropy(out, y[s:s + batch_size], reduction="sum").item()
            correct += (out.argmax(1) == y[s:s + batch_size]).sum().item()
    return loss / len(x), correct / len(x)


def _versions() -> dict:
    import lark
    import numpy
    import torch
    from . import __version__
    return {"mgdsl": __version__, "torch": torch.__version__, "numpy": numpy.__version__, "lark": lark.__version__,
            "python": sys.version.split()[0]}


def _plot(metrics: list[dict], path: Path) -> None:
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
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def _dist():
    """(rank, world, local_rank) under torchrun, else (0, 1, 0)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def main(ir, args) -> int:
    import numpy as np
    import torch

    rank, world, local_rank = _dist()
    resume = Path(args.resume) if getattr(args, "resume", None) else None
    if resume:
        if not (resume / "config.json").exists() or not (resume / "last.pt").exists():
            raise DataError(f"--resume {resume}: no config.json and last.pt there")
        cfg = Config(**json.loads((resume / "config.json").read_text())["config"])
        cfg.out = str(resume)
    else:
        cfg = resolve_config(ir, args)
    if cfg.device == "auto":
        cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise DataError("--device cuda but no CUDA device is available", "use --device cpu")
    if world > 1:
        import torch.distributed as dist
        backend = "nccl" if cfg.device == "cuda" else "gloo"
        dist.init_process_group(backend)
        if cfg.device == "cuda":
            torch.cuda.set_device(local_rank)
    device = torch.device(cfg.device, local_rank) if cfg.device == "cuda" else torch.device("cpu")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    xtr, ytr, xte, yte = load_dataset(cfg.dataset, cfg.test, cfg.data)
    classes = int(max(ytr.max(), yte.max()) + 1)
    ir = adapt(ir, (xtr.shape[3], xtr.shape[1], xtr.shape[2]), classes)

    from .lowering import lower_ir
    model = lower_ir(ir).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in model.parameters())

    xtr_t, xte_t = to_images(xtr, device), to_images(xte, device)
    mean, std = channel_stats(xtr_t)
    xtr_t, xte_t = (xtr_t - mean) / std, (xte_t - mean) / std
    ytr_t, yte_t = torch.from_numpy(ytr).to(device), torch.from_numpy(yte).to(device)

    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    out = Path(cfg.out)
    start_epoch = 0
    if resume:
        ck = torch.load(out / "last.pt", map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["rng"]["torch"])
        start_epoch = ck["epoch"]
    net = model
    if world > 1 and getattr(args, "sync_bn", False):
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if cfg.device == "cuda" else None)
    fwd = torch.compile(net) if cfg.compile else net
    lead = rank == 0
    if lead:
        out.mkdir(parents=True, exist_ok=True)
        spec_text = Path(ir.path).read_text()
        _atomic_text(json.dumps({
            "config": asdict(cfg), "spec": ir.path, "spec_sha256": hashlib.sha256(spec_text.encode()).hexdigest(),
            "params_override": ir.params, "input_shape": list(ir.input_ty.shape), "classes": classes,
            "params": params, "normalize": {"mean": mean.flatten().tolist(), "std": std.flatten().tolist()},
            "world_size": world, "versions": _versions(),
            "data_note": DIGITS_NOTE if cfg.dataset == "digits" else None}, indent=2), out / "config.json")
    metrics_path = out / "metrics.jsonl"
    metrics = []
    if lead and resume and metrics_path.exists():
        metrics = [json.loads(l) for l in metrics_path.read_text().splitlines() if l.strip()][:start_epoch]
        _atomic_text("".join(json.dumps(m) + "\n" for m in metrics), metrics_path)
    elif lead:
        _atomic_text("", metrics_path)

    n = len(xtr_t)
    pad = max(1, round(4 * xtr_t.shape[2] / 32))  # the paper's pad 4 at 32x32, scaled with the image
    flip_ok = cfg.dataset != "digits"  # a mirrored digit is another symbol
    per_rank = cfg.batch_size // world
    steps = n // cfg.batch_size if n >= cfg.batch_size else 1
    tty = sys.stderr.isatty() and lead
    t_run = time.time()
    try:
        for epoch in range(start_epoch, cfg.epochs):
            gen = torch.Generator(device=device).manual_seed(cfg.seed * 100003 + epoch)
            perm = torch.randperm(n, generator=gen, device=device)
            net.train()
            t0 = time.time()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            seen = 0
            bar = None
            if tty:
                from tqdm import tqdm
                bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, file=sys.stderr)
            for s in range(steps):
                idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
                idx = idx[rank * per_rank:(rank + 1) * per_rank] if world > 1 else idx
                xb = xtr_t[idx]
                if cfg.augment:
                    xb = augment(xb, gen, pad, flip_ok)
                if cfg.channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                yb = ytr_t[idx]
                with torch.autocast(device.type, torch.bfloat16, enabled=cfg.amp):
                    logits = fwd(xb)
                    loss = torch.nn.functional.cross_entropy(logits.float(), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.detach() * len(idx)
                correct += (logits.detach().argmax(1) == yb).sum()
                seen += len(idx)
                if bar:
                    bar.update(1)
            if bar:
                bar.close()
            if world > 1:  # the logged epoch metrics are over the global batch (one sync per epoch)
                import torch.distributed as dist
                tot = torch.stack([loss_sum, correct.to(loss_sum.dtype),
                                   torch.tensor(float(seen), device=device)])
                dist.all_reduce(tot)
                loss_sum, correct, seen = tot[0], tot[1], int(tot[2].item())
            train_loss = loss_sum.item() / seen
            if not math.isfinite(train_loss):
                raise FloatingPointError(f"epoch {epoch + 1}: the training loss is {train_loss}")
            lr = sched.get_last_lr()[0]
            sched.step()
            secs = time.time() - t0
            if lead:
                test_loss, test_acc = evaluate(model, xte_t, yte_t, 512, cfg.amp)
                m = {"epoch": epoch + 1, "lr": lr,
                     "train_loss": train_loss, "train_acc": float(correct.item()) / seen, "test_loss": test_loss,
                     "test_acc": test_acc, "seconds": secs, "images_per_s": seen / secs}
                metrics.append(m)
                with open(metrics_path, "a") as fh:
                    fh.write(json.dumps(m) + "\n")
                _atomic_save(model.state_dict(), out / "model.pt")
                _atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                              "scheduler": sched.state_dict(), "epoch": epoch + 1,
                              "rng": {"torch": torch.get_rng_state()}}, out / "last.pt")
                print(f"epoch {epoch + 1:3d}  lr {m['lr']:.4g}  train {train_loss:.4f} / {m['train_acc']:.4f}  "
                      f"test {test_loss:.4f} / {test_acc:.4f}  {secs:.1f}s  {m['images_per_s']:.0f} img/s",
                      file=sys.stderr)
    except FloatingPointError as e:
        if lead:
            print(f"mgdsl: stopped: {e}; the last good checkpoint is {out / 'last.pt'}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if lead:
            for tmp in out.glob("*.tmp*"):  # a write cut short: the previous complete file is still in place
                tmp.unlink(missing_ok=True)
            print(f"mgdsl: interrupted; resume with --resume {out}", file=sys.stderr)
        return 130
    if lead and metrics:
        _plot(metrics, out / "curves.png")
        summary = {"name": ir.name, "dataset": cfg.dataset, "params": params, "epochs": cfg.epochs,
                   "final_test_acc": metrics[-1]["test_acc"], "best_test_acc": max(m["test_acc"] for m in metrics),
                   "seconds": sum(m["seconds"] for m in metrics), "wall_seconds": time.time() - t_run,
                   "device": str(device)}
        _atomic_text(json.dumps(summary, indent=2), out / "summary.json")
        print(json.dumps(summary))
    if world > 1:
        import torch.distributed as dist
        dist.destroy_process_group()
    return 0


# ------------------------------------------------------------------ eval

def add_eval_parser(sub, add_defines) -> None:
    e = sub.add_parser("eval", help="top-1 accuracy of saved weights on a test set")
    e.add_argument("spec", help="the spec the weights were trained with (a .mg file or a bundled name)")
    add_defines(e)
    e.add_argument("--weights", required=True, help="a state_dict, e.g. runs/NAME/model.pt")
    e.add_argument("--test", required=True, help="digits, cifar10, cifar100 or an .npz file")
    e.add_argument("--data", default=os.path.join(os.path.expanduser("~"), ".cache", "mgdsl"),
                   help="folder for downloaded data sets")
    e.set_defaults(fn=cmd_eval)


def cmd_eval(args) -> int:
    import numpy as np
    import torch

    from .cli import _ir
    ir = _ir(args)
    if args.test.endswith(".npz"):
        x, y = _npz(Path(args.test))
    else:
        _, _, x, y = load_dataset(args.test, None, args.data)
    wpath = Path(args.weights)
    if not wpath.exists():
        raise DataError(f"no such file: {wpath}")
    cfg_path = wpath.parent / "config.json"
    cfgj = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    classes = cfgj.get("classes", int(y.max()) + 1)
    ir = adapt(ir, (x.shape[3], x.shape[1], x.shape[2]), classes)
    from .lowering import lower_ir
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
    print(json.dumps({"top1": acc, "loss": loss, "n": len(y)}))
    return 0
