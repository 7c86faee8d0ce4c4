"""The `mgdsl` command: a thin layer over the pipeline stages.

Exit codes: 0 ok (or "yes"); 1 the answer is "no" or a run did not succeed (not canonical, not equivalent,
not converged, training stopped on a NaN loss); 2 a spec, data or argument error (located, with a hint);
3 undecided (`check --equiv` found no rule and no counterexample); 70 an internal error (a bug, EX_SOFTWARE:
one line, MGDSL_DEBUG=1 for the traceback); 130 interrupted; 143 terminated (SIGTERM)."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import traceback

from . import DEFAULT_MAX_PARAMS, SpecError, __version__, compile_spec, parse_overrides
from .cost import si

EXIT_INTERNAL = 70  # sysexits.h EX_SOFTWARE: 1 and 3 are answers ("no", "undecided"), 2 is bad input

EXIT_CODES = """exit codes: 0 ok; 1 the answer is no (not canonical, not equivalent, not converged) or a training
run stopped; 2 spec, data or argument error (file:line:col, a hint); 3 undecided (check --equiv); 70 internal
error (MGDSL_DEBUG=1 shows the traceback); 130 interrupted; 143 terminated."""

SPEC_HELP = "a .mg file, or the name of a bundled spec (`mgdsl list`), e.g. mgnet or table2/resnet18"

# the examples that end each command's --help (tests/test_cli.py parses every one of them)
EXAMPLES = {
    "compile": ["mgdsl compile mgnet --summary",
                "mgdsl compile mgnet -D width=32 --train digits --epochs 20",
                "mgdsl compile --resume runs/mgnet-digits --epochs 30"],
    "check": ["mgdsl check mgnet",
              "mgdsl check mgnet --equiv iresnet",
              "mgdsl check cnn/resnet --json"],
    "fmt": ["mgdsl fmt my-net.mg",
            "mgdsl fmt --check specs/*.mg specs/*/*.mg",
            "mgdsl fmt -i my-net.mg"],
    "render": ["mgdsl render mgnet -o mgnet.svg",
               "mgdsl render table2/resnet18 mgnet -D width=64 -o side-by-side.png",
               "mgdsl render multigrid/poisson-v11 --expand -o v11.pdf"],
    "eval": ["mgdsl eval runs/mgnet-digits",
             "mgdsl eval runs/mgnet-digits --weights runs/mgnet-digits/best.pt --json",
             "mgdsl eval mgnet -D width=32 --weights runs/mgnet-x/model.pt --test test.npz"],
    "solve": ["mgdsl solve multigrid/poisson-v11 --n 129",
              "mgdsl solve multigrid/poisson-v22 --n 257 --json",
              "mgdsl solve multigrid/poisson-w11 --n 65 --plot w11.png"],
    "rewrite": ["mgdsl rewrite cnn/classic-cnn --to mg-resnet -o mg-resnet.mg",
                "mgdsl rewrite cnn/classic-cnn --to mg-resnet -D width=16 -o small.mg"],
    "list": ["mgdsl list",
             "mgdsl list --json",
             "mgdsl list --names | grep table2"],
    "lsp": ["mgdsl lsp",
            "mgdsl lsp -D width=32"],
    "sweep": ["mgdsl sweep mgnet -p width=8:64:log -p nu=1,2 --train digits --epochs 5 --trials 20",
              "mgdsl sweep mgnet -p width=8,16,32 --train digits --epochs 3 --trials 6 --storage sqlite:///sweep.db",
              "mgdsl sweep table2/resnet18 -p width=4:16:log --train digits --epochs 5 --lr 0.05"],
    "export": ["mgdsl export mgnet -D width=32 -o mgnet32",
               "mgdsl export mgnet -D width=32 --weights runs/mgnet-digits -o mgnet_digits",
               "mgdsl export table2/resnet18 --format py -o resnet18"],
    "predict": ["mgdsl predict runs/mgnet-digits digit.png",
                "mgdsl predict runs/mgnet-cifar10 photos/ --top-k 3 --csv predictions.csv",
                "mgdsl predict runs/mgnet-cifar10 test.npz --weights best --json predictions.json"],
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written; every option shows its default (an option without one says so itself)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or action.required or action.default is argparse.SUPPRESS
                or "default" in text or action.default is None):
            return text
        if action.default is False:
            return f"{text} (default: off)"
        if action.default == []:
            return f"{text} (default: none)"
        return f"{text} (default: %(default)s)"


def _epilog(command: str | None) -> str:
    lines = EXAMPLES.get(command, []) if command else [ex[0] for ex in EXAMPLES.values()]
    return "examples:\n" + "\n".join(f"  {x}" for x in lines) + "\n\n" + EXIT_CODES


def _add_defines(p: argparse.ArgumentParser) -> None:
    p.add_argument("-D", dest="defines", action="append", default=[], metavar="NAME=VALUE",
                   help="override a `param` of the spec, e.g. -D width=32; repeatable")


def _ir(args):
    from .diagnostics import render
    # a run's config.json given as --config, and no spec on the command line: the spec text the run was made of
    text = getattr(args, "spec_text", None) if isinstance(args.spec, FromConfig) else None
    ir = compile_spec(str(args.spec), parse_overrides(args.defines), text=text,
                      max_params=int(getattr(args, "max_params", None) or DEFAULT_MAX_PARAMS))
    if ir.warnings:
        print(render(ir.warnings, ir.source), file=sys.stderr)
    return ir


def summary(ir) -> dict:
    """What `compile --json` prints: the facts a user checks against the paper."""
    from .check import sharing_table
    from .cost import macs
    cost = macs(ir)
    return {
        "name": ir.name, "spec": ir.path, "params": ir.total_params, "macs": cost.total,
        "input_shape": list(ir.input_ty.shape), "output_shape": list(ir.output_ty.shape),
        "grids": ir.grids, "nu": ir.nu, "cycle": ir.cycle,
        "channels": {k: v for k, v in ir.spaces.items()},
        "operators": [dict(row, macs=cost.by_instance[row["name"]]) for row in sharing_table(ir)],
    }


def _table(rows: list[dict], cols: list[str], right: set[str] = frozenset()) -> str:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}

    def cell(c: str, v) -> str:
        return str(v).rjust(widths[c]) if c in right else str(v).ljust(widths[c])
    head = "  ".join(cell(c, c) for c in cols).rstrip()
    body = ["  ".join(cell(c, r[c]) for c in cols).rstrip() for r in rows]
    return "\n".join([head, "-" * len(head), *body])


def cmd_compile(args) -> int:
    if args.spec is None and not args.resume:
        from .training.data import DataError
        raise DataError("compile: the spec file is missing", "mgdsl compile SPEC [...], or mgdsl compile --resume DIR")
    ir = _ir(args) if args.spec is not None else None
    if getattr(args, "train", None) or args.resume or args.print_config:
        return _train(ir, args)
    if args.ir:
        print(ir.text())
        return 0
    s = summary(ir)
    if args.summary:
        return _use_summary(ir, s, args.json)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    print(f"{s['name']}  ({s['spec']})")
    print(f"  input {tuple(s['input_shape'])} -> output {tuple(s['output_shape'])}, {ir.grids} grids, "
          f"nu = {ir.nu}, channels {s['channels']}")
    print(f"  trainable parameters: {s['params']:,}")
    print(f"  multiply-accumulates per image (forward): {s['macs']:,} ({si(s['macs'])})\n")
    rows = [dict(r, io=f"{r['in_space']}:{r['in']} -> {r['out_space']}:{r['out']}", macs=si(r["macs"]))
            for r in s["operators"]]
    print(_table(rows, ["name", "scope", "kind", "io", "stride", "params", "uses", "macs"], right={"macs"}))
    return 0


def _use_summary(ir, s: dict, as_json: bool) -> int:
    """compile --summary: one row per operator application (cost.use_table), like torchinfo by the spec's names."""
    from .cost import use_table
    rows = use_table(ir)
    if as_json:
        print(json.dumps(dict(s, uses=rows), indent=2))
        return 0
    print(f"{s['name']}  ({s['spec']}): each operator application of the forward, in the order it runs; a shared "
          "operator's parameters are counted at its first row, later rows name that row")
    for r in rows:
        r.update(operator="  " * r["depth"] + r["operator"], MACs=f"{r['macs']:,}",
                 params=f"{r['params']:,}" if r["params_at"] is None else f"= #{r['params_at']}")
    print(_table(rows, ["row", "operator", "grid", "equation", "input", "output", "params", "MACs"],
                 right={"row", "params", "MACs"}))
    print(f"total: {s['params']:,} parameters, {s['macs']:,} MACs per image ({si(s['macs'])}), over {len(rows)} rows")
    return 0


