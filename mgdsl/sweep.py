"""Hyper-parameter sweeps over any spec's `param`s with Optuna: each trial is one training run named by its -D
values (`width=16,nu=2`, so `mgdsl compile SPEC -D width=16 -D nu=2` repeats it), pruned early by the median
of the others; the study lives in an Optuna storage, so the same command with the same --storage continues it.

No argparse and no printing here (cli.py owns both); optuna is imported only when a sweep runs."""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .diagnostics import Diagnostic, SpecError, did_you_mean, install_hint

EXAMPLES = "-p width=8:64:log (integers, log scale), -p omega=0.5:1.0 (floats), -p nu=1,2 (a choice)"


@dataclass(frozen=True)
class Axis:
    """One swept param: an int or float range (log-scaled or not), or a list of choices (written as given)."""
    name: str
    kind: str  # "int", "float" or "choice"
    low: float = 0
    high: float = 0
    log: bool = False
    choices: tuple[str, ...] = ()

    def text(self) -> str:
        """The -p text that makes this axis (what a study records, to refuse a continuation with other axes)."""
        if self.kind == "choice":
            return f"{self.name}={','.join(self.choices)}"
        return f"{self.name}={_show(self.low)}:{_show(self.high)}" + (":log" if self.log else "")


def _show(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.4g}"


def _bad(text: str, problem: str, hint: str = EXAMPLES) -> SpecError:
    return SpecError([Diagnostic(f"-p {text}: {problem}", None, hint)])


