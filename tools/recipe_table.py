"""The README's recipe table (issue 12): paper-compressed vs budget recipe, MgNet width 32 and a ResNet-18 of the
same parameter count, 5/15/30 epochs, 3 seeds, on the CIFAR-10 subsets; plus an ablation of the budget tricks.

    python tools/recipe_table.py run --train ../shared/data/cifar10-train-10k.npz \
        --test ../shared/data/cifar10-test-2k.npz --threads 1 --out runs/recipe-table
    python tools/recipe_table.py table --out runs/recipe-table

`run` trains, in priority order, every run of the plan whose folder has no summary.json (so it can be stopped
and started again; --only picks runs by a substring of their name). Each run is a normal `mgdsl compile --train`
folder, evaluable with `mgdsl eval`. `table` prints mean +- sample std of the final test accuracy over the
seeds that finished, with the count, and the ablation rows. Every number is this machine's measurement.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# ResNet-18 width 7 has 135,285 parameters, the nearest to MgNet width 32's 140,906 (width 8: 176,402)
MODELS = {"mgnet-w32": ("specs/mgnet.mg", ["-D", "width=32"]),
          "resnet18-w7": ("specs/table2/resnet18.mg", ["-D", "width=7"])}
RECIPES = ("paper", "budget")
# one budget trick off at a time (TTA is scored off by `mgdsl eval --no-tta` on the full budget runs instead)
ABLATIONS = {"no-nesterov": ["--no-nesterov"], "no-wd": ["--weight-decay", "0"],
             "no-ls": ["--label-smoothing", "0"], "no-warmup": ["--warmup-epochs", "0"],
             "step-schedule": ["--schedule", "step", "--lr-gamma", "0.1"]}  # + --lr-step: the paper's, compressed


def plan(ablation_epochs: int) -> list[tuple[str, str, list[str]]]:
    """(name, spec, flags) of every run, most wanted first."""
    runs = []

    def add(model, recipe, epochs, seed, extra=(), tag=None):
        spec, d = MODELS[model]
        name = f"{model}-{tag or recipe}-e{epochs}-s{seed}"
        runs.append((name, spec, [*d, "--recipe", recipe, "--epochs", str(epochs), "--seed", str(seed), *extra]))
    for seed in (1, 2):  # the default recipe at 15 epochs: the headline figure (seed 0 is next to last)
        add("mgnet-w32", "budget", 15, seed)
    for seed in range(3):  # the whole grid at 5 epochs
        for model in MODELS:
            for recipe in RECIPES:
                add(model, recipe, 5, seed)
    for tag, extra in ABLATIONS.items():
        if tag == "step-schedule":  # / 10 every round(30 E / 120) epochs, as --recipe paper compresses it
            extra = [*extra, "--lr-step", str(max(1, round(30 * ablation_epochs / 120)))]
        add("mgnet-w32", "budget", ablation_epochs, 0, extra, tag)
    for seed in range(3):
        for recipe in RECIPES:
            add("mgnet-w32", recipe, 15, seed)  # those not done above
    for seed in range(3):
        for recipe in RECIPES:
            add("resnet18-w7", recipe, 15, seed)
    for model in MODELS:
        for seed in range(3):
            for recipe in RECIPES:
                add(model, recipe, 30, seed)
    return runs


def run(args) -> None:
    out = Path(args.out)
    for name, spec, flags in plan(args.ablation_epochs):
        folder = out / name
        if (folder / "summary.json").exists() or (args.only and not any(s in name for s in args.only)):
            continue
        cmd = [sys.executable, "-m", "mgdsl", "compile", str(ROOT / spec), *flags, "--train", args.train,
               "--test", args.test, "--flip", "--threads", str(args.threads), "--out", str(folder), "--overwrite"]
        print(f"[{time.strftime('%H:%M:%S')}] {name}", flush=True)
        t = time.time()
        rc = subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode
        if rc:
            sys.exit(f"{name}: exit {rc}: {' '.join(cmd)}")
        s = json.loads((folder / "summary.json").read_text())
        print(f"    final {100 * s['final_test_acc']:.2f}%  best {100 * s['best_test_acc']:.2f}% "
              f"(epoch {s['best_epoch']})  {time.time() - t:.0f} s", flush=True)


def _acc(folder: Path, tta: bool = True) -> float | None:
    f = folder / "summary.json"
    if not f.exists():
        return None
    if tta:
        return 100 * json.loads(f.read_text())["final_test_acc"]
    r = subprocess.run([sys.executable, "-m", "mgdsl", "eval", str(folder), "--no-tta", "--json"],
                       capture_output=True, text=True, check=True)
    return 100 * json.loads(r.stdout)["top1"]


def _cell(values: list[float]) -> str:
    if not values:
        return "—"
    sd = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.2f}{sd} (n={len(values)})"


def table(args) -> None:
    out = Path(args.out)
    print("| model | params | epochs | paper-compressed | budget (default) |")
    print("|---|---|---|---|---|")
    for model in MODELS:
        for epochs in (5, 15, 30):
            cells = []
            for recipe in RECIPES:
                vals = [a for s in range(3) if (a := _acc(out / f"{model}-{recipe}-e{epochs}-s{s}")) is not None]
                cells.append(_cell(vals))
            params = next((f'{json.loads(p.read_text())["params"]:,}' for p in out.glob(f"{model}-*/summary.json")),
                          "?")
            print(f"| {model} | {params} | {epochs} | {cells[0]} | {cells[1]} |")
    print()
    print(f"Ablation, mgnet-w32, budget recipe, {args.ablation_epochs} epochs, seed 0 (final test accuracy):")
    print()
    print("| variant | accuracy |")
    print("|---|---|")
    full = out / f"mgnet-w32-budget-e{args.ablation_epochs}-s0"
    print(f"| budget (all tricks) | {_cell([a] if (a := _acc(full)) is not None else [])} |")
    print(f"| no flip TTA (same model, `mgdsl eval --no-tta`) | "
          f"{_cell([a] if (a := _acc(full, tta=False)) is not None else [])} |")
    for tag, extra in ABLATIONS.items():
        a = _acc(out / f"mgnet-w32-{tag}-e{args.ablation_epochs}-s0")
        print(f"| {tag} (`{' '.join(extra)}`) | {_cell([a] if a is not None else [])} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["run", "table"])
    ap.add_argument("--train", help="training .npz (run)")
    ap.add_argument("--test", help="test .npz (run)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (default: 1)")
    ap.add_argument("--out", default="runs/recipe-table", help="folder of the runs (default: runs/recipe-table)")
    ap.add_argument("--only", action="append", help="run only names containing this (repeatable)")
    ap.add_argument("--ablation-epochs", type=int, default=5, help="epochs of the ablation runs (default: 5)")
    args = ap.parse_args()
    if args.what == "run":
        if not (args.train and args.test):
            ap.error("run needs --train and --test")
        run(args)
    else:
        table(args)


if __name__ == "__main__":
    main()