def _from_recipe(recipes: dict, key: str) -> str:
    return "default: from the recipe (" + ", ".join(f"{n} {r[key]}" for n, r in recipes.items()) + ")"


def add_train_args(p: argparse.ArgumentParser) -> None:
    """The training flags; none has an argparse default, so the namespace holds only what the user gave
    (a --config file counts as given) and the recipe fills in the rest."""
    from .training.recipes import DEFAULT_RECIPE, RECIPES, SCHEDULES, Config
    d = Config()
    S = argparse.SUPPRESS
    g = p.add_argument_group("training (with --train DATASET, or --resume RUN_DIR)")
    g.add_argument("--test", default=S, help="evaluation set: an .npz beside an .npz train set, or an image folder "
                   "(default: the data set's own test split)")
    g.add_argument("--data", dest="data_root", default=S, help=f"folder for downloaded data sets (default: {d.data_root})")
    g.add_argument("--recipe", choices=sorted(RECIPES), default=S,
                   help=f"hyper-parameters (default: {DEFAULT_RECIPE}). budget: Nesterov, weight decay 5e-4, label "
                        "smoothing 0.1, 1 epoch linear warm-up then linear decay to 0 at the last epoch (per batch), "
                        "flip test-time augmentation; for any --epochs (default 15). paper: section 9.2 exactly at "
                        "its 120 epochs (lr 0.1 / 10 every 30, no weight decay); with --epochs E the steps come every "
                        "round(30 E / 120) epochs (E = 15: at 4, 8, 12). official: the authors' code (300 epochs, "
                        "wd 5e-4, / 10 every 50), compressed the same way. imagenet: Goyal et al. 2017 (SGD "
                        "momentum 0.9, wd 1e-4, 90 epochs, lr 0.1 x batch / 256, / 10 at 30, 60, 80, 5 warm-up "
                        "epochs above batch 256)")

    def recipe_flag(flag: str, text: str = "", **kw) -> None:
        key = flag[2:].replace("-", "_")
        g.add_argument(flag, default=S, help=(text + "; " if text else "") + _from_recipe(RECIPES, key), **kw)
    recipe_flag("--epochs", "resuming: a larger number extends the run", type=int)
    recipe_flag("--batch-size", type=int)
    recipe_flag("--lr", "peak learning rate", type=float)
    recipe_flag("--momentum", type=float)
    recipe_flag("--nesterov", "Nesterov momentum", action=argparse.BooleanOptionalAction)
    recipe_flag("--weight-decay", type=float)
    recipe_flag("--label-smoothing", "in the training loss only", type=float)
    recipe_flag("--schedule", "step: lr x lr_gamma every lr_step epochs; linear: warm-up, then a linear decay to 0 "
                "at the last batch; multistep: lr x lr_gamma at each of lr_milestones, after a warm-up from the "
                "lr of lr_base_batch", choices=list(SCHEDULES))
    recipe_flag("--lr-step", "with --epochs and no --lr-step, the recipe's step scales with the epochs", type=int)
    recipe_flag("--lr-gamma", type=float)
    recipe_flag("--warmup-epochs", "linear warm-up, per batch (schedule linear)", type=float)
    recipe_flag("--tta", "flip test-time augmentation: average the logits of each test image and its mirror "
                "(only when training flips)", action=argparse.BooleanOptionalAction)
    g.add_argument("--no-augment", dest="augment", action="store_false", default=S,
                   help="no random crop and no flip (default: crop, and flip as --flip says)")
    g.add_argument("--flip", action=argparse.BooleanOptionalAction, default=S,
                   help="random horizontal flips (default: on for natural images - cifar10, cifar100, image "
                        "folders; off for digits and .npz files, where a mirror image may be another class)")
    _add_run_args(g)


