"""Sweep MgNet's width, nu and Pi with Optuna (pruning bad trials early); write a table and a Pareto plot.

    pip install optuna
    python tools/sweep.py --train ../shared/data/cifar10-train-10k.npz --test ../shared/data/cifar10-test-2k.npz \
        --trials 20 --epochs 5 --out sweeps/cifar10k

Every trial is a normal training run (OUT/trial-N, resumable and evaluable with mgdsl). Optuna's storage
(--storage sqlite:///sweep.db, or a database URL) lets several machines run trials of one study at once:
start this script on each with the same --storage and --study. Pi chooses the spec: Pi0 (zero interpolation),
Pi1 (a trained stride-2 convolution) or Pi2 (a channel-wise one), the Table 2 specs, all at the same width.
Writes OUT/trials.json, OUT/table.md and OUT/pareto.png (best accuracy against parameters and MACs).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mgdsl import compile_spec  # noqa: E402
from mgdsl.training import adapt, train  # noqa: E402

PI_SPECS = {  # Pi -> the Table 2 spec with that interpolation (f's width is set equal to u's)
    0: "specs/table2/mgnet-256-256-pi0.mg",
    1: "specs/table2/mgnet-256-256-pi1.mg",
    2: "specs/table2/mgnet-256-512-pi2.mg",
}


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def defines_for(pi: int, width: int, nu: int) -> dict:
    """-D values of a trial: Pi2's spec has its own f width, kept equal to u's so that only Pi changes."""
    d = {"width": width, "nu": nu}
    if "fwidth" in compile_spec(str(ROOT / PI_SPECS[pi])).params:
        d["fwidth"] = width
    return d


def macs_of(spec: str, defines: dict, run: Path) -> int | None:
    """Forward MACs per image of the trained model (as adapted to the data), if mgdsl.cost is there."""
    try:
        from mgdsl.cost import macs
    except ImportError:
        return None
    rec = json.loads((run / "config.json").read_text())
    ir = adapt(compile_spec(spec, defines), tuple(rec["input_shape"]), rec["classes"])
    return macs(ir).total


def objective(trial, args, rows: list[dict]) -> float:
    """One training run; reports test accuracy per epoch so the pruner can stop it."""
    import optuna
    width = trial.suggest_categorical("width", args.widths)
    nu = trial.suggest_categorical("nu", args.nus)
    pi = trial.suggest_categorical("pi", args.pis)
    spec = str(ROOT / PI_SPECS[pi])
    defines = defines_for(pi, width, nu)
    run = Path(args.out) / f"trial-{trial.number}"

    def report(m: dict) -> bool:
        trial.report(m["test_acc"], m["epoch"])
        return trial.should_prune()  # True stops the run after this epoch

    t = time.time()
    s = train(spec, args.train, test=args.test, epochs=args.epochs, recipe=args.recipe, flip=args.flip,
              threads=args.threads, seed=args.seed, out=str(run), overwrite=True, defines=defines, callback=report)
    row = {"trial": trial.number, "pi": pi, "width": width, "nu": nu, "params": s["params"],
           "macs": macs_of(spec, defines, run), "best_test_acc": s["best_test_acc"], "best_epoch": s["best_epoch"],
           "epochs_done": s["epochs_done"], "pruned": s["stopped_by_callback"], "seconds": round(time.time() - t, 1),
           "run": str(run)}
    rows.append(row)
    trial.set_user_attr("row", row)
    if s["stopped_by_callback"]:
        raise optuna.TrialPruned()
    return s["best_test_acc"]


def pareto(rows: list[dict], cost: str) -> list[dict]:
    """The finished trials no other finished trial beats on both cost and accuracy."""
    done = [r for r in rows if not r["pruned"] and r[cost] is not None]
    return [r for r in done if not any(o[cost] <= r[cost] and o["best_test_acc"] >= r["best_test_acc"]
                                       and (o[cost], o["best_test_acc"]) != (r[cost], r["best_test_acc"])
                                       for o in done)]


def table(rows: list[dict]) -> str:
    """A markdown table, best accuracy first; pruned trials last, marked."""
    head = "| trial | Pi | width | nu | params | MACs | best acc | at epoch | epochs | seconds |\n" \
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    body = ""
    for r in sorted(rows, key=lambda r: (r["pruned"], -r["best_test_acc"])):
        macs = f"{r['macs']:,}" if r["macs"] is not None else "n/a"
        body += (f"| {r['trial']} | {r['pi']} | {r['width']} | {r['nu']} | {r['params']:,} | {macs} | "
                 f"{100 * r['best_test_acc']:.2f}% | {r['best_epoch']} | {r['epochs_done']}"
                 f"{' (pruned)' if r['pruned'] else ''} | {r['seconds']:.0f} |\n")
    return head + body


def plot(rows: list[dict], path: Path) -> None:
    """Best accuracy against parameters and MACs; the Pareto front joined, pruned trials hollow."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    costs = [c for c in ("params", "macs") if any(r[c] is not None for r in rows)]
    fig, axes = plt.subplots(1, len(costs), figsize=(5 * len(costs), 4), squeeze=False)
    for ax, cost in zip(axes[0], costs):
        for pi, marker in zip(sorted({r["pi"] for r in rows}), "osd^v"):
            for pruned in (False, True):
                pts = [r for r in rows if r["pi"] == pi and r["pruned"] == pruned and r[cost] is not None]
                if pts:
                    style = {"facecolors": "none", "edgecolors": f"C{pi}"} if pruned else {"color": f"C{pi}"}
                    ax.scatter([r[cost] for r in pts], [100 * r["best_test_acc"] for r in pts], marker=marker,
                               label=f"Pi{pi}{' (pruned)' if pruned else ''}", **style)
        front = sorted(pareto(rows, cost), key=lambda r: r[cost])
        ax.plot([r[cost] for r in front], [100 * r["best_test_acc"] for r in front], "k--", lw=1, label="Pareto front")
        ax.set(xscale="log", xlabel="parameters" if cost == "params" else "MACs per image",
               ylabel="best test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True, help="training set (an .npz, digits, cifar10, an image folder)")
    p.add_argument("--test", help="test set for an .npz training set")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--epochs", type=int, default=5, help="epochs per trial (default: 5)")
    p.add_argument("--recipe", default="budget")
    p.add_argument("--widths", type=_ints, default=[8, 16, 32], help="comma-separated (default: 8,16,32)")
    p.add_argument("--nus", type=_ints, default=[1, 2], help="smoothing steps nu (default: 1,2)")
    p.add_argument("--pis", type=_ints, default=[0, 1, 2], help="interpolations Pi (default: 0,1,2)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="random flips (default: mgdsl's for the data set; pass --flip for CIFAR as .npz)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0, help="seed of every run and of the sampler")
    p.add_argument("--out", default="sweeps/sweep")
    p.add_argument("--storage", help="Optuna storage URL shared by all workers (default: in memory)")
    p.add_argument("--study", default="mgdsl-sweep", help="study name in the storage")
    args = p.parse_args(argv)
    bad = sorted(set(args.pis) - set(PI_SPECS))
    if bad:
        p.error(f"--pis: unknown Pi {bad}; known: {sorted(PI_SPECS)}")
    try:
        import optuna
    except ImportError:
        print("tools/sweep.py needs optuna: pip install optuna (or pip install 'mgdsl[sweep]')", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=args.study, storage=args.storage, load_if_exists=True, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=args.seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
    rows: list[dict] = []
    study.optimize(lambda t: objective(t, args, rows), n_trials=args.trials)
    rows = [t.user_attrs["row"] for t in study.trials if "row" in t.user_attrs]  # every worker's trials
    (out / "trials.json").write_text(json.dumps(rows, indent=2))
    (out / "table.md").write_text(table(rows))
    plot(rows, out / "pareto.png")
    print(table(rows))
    print(f"written: {out / 'trials.json'}, {out / 'table.md'}, {out / 'pareto.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