def _number(text: str, whole: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise _bad(whole, f"'{text}' is not a number") from None
    if not math.isfinite(v):
        raise _bad(whole, f"'{text}' is not a finite number")
    return v


def parse_axis(text: str, params: dict) -> Axis:
    """`name=LOW:HIGH[:log]` or `name=A,B,...` against the spec's params; a bad one is a SpecError (exit 2)."""
    name, eq, value = (x.strip() for x in text.partition("="))
    if not eq or not name or not value:
        raise _bad(text, "expected name=LOW:HIGH[:log] or name=A,B,...")
    if name not in params:
        known = ", ".join(sorted(params)) if params else "none"
        raise _bad(text, f"the spec has no param '{name}'", did_you_mean(name, params) or f"its params: {known}")
    if isinstance(params[name], (tuple, list)):
        raise _bad(text, f"param {name} is a list; a sweep sets one number or name per trial",
                   f"sweep a number that the list is made of, or -D {name}=[...] to fix it")
    if ":" not in value:
        choices = tuple(c.strip() for c in value.split(","))
        if "" in choices or len(set(choices)) != len(choices):
            raise _bad(text, "the choices must be distinct and none empty")
        for c in choices:
            if not c.isidentifier():
                _number(c, text)  # a number, or a name for a name-valued param (kr=bilinear,linear)
        return Axis(name, "choice", choices=choices)
    parts = [p.strip() for p in value.split(":")]
    log = parts[-1] == "log"
    if log:
        parts = parts[:-1]
    if len(parts) != 2:
        raise _bad(text, "a range is LOW:HIGH or LOW:HIGH:log")
    low, high = (_number(p, text) for p in parts)
    if not low < high:
        raise _bad(text, f"LOW must be below HIGH ({parts[0]} is not below {parts[1]})")
    if log and low <= 0:
        raise _bad(text, "a log range needs LOW > 0")
    whole = all(p.lstrip("-").isdigit() for p in parts)
    return Axis(name, "int" if whole else "float", low, high, log)


def parse_axes(texts: list[str], params: dict) -> list[Axis]:
    """Every -p, each param at most once, at least one."""
    if not texts:
        raise SpecError([Diagnostic("a sweep needs at least one -p NAME=VALUES", None, EXAMPLES)])
    axes = [parse_axis(t, params) for t in texts]
    names = [a.name for a in axes]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SpecError([Diagnostic(f"-p {twice[0]} is given twice", None, "one -p per param")])
    return axes


def corners(axes: list[Axis]) -> list[str]:
    """One -D value per end of each axis (and each choice): what check_axes compiles before any trial."""
    out = []
    for a in axes:
        values = a.choices if a.kind == "choice" else (_show(a.low), _show(a.high))
        out += [f"{a.name}={v}" for v in values]
    return out


def check_axes(spec: str, axes: list[Axis], defines: tuple[str, ...] = ()) -> None:
    """Compile the spec at each end of each axis before any trial: `-p width=0:64` fails now, not in trial 7."""
    from . import compile_spec, parse_overrides
    for a in axes:
        if any(d.partition("=")[0].strip() == a.name for d in defines):
            raise _bad(a.text(), f"{a.name} is also fixed with -D", "sweep it with -p or fix it with -D, not both")
    for corner in corners(axes):
        try:
            compile_spec(spec, parse_overrides([*defines, corner]))
        except SpecError as e:
            e.diagnostics.insert(0, Diagnostic(f"-p: at {corner} the spec does not compile", None,
                                               "narrow the range to values the spec accepts"))
            raise


def suggest(trial, axes: list[Axis]) -> list[str]:
    """A trial's -D values, in axis order; a float is rounded to 4 digits so that its name is its value."""
    out = []
    for a in axes:
        if a.kind == "choice":
            v = trial.suggest_categorical(a.name, list(a.choices))
        elif a.kind == "int":
            v = trial.suggest_int(a.name, int(a.low), int(a.high), log=a.log)
        else:
            v = _show(trial.suggest_float(a.name, a.low, a.high, log=a.log))
        out.append(f"{a.name}={v}")
    return out


@dataclass
class Sweep:
    """What a sweep runs: the spec, its axes, the data, and the training options every trial shares."""
    spec: str
    axes: list[Axis]
    data: str
    out: str
    epochs: int
    trials: int
    storage: str | None = None
    study: str | None = None
    seed: int = 0
    options: dict | None = None  # other training options (recipes.Config fields): test, recipe, flip, threads, ...
    defines: tuple[str, ...] = ()  # -D values fixed for every trial


def _optuna():
    try:
        import optuna
    except ImportError:
        raise SpecError([Diagnostic("mgdsl sweep needs optuna", None, install_hint("train"))]) from None
    return optuna


def _record(sw: Sweep, text: str) -> dict:
    """What a study is of: a continuation with another spec, other axes, data or epochs would mix two sweeps."""
    import hashlib
    return {"spec": hashlib.sha256(text.encode()).hexdigest()[:16], "axes": [a.text() for a in sw.axes],
            "data": sw.data, "epochs": sw.epochs, "defines": list(sw.defines)}


def _storage_errors() -> tuple[type, ...]:
    """What Optuna raises for a storage URL it cannot open: a bad scheme, a file that cannot be made, ..."""
    try:
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:
        return ValueError, ImportError, OSError
    return ValueError, ImportError, OSError, SQLAlchemyError


def check_data(data: str, test: str | None) -> None:
    """--train and --test name a file, a folder or a data set that exists: else exit 2 before any trial (each
    trial would fail alike, and a sweep folder be written for nothing)."""
    from .training.data import NATURAL
    for flag, name in (("--train", data), ("--test", test)):
        if name is not None and name != "digits" and name not in NATURAL and not Path(name).exists():
            raise SpecError([Diagnostic(f"{flag} {name}: no such file or folder", None,
                                        "use digits, cifar10, cifar100, an .npz file or an image folder")])


def open_study(sw: Sweep, spec_text: str):
    """A new study, or the one of that name in the storage; one made with other settings is refused."""
    optuna = _optuna()
    name = sw.study or f"mgdsl-{Path(sw.spec).stem}-{Path(sw.data).stem}"
    try:
        study = optuna.create_study(study_name=name, storage=sw.storage, load_if_exists=True, direction="maximize",
                                    pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
    except _storage_errors() as e:
        raise SpecError([Diagnostic(f"--storage {sw.storage}: cannot open it ({str(e).splitlines()[0]})", None,
                                    "e.g. --storage sqlite:///sweep.db (a file in an existing folder)")]) from None
    # seeded by the history too: a continued study must not replay the first session's proposals
    study.sampler = optuna.samplers.TPESampler(seed=sw.seed + len(study.trials))
    want, have = _record(sw, spec_text), study.user_attrs.get("sweep")
    if have is None:
        study.set_user_attr("sweep", want)
    elif have != want:
        diff = ", ".join(f"{k} {have.get(k)} (now {want[k]})" for k in want if have.get(k) != want[k])
        raise SpecError([Diagnostic(f"the study '{name}' in {sw.storage} was made with other settings: {diff}",
                                    None, "use the same spec, -p, --train and --epochs to continue it, or another "
                                          "--study")])
    return study


def _run_trial(sw: Sweep, trial, values: list[str], on_epoch) -> dict:
    """Train one trial's run folder (or reuse it, if a finished run of the same -D values is there)."""
    from .training import train
    name = ",".join(values)
    run = Path(sw.out) / "trials" / name
    t = time.time()
    done = run / "summary.json"
    if done.exists() and json.loads(done.read_text()).get("epochs_done") == sw.epochs:
        s = json.loads(done.read_text())  # the same -D values again (a choice, or a continued study): no retrain
    else:
        s = train(sw.spec, sw.data, epochs=sw.epochs, seed=sw.seed, out=str(run), overwrite=True,
                  defines=[*sw.defines, *values], callback=on_epoch, **(sw.options or {}))
    return {"trial": trial.number, "name": name, **{v.split("=")[0]: v.split("=", 1)[1] for v in values},
            "params": s["params"], "macs": s.get("macs"), "best_test_acc": s["best_test_acc"],
            "best_epoch": s["best_epoch"], "epochs_done": s["epochs_done"], "pruned": bool(s["stopped_by_callback"]),
            "seconds": round(time.time() - t, 1), "run": str(run)}


def objective(sw: Sweep, on_trial=None):
    """The Optuna objective: best test accuracy of the trial's run; each epoch's accuracy lets the pruner stop it.
    A trial whose -D values the spec refuses, or whose loss goes NaN, fails with its reason recorded."""
    optuna = _optuna()
    from .training.loop import Diverged

    def run(trial) -> float:
        def report(m: dict) -> bool:
            trial.report(m["test_acc"], m["epoch"])
            return trial.should_prune()  # True stops the run after this epoch
        values = suggest(trial, sw.axes)
        trial.set_user_attr("name", ",".join(values))
        try:
            row = _run_trial(sw, trial, values, report)
        except (SpecError, Diverged) as e:
            trial.set_user_attr("error", str(e).splitlines()[0])
            if on_trial is not None:
                on_trial({"trial": trial.number, "name": ",".join(values), "error": trial.user_attrs["error"]})
            raise
        trial.set_user_attr("row", row)
        if on_trial is not None:
            on_trial(row)
        if row["pruned"]:
            raise optuna.TrialPruned()
        return row["best_test_acc"]
    return run


def run_sweep(sw: Sweep, spec_text: str, on_trial=None) -> list[dict]:
    """Run sw.trials more trials of the study; return the rows of every trial it holds (every worker's)."""
    from .training.loop import Diverged
    study = open_study(sw, spec_text)
    study.optimize(objective(sw, on_trial), n_trials=sw.trials, catch=(SpecError, Diverged))
    return rows_of(study)


def rows_of(study) -> list[dict]:
    """One row per trial that trained, plus the failed ones with their reason."""
    rows = []
    for t in study.trials:
        if "row" in t.user_attrs:
            rows.append(t.user_attrs["row"])
        elif "error" in t.user_attrs:
            rows.append({"trial": t.number, "name": t.user_attrs.get("name", ""), "error": t.user_attrs["error"]})
    return rows


def pareto(rows: list[dict], cost: str) -> list[dict]:
    """The finished trials no other finished trial beats on both cost and accuracy."""
    done = [r for r in rows if "error" not in r and not r["pruned"] and r.get(cost) is not None]
    return [r for r in done if not any(o[cost] <= r[cost] and o["best_test_acc"] >= r["best_test_acc"]
                                       and (o[cost], o["best_test_acc"]) != (r[cost], r["best_test_acc"])
                                       for o in done)]


def table(rows: list[dict], axes: list[Axis]) -> str:
    """A markdown table, best accuracy first; pruned trials next, marked; failed ones last, with the reason."""
    cols = [a.name for a in axes]
    head = ("| trial | " + " | ".join(cols) + " | params | MACs | best acc | at epoch | epochs | seconds |\n"
            + "|---:" * (len(cols) + 7) + "|\n")
    body = ""
    key = (lambda r: ("error" in r, r.get("pruned", False), -r.get("best_test_acc", 0), r["trial"]))
    for r in sorted(rows, key=key):
        if "error" in r:
            values = dict(v.split("=", 1) for v in r["name"].split(",") if "=" in v)
            body += f"| {r['trial']} | " + " | ".join(values.get(c, "") for c in cols) + f" | failed: {r['error']} |\n"
            continue
        macs = f"{r['macs']:,}" if r.get("macs") is not None else "n/a"
        body += (f"| {r['trial']} | " + " | ".join(str(r.get(c, "")) for c in cols) + f" | {r['params']:,} | {macs}"
                 f" | {100 * r['best_test_acc']:.2f}% | {r['best_epoch']} | {r['epochs_done']}"
                 f"{' (pruned)' if r['pruned'] else ''} | {r['seconds']:.0f} |\n")
    return head + body


def plot(rows: list[dict], path: Path) -> None:
    """Best accuracy against parameters and MACs; the Pareto front joined and named, pruned trials hollow."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = [r for r in rows if "error" not in r]
    costs = [c for c in ("params", "macs") if any(r.get(c) is not None for r in ok)]
    fig, axes = plt.subplots(1, max(1, len(costs)), figsize=(5 * max(1, len(costs)), 4), squeeze=False)
    for ax, cost in zip(axes[0], costs):
        for pruned in (False, True):
            pts = [r for r in ok if r["pruned"] == pruned and r.get(cost) is not None]
            style = {"facecolors": "none", "edgecolors": "C0"} if pruned else {"color": "C0"}
            ax.scatter([r[cost] for r in pts], [100 * r["best_test_acc"] for r in pts],
                       label="pruned" if pruned else "finished", **style)
        front = sorted(pareto(ok, cost), key=lambda r: r[cost])
        ax.plot([r[cost] for r in front], [100 * r["best_test_acc"] for r in front], "k--", lw=1, label="Pareto front")
        for r in front:
            ax.annotate(r["name"], (r[cost], 100 * r["best_test_acc"]), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
        ax.set(xscale="log", xlabel="parameters" if cost == "params" else "MACs per image",
               ylabel="best test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    from .files import atomic_write, figure_bytes
    atomic_write(path, figure_bytes(fig))


def write_results(rows: list[dict], axes: list[Axis], out: str) -> list[Path]:
    """OUT/trials.json, OUT/table.md and OUT/pareto.png, each written whole or not at all."""
    from .training.runs import atomic_write
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "trials.json", folder / "table.md", folder / "pareto.png"]
    atomic_write(paths[0], json.dumps({"axes": [asdict(a) for a in axes], "trials": rows}, indent=2))
    atomic_write(paths[1], table(rows, axes))
    plot(rows, paths[2])
    return paths