def _add_run_args(g) -> None:
    """The training flags of how a run executes (device, speed, data loading, seed, logging) and where it goes."""
    from .training.recipes import DATA_MODES, Config
    d = Config()
    S = argparse.SUPPRESS
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default=S, help="default: auto, cuda when available")
    g.add_argument("--amp", action="store_true", default=S, help="bf16 autocast (default: off)")
    g.add_argument("--channels-last", action="store_true", default=S,
                   help="NHWC memory format, faster convolutions on GPUs (default: off)")
    g.add_argument("--compile", action="store_true", default=S, help="torch.compile the model (default: off)")
    g.add_argument("--sync-bn", action="store_true", default=S,
                   help="SyncBatchNorm across processes under torchrun (default: off)")
    g.add_argument("--data-mode", choices=DATA_MODES, default=S,
                   help="memory: decode the whole set onto the device; stream: decode per batch with DataLoader "
                        "workers (default: auto: image folders stream, arrays stay in memory if they fit a quarter "
                        "of the machine's memory)")
    g.add_argument("--workers", type=int, default=S, help="DataLoader processes per rank when streaming "
                   "(default: the rank's CPUs less one, at most 8)")
    g.add_argument("--checkpoint-interval", type=int, default=S, metavar="STEPS",
                   help="also write last.pt every STEPS steps, resumable mid-epoch (default: 0, at each epoch's "
                        "end only)")
    g.add_argument("--seed", type=int, default=S,
                   help=f"seed of initialisation, shuffling and augmentation (default: {d.seed})")
    g.add_argument("--threads", type=int, default=S, help="torch CPU threads (default: torch's choice)")
    g.add_argument("--log-interval", type=int, default=S, metavar="N",
                   help="without a terminal, a line every N batches; on a terminal a progress bar (default: epoch "
                        "lines only)")
    g.add_argument("--tensorboard", action="store_true", default=S,
                   help="write TensorBoard scalars (loss, accuracy, lr, images/s) to OUT/tensorboard; needs the "
                        "tensorboard package (default: off)")
    g.add_argument("--out", default=S, help="output folder (default: runs/NAME-DATASET, numbered if taken)")
    g.add_argument("--overwrite", action="store_true", default=S,
                   help="let --out replace the run already in it (default: refuse)")
    g.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its own spec, -D, data and recipe; "
                   "add --epochs N to extend it; other flags must agree with the run (default: a new run)")
    g.add_argument("--config", metavar="FILE", help="a YAML or JSON file of flag values (keys as the flags, e.g. "
                   "batch_size: 64, defines: [width=32]); a run's config.json works too; flags given win "
                   "(default: none)")
    g.add_argument("--print-config", action="store_true", help="print the resolved training config and exit")


def _given(args) -> dict:
    """The training options the user gave (flags or --config), by Config field name."""
    from .training.recipes import CONFIG_KEYS
    return {k: getattr(args, k) for k in CONFIG_KEYS if hasattr(args, k)}


class FromConfig(str):
    """The spec path a --config file named (a spec given on the command line is a plain str and wins)."""


def load_config_file(path: str, parser: argparse.ArgumentParser) -> dict:
    """A --config file as parser defaults: YAML (needs pyyaml) or JSON; a run's config.json gives its
    config and -D values. Unknown keys and values of the wrong type are errors."""
    from .training.data import DataError
    from .training.recipes import CONFIG_KEYS
    try:
        text = open(path).read()
    except OSError as e:
        raise DataError(f"--config {path}: {e.strerror}") from None
    if path.endswith(".json"):
        try:
            raw = json.loads(text)
        except ValueError as e:
            raise DataError(f"--config {path}: not valid JSON ({e})") from None
    else:
        try:
            import yaml
        except ImportError:
            from .diagnostics import install_hint
            raise DataError(f"--config {path}: reading YAML needs pyyaml, or pass JSON", install_hint("train")) from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise DataError(f"--config {path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise DataError(f"--config {path}: expected a mapping of flag names to values")
    spec = {}
    if isinstance(raw.get("config"), dict):  # a run's config.json: its config, its -D values and its spec text
        defines = raw.get("params_override") or {}
        if isinstance(raw.get("spec"), dict) and "text" in raw["spec"]:
            spec = {"spec": FromConfig(raw["spec"].get("path", "spec.mg")), "spec_text": raw["spec"]["text"]}
        raw = {k: v for k, v in raw["config"].items() if k not in ("out", "overwrite")}
        raw["defines"] = [f"{k}={_define_value(v)}" for k, v in defines.items()]
    elif isinstance(raw.get("spec"), str):  # a YAML/JSON config may name the spec file (or a bundled spec)
        spec = {"spec": raw.pop("spec")}
    actions = {a.dest: a for a in parser._actions}
    out = {}
    for key, value in raw.items():
        k = key.replace("-", "_")
        if k not in CONFIG_KEYS and k not in ("defines", "resume"):
            raise DataError(f"--config {path}: unknown key '{key}'",
                            f"known: {', '.join(sorted(CONFIG_KEYS + ('defines',)))}")
        a = actions.get(k)
        if value is not None and a is not None:
            if a.nargs == 0 or isinstance(a, argparse.BooleanOptionalAction):
                if not isinstance(value, bool):
                    raise DataError(f"--config {path}: {key} must be true or false, not {value!r}")
            elif k == "defines":
                value = [str(v) for v in (value if isinstance(value, list) else [value])]
            elif a.type is not None:
                try:
                    value = a.type(value) if not isinstance(value, bool) else None
                    assert value is not None
                except (TypeError, ValueError, AssertionError):
                    raise DataError(f"--config {path}: {key} must be a {a.type.__name__}, not {raw[key]!r}") from None
            if a.choices is not None and value not in a.choices:
                raise DataError(f"--config {path}: {key} must be one of {', '.join(map(str, a.choices))}")
        out[k] = value
    return {**out, **spec}


def _define_value(v) -> str:
    return "[" + ",".join(map(str, v)) + "]" if isinstance(v, (list, tuple)) else str(v)


def _train(ir, args) -> int:
    """compile --train / --resume: run training and print its summary; NaN loss exits 1, Ctrl-C 130, SIGTERM 143."""
    from .training import train
    from .training.loop import Diverged, Interrupted
    given = _given(args)
    if args.print_config:
        return _print_config(args, given)
    try:
        summary = train(ir, given.pop("train", None), resume=args.resume, defines=args.defines, **given)
    except Diverged as e:
        if os.environ.get("RANK", "0") == "0":
            kept = (f"the last good checkpoint is {e.checkpoint}" if e.checkpoint is not None else
                    "no epoch had finished, so nothing was kept; lower --lr")
            print(f"mgdsl: stopped: {e}; {kept}", file=sys.stderr)
        return 1
    except Interrupted as e:
        if os.environ.get("RANK", "0") == "0":
            print(f"mgdsl: interrupted; the run in {e.out} is complete up to its last checkpoint; continue it "
                  f"with:\n  mgdsl compile --resume {shlex.quote(str(e.out))}", file=sys.stderr)
        return e.status
    if summary is not None:
        print(json.dumps(summary))
    return 0


def _print_config(args, given: dict) -> int:
    """--print-config: the resolved config (recipe filled in), in a form --config reads back."""
    from dataclasses import asdict

    from .training.data import flip_default
    from .training.recipes import Config, fill_defaults
    cfg = Config(**given)
    cfg = fill_defaults(cfg, flip_default(cfg.train) if cfg.train else False)
    d = {k: v for k, v in asdict(cfg).items() if k not in ("out", "overwrite") or v}
    d["defines"] = list(args.defines)
    if args.spec is not None:
        d = {"spec": str(args.spec), **d}  # read back by --config, so the printed config names what it trains
    try:
        import yaml
        print(yaml.safe_dump(d, sort_keys=False), end="")
    except ImportError:
        print(json.dumps(d, indent=2))
    return 0


def cmd_eval(args) -> int:
    from pathlib import Path

    from .training.evaluate import evaluate_run, report_path, write_report
    r = evaluate_run(args.target, defines=args.defines, weights=args.weights, test=args.test,
                     data_root=args.data_root, tta=args.tta)
    out = Path(args.out) if args.out else report_path(args.target, r["weights"], args.test, args.tta)
    try:
        files = write_report(r, out if out.suffix == ".json" else out.with_name(out.name + ".json"))
    except SpecError as e:
        if args.out:  # asked for: not written is an error
            raise
        files = []  # the run folder is read-only, say: the scores are still printed
        print(f"mgdsl: warning: {e.diagnostics[0].message} (--out FILE.json writes it elsewhere)", file=sys.stderr)
    if args.json:
        print(json.dumps({**r, "files": [str(f) for f in files]}))
        return 0
    print(f"{r['weights']}: top-1 {100 * r['top1']:.2f}% ({round(r['top1'] * r['n'])} / {r['n']}), "
          f"loss {r['loss']:.4f} on {r['test']}{' with flip TTA' if r['tta'] else ''}\n")
    rows = [dict(c, accuracy="-" if c["accuracy"] is None else f"{100 * c['accuracy']:.2f}%") for c in r["per_class"]]
    cols = (["index"] if r["class_names"] else []) + ["class", "images", "correct", "accuracy"]
    print(_table(rows, cols, right={"index", "images", "correct", "accuracy"}))
    if len(r["confusion"]) <= 12:  # small enough to read as text (rows: true class, columns: guess)
        print("\nconfusion matrix (rows: true class, columns: predicted class)")
        print(_table([{"true": c["class"], **{str(j): v for j, v in enumerate(row)}}
                      for c, row in zip(r["per_class"], r["confusion"])],
                     ["true", *map(str, range(len(r["confusion"])))], right=set(map(str, range(len(r["confusion"]))))))
    if files:
        print(f"\nper-class accuracy and confusion matrix: {files[0]}, {files[1]}")
    return 0


def cmd_predict(args) -> int:
    from .training.data import DataError
    from .training.predict import load_run, open_inputs, predict_inputs
    for flag, v in (("--top-k", args.top_k), ("--batch-size", args.batch_size)):
        if v < 1:
            raise DataError(f"{flag} {v}: must be at least 1")
    to_file = args.json or args.csv
    if to_file and not os.path.isdir(os.path.dirname(to_file) or "."):
        raise DataError(f"{to_file}: the folder {os.path.dirname(to_file)} does not exist")
    if to_file and os.path.isdir(to_file):
        raise DataError(f"{to_file}: is a folder", "name the output file, e.g. predictions.json or .csv")
    p = load_run(args.run, args.weights)
    if args.top_k > len(p.classes):
        raise DataError(f"--top-k {args.top_k}: the run has {len(p.classes)} classes", f"use --top-k {len(p.classes)}")
    inputs = open_inputs(args.inputs, p.preprocess.input_shape[0])  # every input checked before any is predicted
    rows, resized = [], [0]
    for r in predict_inputs(p, inputs, args.top_k, args.batch_size, resized):
        if to_file:
            rows.append(r)
        else:
            print(r["input"] + "  " + "  ".join(f"{t['class']} {t['prob']:.4f}" for t in r["top"]))
    c, h, w = p.preprocess.input_shape
    if resized[0]:
        n = resized[0]
        print(f"mgdsl: {n} image{' was' if n == 1 else 's were'} not {h}x{w}: resized (shorter side to "
              f"{p.preprocess.resize}) and centre-cropped to {h}x{w}", file=sys.stderr)
    if to_file:
        _write_predictions(args, p, rows)
        print(f"{len(rows)} predictions written to {to_file}")
    return 0


def _write_predictions(args, p, rows: list[dict]) -> None:
    """--json or --csv, written atomically once every image was classified."""
    from .training.runs import atomic_write
    if args.json:
        atomic_write(args.json, json.dumps({"run": str(p.run), "weights": str(p.weights), "tta": p.tta,
                                            "classes": p.classes, "predictions": rows}, indent=1))
        return
    import csv
    import io
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(["input"] + [f"{k}{i + 1}" for i in range(min(args.top_k, len(p.classes))) for k in ("class", "prob")])
    for r in rows:
        out.writerow([r["input"]] + [v for t in r["top"] for v in (t["class"], f"{t['prob']:.6g}")])
    atomic_write(args.csv, buf.getvalue())


def _check_equiv(ir, args) -> int:
    """`check SPEC --equiv TARGET`: the verdict, its derivation and premises, naming both specs as the user did."""
    from .equiv import EXIT, check_equiv
    out = check_equiv(ir, args.equiv, args.trials, args.seed)
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return EXIT[out["verdict"]]
    paths = {ir.path: str(args.spec), out["target"]: str(args.equiv)}

    def given(text: str) -> str:  # a bundled spec as the user named it (`mgnet`), not its installed path
        for path, name in paths.items():
            text = text.replace(path, name) if text and path and path != name else text
        return text
    print(f"{given(out['spec'])} ({out['source_family']}) vs {given(out['target'])} ({out['target_family']}): "
          f"{out['verdict']}")
    if out["reason"]:
        print(f"  reason: {given(out['reason'])}")
    if out["relation"]:
        print(f"  relation: {out['relation']}")
    if out["tying"]:
        print("  tying: " + ", ".join(f"{k} := {v}" for k, v in out["tying"].items()))
    if out["derivation"]:
        print("  derivation:")
        for k, s in enumerate(out["derivation"], 1):
            eq = f" {s['equation']}" if s["equation"] else ""
            print(f"    {k}. [{s['rule']}{eq}]  {s['term']}")
    for p in out["premises"]:
        mark = {"ok": "ok", "failed": "FAILED", "unproved": "NOT PROVED"}[p["status"]]
        extra = f" — {p['detail']}" if p["detail"] else ""
        where = f" ({given(p['where'])})" if p["where"] else ""
        print(f"  premise {mark}: {given(p['premise'])}{where}{extra}")
    if out["max_error"] is not None:
        n = out["numerics"]
        print(f"  numerics: max error {out['max_error']:.3g} over {n['trials']} float64 trials, seed {n['seed']}"
              + (f" ({n['note']})" if n["note"] else ""))
    if out["counterexample"]:
        print("  counterexample: " + ", ".join(f"{k} {v}" for k, v in out["counterexample"].items()))
    return EXIT[out["verdict"]]


def cmd_check(args) -> int:
    ir = _ir(args)
    if args.equiv:
        return _check_equiv(ir, args)
    rows = summary(ir)["operators"]
    if args.json:
        print(json.dumps({"name": ir.name, "ok": True, "params": ir.total_params, "operators": rows}, indent=2))
        return 0
    print(f"{ir.path}: ok ({ir.name}, {ir.total_params:,} parameters, {len(ir.instances)} operator instances)\n")
    for r in rows:
        r["shares"] = ", ".join(r["shares"]) or "-"
    print(_table(rows, ["name", "scope", "class", "kind", "params", "uses", "shares"]))
    return 0


def cmd_fmt(args) -> int:
    from .diagnostics import Diagnostic, Source
    from .fmt import fmt
    from .library import spec_path
    from .syntax import parse, read_source
    if args.check and args.in_place:
        raise SpecError([Diagnostic("--check and -i exclude each other", None, "check first, then rewrite")])
    canonical = True
    for spec in args.specs:
        path = spec_path(spec)
        if args.in_place and path != spec:
            raise SpecError([Diagnostic(f"{spec} is a bundled spec, not a file here: -i does not rewrite it", None,
                                        f"copy it first: mgdsl fmt {spec} > my.mg")], Source(spec, ""))
        text = read_source(path)
        out = fmt(parse(text, path))
        if args.check:
            if out != text:
                print(f"{spec}: not canonical (mgdsl fmt -i {spec} rewrites it)", file=sys.stderr)
                canonical = False
        elif args.in_place:
            if out != text:
                from .files import atomic_write
                atomic_write(path, out)
        else:
            sys.stdout.write(out)
    return 0 if canonical else 1


def cmd_list(args) -> int:
    from .cost import macs
    from .library import bundled
    rows, failed = [], 0
    for spec in bundled():
        if args.names:
            print(spec.name)
            continue
        try:
            ir = compile_spec(spec.path)
        except SpecError as e:
            failed += 1
            rows.append({"name": spec.name, "error": str(e).splitlines()[0]})
            continue
        rows.append({"name": spec.name, "model": ir.name, "params": ir.total_params, "macs": macs(ir).total,
                     "input_shape": list(ir.input_ty.shape), "output_shape": list(ir.output_ty.shape),
                     "path": spec.path})
    if args.names:
        return 0
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            r["size"] = "x".join(map(str, r.get("input_shape", ()))) + " -> " + "x".join(
                map(str, r.get("output_shape", ()))) if "error" not in r else r["error"]
            r["params"] = f"{r['params']:,}" if "params" in r else "-"
            r["MACs"] = si(r["macs"]) if "macs" in r else "-"
        print(_table(rows, ["name", "params", "MACs", "size"], right={"params", "MACs"}))
    return 2 if failed else 0


def cmd_export(args) -> int:
    from .export import export, preprocessing, run_config, training_note
    if os.path.isfile(os.path.join(args.spec, "config.json")):  # `mgdsl export RUN_DIR`: the run's own spec
        from .training import load_run, run_ir
        if args.defines:
            from .training.data import DataError
            raise DataError(f"export {args.spec}: -D with a run folder (the run's own -D values are used)",
                            "export the spec instead: mgdsl export SPEC -D ... --weights RUN_DIR")
        cfg = load_run(args.spec)
        args.weights = args.weights or args.spec
        ir = run_ir(cfg)
    else:
        cfg = run_config(args.weights)  # a training run: its -D values, data shape and classes unless overridden
        args.defines = [f"{k}={v}" for k, v in (cfg.get("params_override") or {}).items()] + args.defines
        ir = _ir(args)
        if cfg.get("input_shape") and cfg.get("classes") and (
                list(ir.input_ty.shape) != cfg["input_shape"] or ir.classes != cfg["classes"]):
            from .training import adapt
            ir = adapt(ir, tuple(cfg["input_shape"]), cfg["classes"])
    pre = preprocessing(cfg)
    note = training_note(cfg)
    if pre and not args.raw:
        note += ("\nload() below builds it with that preprocessing: it takes uint8 images N x H x W x C (0..255) "
                 "and returns\nlogits" + (" (the mean over each image and its mirror, as the run scored)"
                                           if pre["tta"] else "") + "; CLASSES names the outputs.")
    elif args.weights and not pre and not args.raw:
        print(f"mgdsl: note: no run config beside {args.weights}: exported without preprocessing (the model takes "
              "normalised float images)", file=sys.stderr)
    for path in export(ir, args.output, weights=args.weights, formats=args.format, note=note, preprocess=pre,
                       raw=args.raw):
        print(path)
    return 0


RENDER_FORMATS = ("svg", "png", "pdf", "dot")  # what `render` writes: --format, or the suffix of -o


def _check_output(flag: str, path: str, formats: tuple[str, ...], default: str) -> None:
    """A file mgdsl is asked to write: exit 2 with one line now if it cannot be, not an internal error later."""
    from .diagnostics import Diagnostic
    from .files import output_problem
    problem = output_problem(path, formats, default)
    if problem:
        raise SpecError([Diagnostic(f"{flag} {path}: {problem}", None,
                                    f"e.g. {flag} out.{default}")])


def cmd_render(args) -> int:
    from .render import render
    _check_output("-o", args.output, () if args.format else RENDER_FORMATS, "svg")
    irs = []
    for spec in args.specs:
        args.spec = spec
        irs.append(_ir(args))
    print(render(irs, args.output, args.format, args.expand, args.ir))
    return 0


def cmd_sweep(args) -> int:
    """An Optuna study over the spec's params: a run per trial, then the table and the Pareto plot."""
    from pathlib import Path

    from .diagnostics import Diagnostic
    from .sweep import Sweep, check_axes, check_data, parse_axes, run_sweep, table, write_results
    from .training.loop import Interrupted
    from .training.recipes import DEFAULT_RECIPE, RECIPES
    for flag in ("resume", "config", "print_config"):
        if getattr(args, flag, None):
            raise SpecError([Diagnostic(f"--{flag.replace('_', '-')} does not apply to sweep", None,
                                        "a sweep continues with the same command and --storage")])
    ir = _ir(args)
    axes = parse_axes(args.axes, ir.params)
    given = _given(args)
    for flag, n in (("--trials", args.trials), ("--epochs", given.get("epochs", 1))):
        if n < 1:
            raise SpecError([Diagnostic(f"{flag} {n}: a sweep needs at least 1", None, f"e.g. {flag} 5")])
    data, seed = given.pop("train"), given.pop("seed", 0)
    epochs = given.pop("epochs", None) or RECIPES[given.get("recipe", DEFAULT_RECIPE)]["epochs"]
    out = given.pop("out", None) or f"sweeps/{ir.name}-{Path(data).stem}"
    given.pop("overwrite", None)
    check_axes(str(args.spec), axes, tuple(args.defines))
    check_data(data, given.get("test"))
    sw = Sweep(str(args.spec), axes, data, out, epochs, args.trials, args.storage, args.study, seed, given,
               tuple(args.defines))
    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # one line per trial, ours (a failed trial's without traceback)

    def say(r: dict) -> None:
        what = (f"failed: {r['error']}" if "error" in r else f"best test accuracy {100 * r['best_test_acc']:.2f}%"
                f"{' (pruned)' if r['pruned'] else ''}; run in {r['run']}")
        print(f"mgdsl: trial {r['trial']} {r['name']}: {what}", file=sys.stderr)
    try:
        rows = run_sweep(sw, ir.source.text, on_trial=say)
    except Interrupted as e:
        again = f" (continue the study with the same command{'' if args.storage else ' and --storage URL'})"
        print(f"mgdsl: interrupted; each finished trial's run is complete{again}", file=sys.stderr)
        return e.status
    paths = write_results(rows, axes, out)
    print(table(rows, axes), end="")
    print("written: " + ", ".join(map(str, paths)))
    return 0 if any("error" not in r for r in rows) else 1  # no trial of the study trained: the sweep failed


def cmd_lsp(args) -> int:
    """The language server over stdio; pygls is the `lsp` extra, imported only here (the CLI starts fast)."""
    try:
        import pygls.lsp.server  # noqa: F401  (the server's framework: missing without the extra)

        from .lsp import main as lsp_main
    except ImportError as e:
        from .diagnostics import Diagnostic, install_hint
        raise SpecError([Diagnostic(f"mgdsl lsp needs pygls ({e})", None, install_hint("lsp"))]) from None
    return lsp_main(args.defines)


def cmd_solve(args) -> int:
    """The spec is checked at its own n first, so that a spec solve cannot run gets its reasons, not an -D n error."""
    from . import compile_ir
    from .solve import check_solvable, check_solve_options, divergence_hint, plot_residuals, solve
    for d in args.defines:  # --n replaces the spec's n: a -D n would be silently ignored
        if d.split("=", 1)[0].strip() == "n":
            from .diagnostics import Diagnostic
            raise SpecError([Diagnostic(f"-D {d}: solve sets the points per side with --n", None,
                                        f"--n {d.split('=', 1)[-1].strip()}")])
    check_solvable(compile_spec(args.spec, parse_overrides([d for d in args.defines if not d.startswith("n=")])))
    check_solve_options(args.n, args.tol, args.max_cycles)
    if args.plot:
        from matplotlib.backend_bases import FigureCanvasBase
        _check_output("--plot", args.plot, tuple(sorted(FigureCanvasBase.get_supported_filetypes())), "png")
    params = parse_overrides(args.defines)
    params["n"] = args.n
    ir = compile_ir(args.spec, **params)
    out = solve(ir, args.n, args.tol, args.max_cycles, args.rhs, args.dtype, args.device)
    out.pop("u")
    if args.plot:
        plot_residuals(out["residuals"], f"{ir.name}, n = {args.n}", args.plot)
    if args.json:
        print(json.dumps(out))
        return 0 if out["converged"] else 1
    for k, r in enumerate(out["residuals"]):
        fac = f"  factor {out['factors'][k - 1]:.3f}" if k else ""
        print(f"cycle {k:3d}  residual {r:.3e}{fac}")
    print(f"{ir.name}: n = {args.n}, {out['grids']} grids, asymptotic factor {out['convergence_factor']:.3f}, "
          f"{out['cycles']} cycles, setup {out['setup_seconds']:.3f} s, solve {out['solve_seconds']:.3f} s, "
          f"{'converged' if out['converged'] else 'diverged' if out['diverged'] else 'NOT converged'}", file=sys.stderr)
    hint = divergence_hint(ir, out)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)
    return 0 if out["converged"] else 1


def cmd_rewrite(args) -> int:
    from pathlib import Path

    from . import compile_ir
    from .diagnostics import Diagnostic
    from .rewrite import max_disagreement, rewrite_text
    from .files import atomic_write
    if args.to != "mg-resnet":
        raise SpecError([Diagnostic(f"--to {args.to}: only mg-resnet (Theorem 8.3) is a constructive rewrite", None)])
    params = parse_overrides(args.defines)
    ir = compile_ir(args.spec, **params)
    text = rewrite_text(ir)
    atomic_write(Path(args.output), text)
    new = compile_ir(args.output, text=text, **params)
    err = max_disagreement(ir, new)
    print(f"wrote {args.output} ({new.name}, {new.total_params:,} parameters; the source has {ir.total_params:,}); "
          f"outputs agree to {err:.3g} in float64")
    return 0 if err <= 1e-9 else 1


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """parse_args, with a --config file's values as the compile command's defaults (timm's convention)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    if known.config and argv[:1] == ["compile"]:
        c = parser.compile_parser
        c.set_defaults(**load_config_file(known.config, c))
    return parser.parse_args(argv)


def _add_sweep_parser(sub) -> None:
    """`mgdsl sweep`: the search's own flags, then every training flag of `compile --train` for each trial."""
    w = sub.add_parser("sweep", help="search a spec's params with Optuna: a training run per trial, then a table "
                       "and a Pareto plot")
    w.add_argument("spec", help=SPEC_HELP)
    w.add_argument("-p", dest="axes", action="append", default=[], metavar="NAME=VALUES",
                   help="a param to search: LOW:HIGH (integers if both are), LOW:HIGH:log, or A,B,C (a choice); "
                        "repeatable")
    _add_defines(w)
    w.add_argument("--trials", type=int, default=20, help="trials to run now (a continued study adds them)")
    w.add_argument("--storage", help="an Optuna storage URL, e.g. sqlite:///sweep.db: the study is kept there, the "
                   "same command continues it, and several machines may share it (default: in memory)")
    w.add_argument("--study", help="the study's name in the storage (default: mgdsl-SPEC-DATASET)")
    w.add_argument("--train", metavar="DATASET", required=True,
                   help="train each trial on digits, cifar10, cifar100, an .npz file or an image folder")
    add_train_args(w)
    for action in w._actions:  # the same flags as compile --train, for every trial; OUT is the sweep's folder
        if action.dest == "out":
            action.help = "the sweep's folder: OUT/trials/NAME per trial, trials.json, table.md, pareto.png " \
                          "(default: sweeps/NAME-DATASET)"
    w.set_defaults(fn=cmd_sweep)


def _add_solve_and_rewrite(sub) -> None:
    """`solve` and `rewrite`: the commands over the numerics (multigrid) and the theorems (Theorem 8.3)."""
    s = sub.add_parser("solve", help="solve -Laplace u = f with a multigrid spec")
    s.add_argument("spec", help="a multigrid spec (a .mg file or a bundled name, e.g. multigrid/poisson-v11)")
    _add_defines(s)
    s.add_argument("--n", type=int, default=65, help="points per side, 2^k + 1")
    s.add_argument("--tol", type=float, default=1e-8, help="relative residual")
    s.add_argument("--max-cycles", type=int, default=100, help="stop after this many cycles")
    s.add_argument("--rhs", default="random", choices=["random", "ones", "sin"], help="the right-hand side f")
    s.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="arithmetic precision")
    s.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to solve")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--plot", metavar="FILE", help="draw the residual history; default: no plot")
    s.set_defaults(fn=cmd_solve)

    w = sub.add_parser("rewrite", help="write the spec a theorem constructs (classic CNN -> Mg-ResNet)")
    w.add_argument("spec", help="the classic network (a .mg file or a bundled name)")
    w.add_argument("--to", required=True, choices=["mg-resnet"], help="the form to construct (Theorem 8.3)")
    w.add_argument("-o", "--output", required=True, help="the spec file to write")
    _add_defines(w)
    w.set_defaults(fn=cmd_rewrite)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mgdsl", description="Compile, check, draw, train, solve and export MgNet specs.",
                                epilog=_epilog(None), formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=f"mgdsl {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p.compile_parser = _add_compile_parser(sub)
    _add_check_parser(sub)
    _add_fmt_parser(sub)
    _add_render_parser(sub)
    _add_list_parser(sub)
    _add_export_parser(sub)
    _add_eval_parser(sub)
    _add_lsp_parser(sub)
    _add_solve_and_rewrite(sub)
    _add_sweep_parser(sub)
    _add_predict_parser(sub)
    for name, command in sub.choices.items():  # one look for every command's --help
        command.formatter_class = HelpFormatter
        command.epilog = _epilog(name)
    return p


def _add_compile_parser(sub) -> argparse.ArgumentParser:
    """`compile`: check a spec and print its operators, or train it (the training flags are add_train_args')."""
    c = sub.add_parser("compile", help="check a spec and print its operators and parameter count (or train it)")
    c.add_argument("spec", nargs="?", help=SPEC_HELP + " (not needed with --resume)")
    _add_defines(c)
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.add_argument("--ir", action="store_true", help="print the compiler's IR: instances and the unrolled graph")
    c.add_argument("--summary", action="store_true", help="one row per operator application: grid, equation, input "
                   "and output shape, params (a shared operator's once) and MACs; with --json, as `uses`")
    c.add_argument("--max-params", type=float, default=float(DEFAULT_MAX_PARAMS), help="refuse larger models before allocation")
    c.add_argument("--train", metavar="DATASET", default=argparse.SUPPRESS,
                   help="train on digits, cifar10, cifar100, an .npz file or an image folder (default: only compile)")
    add_train_args(c)
    c.set_defaults(fn=cmd_compile)
    return c


def _add_check_parser(sub) -> None:
    """`check`: the static checks, and with --equiv the equivalence to a classic network."""
    k = sub.add_parser("check", help="static checks: linearity classes and the sharing table")
    k.add_argument("spec", help=SPEC_HELP)
    _add_defines(k)
    k.add_argument("--json", action="store_true", help="print one JSON object")
    k.add_argument("--equiv", metavar="TARGET",
                   help="which classic network is it: a spec, or a family (mg0, iresnet, mg-iresnet, resnet, ...);"
                        " default: no equivalence check")
    k.add_argument("--trials", type=int, default=3, help="random float64 inputs for the --equiv numerics")
    k.add_argument("--seed", type=int, default=0, help="seed of the --equiv numerics")
    k.set_defaults(fn=cmd_check)


def _add_fmt_parser(sub) -> None:
    """`fmt`: the canonical text of specs."""
    f = sub.add_parser("fmt", help="print the canonical text of specs (or check or rewrite them)")
    f.add_argument("specs", nargs="+", metavar="SPEC", help=SPEC_HELP)
    f.add_argument("--check", action="store_true", help="print nothing; exit 1 if a file is not canonical")
    f.add_argument("-i", "--in-place", action="store_true", help="rewrite the files that are not canonical")
    f.set_defaults(fn=cmd_fmt)


def _add_render_parser(sub) -> None:
    """`render`: the paper's picture of specs."""
    r = sub.add_parser("render", help="draw specs as the paper does (grids as bands, smoothing folded)")
    r.add_argument("specs", nargs="+", metavar="SPEC", help=SPEC_HELP + "; several go side by side")
    r.add_argument("-o", "--output", required=True, metavar="FILE", help="the picture (or .dot) to write")
    r.add_argument("--format", choices=RENDER_FORMATS, help="default: from the file name")
    r.add_argument("--expand", action="store_true", help="one box per smoothing step")
    r.add_argument("--ir", action="store_true", help="the raw unrolled IR graph (first spec)")
    _add_defines(r)
    r.set_defaults(fn=cmd_render)


def _add_list_parser(sub) -> None:
    """`list`: the bundled specs."""
    ls = sub.add_parser("list", help="the bundled specs, one line each, with parameters and MACs per image")
    ls.add_argument("--json", action="store_true", help="print one JSON list")
    ls.add_argument("--names", action="store_true", help="print only the names (for scripts)")
    ls.set_defaults(fn=cmd_list)


def _add_export_parser(sub) -> None:
    """`export`: standalone PyTorch source and ONNX of a spec or a run."""
    x = sub.add_parser("export", help="standalone PyTorch source (OUT.py) and ONNX (OUT.onnx) of a spec or a run")
    x.add_argument("spec", metavar="SPEC|RUN_DIR", help=SPEC_HELP + "; or a run folder (its own spec, -D and "
                   "weights)")
    _add_defines(x)
    x.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="write OUT.py, OUT.onnx (and OUT.pt with --weights)")
    x.add_argument("--weights", metavar="FILE|RUN_DIR",
                   help="a state_dict (model.pt) or a training run folder; default: fresh random weights")
    x.add_argument("--format", choices=["all", "py", "onnx"], default="all",
                   help="which forms to write (onnx needs `pip install 'mgdsl[export]'` or 'mgdsl[all]')")
    x.add_argument("--raw", action="store_true",
                   help="leave the run's preprocessing out: the model takes normalised float N x C x H x W (default: "
                        "with trained weights of a run, OUT.onnx and OUT.py's load() take uint8 images N x H x W x C "
                        "and normalise them as the run did)")
    x.set_defaults(fn=cmd_export)


def _add_eval_parser(sub) -> None:
    """`eval`: a model's accuracy on a test set."""
    e = sub.add_parser("eval", help="top-1 accuracy of a run's model (or of saved weights) on a test set")
    e.add_argument("target", metavar="RUN_DIR|SPEC",
                   help="a run folder (its spec, -D, normalisation and test set) or a spec with --weights")
    _add_defines(e)
    e.add_argument("--weights", help="a .pt file (default RUN_DIR/model.pt; RUN_DIR/best.pt is the best epoch)")
    e.add_argument("--test", help="score this test set instead, whole: digits, cifar10, cifar100, an .npz or an "
                   "image folder (default: the run's own test set)")
    e.add_argument("--data", dest="data_root", help="folder for downloaded data sets (default: the run's)")
    e.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="flip test-time augmentation: average the logits of each image and its mirror (default: as "
                   "the run was scored, i.e. on when its recipe used it)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--out", metavar="FILE.json", help="write the report (per-class accuracy, confusion matrix) to "
                   "FILE.json and its picture to FILE.png (default: RUN_DIR/eval-WEIGHTS[-on-TEST][-tta|-no-tta].json, "
                   "for a spec beside the weights)")
    e.set_defaults(fn=cmd_eval)


def _add_lsp_parser(sub) -> None:
    """`lsp`: the language server for editors."""
    lsp = sub.add_parser("lsp", help="a language server for .mg files over stdio, for editors (docs/editors.md)")
    _add_defines(lsp)
    lsp.set_defaults(fn=cmd_lsp)


def _add_predict_parser(sub) -> None:
    """`predict`: classify images with a run's model."""
    pr = sub.add_parser("predict", help="classify images with a run's model (top-k classes and probabilities)")
    pr.add_argument("run", metavar="RUN_DIR", help="a run folder (`mgdsl compile --train` wrote it)")
    pr.add_argument("inputs", nargs="+", metavar="INPUT",
                    help="image files (PNG, JPEG, ...), folders of them (read in batches) or an .npz (key x: uint8 "
                         "N x H x W x C); images of another size are resized (shorter side) and centre-cropped")
    pr.add_argument("--top-k", type=int, default=1, metavar="K", help="classes shown per image")
    pr.add_argument("--weights", default="last", metavar="best|last|FILE",
                    help="last: model.pt (the final epoch, what `mgdsl eval` scores), best: best.pt, or a .pt file")
    pr.add_argument("--batch-size", type=int, default=256, help="images decoded and classified at a time")
    out = pr.add_mutually_exclusive_group()
    out.add_argument("--json", metavar="FILE", help="write the predictions as JSON, only once all succeeded "
                     "(default: print them)")
    out.add_argument("--csv", metavar="FILE", help="write the predictions as CSV, only once all succeeded "
                     "(default: print them)")
    pr.set_defaults(fn=cmd_predict)


def _diagnostic_json(d, source) -> dict:
    out = {"message": d.message, "severity": d.severity, "hint": d.hint, "file": getattr(source, "path", None)}
    if d.span is not None:
        out.update(line=d.span.line, col=d.span.col, end_line=d.span.end_line, end_col=d.span.end_col)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    as_json = "--json" in argv  # a flag, except for predict, whose --json FILE is where predictions go
    try:
        args = _parse(parser, argv)
        as_json = getattr(args, "json", None) is True
        return args.fn(args)
    except SpecError as e:
        try:
            print(str(e), file=sys.stderr)
            if as_json:  # a script reading stdout gets the errors as data too
                print(json.dumps({"ok": False, "errors": [_diagnostic_json(d, e.source) for d in e.diagnostics]}))
        except BrokenPipeError:  # `mgdsl ... 2>&1 | head`: the status still says "bad input", never 1 ("no")
            pass
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # an internal error: one line, a traceback only on request
        if os.environ.get("MGDSL_DEBUG"):
            traceback.print_exc()  # the whole traceback, with the same exit status as without it
            return EXIT_INTERNAL
        print(f"mgdsl: internal error: {type(e).__name__}: {e} (set MGDSL_DEBUG=1 for a traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
