"""The `mgdsl` command: a thin layer over the pipeline stages; exit 0 ok, 2 spec error, 1 runtime error."""
from __future__ import annotations

import argparse
import json
import os
import sys

from . import SpecError, compile_spec, parse_overrides


def _add_defines(p: argparse.ArgumentParser) -> None:
    p.add_argument("-D", dest="defines", action="append", default=[], metavar="NAME=VALUE",
                   help="override a `param` of the spec, e.g. -D width=32")


def _ir(args):
    from .diagnostics import render
    ir = compile_spec(args.spec, parse_overrides(args.defines),
                      max_params=int(getattr(args, "max_params", None) or 1_000_000_000))
    if ir.warnings:
        print(render(ir.warnings, ir.source), file=sys.stderr)
    return ir


def summary(ir) -> dict:
    """What `compile --json` prints: the facts a user checks against the paper."""
    from .check import sharing_table
    return {
        "name": ir.name, "spec": ir.path, "params": ir.total_params,
        "input_shape": list(ir.input_ty.shape), "output_shape": list(ir.output_ty.shape),
        "grids": ir.grids, "nu": ir.nu, "cycle": ir.cycle,
        "channels": {k: v for k, v in ir.spaces.items()},
        "operators": sharing_table(ir),
    }


def _table(rows: list[dict], cols: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    head = "  ".join(c.ljust(widths[c]) for c in cols)
    body = ["  ".join(str(r[c]).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join([head, "-" * len(head), *body])


def cmd_compile(args) -> int:
    ir = _ir(args)
    if args.train or args.resume:
        return _train(ir, args)
    s = summary(ir)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    print(f"{s['name']}  ({s['spec']})")
    print(f"  input {tuple(s['input_shape'])} -> output {tuple(s['output_shape'])}, {ir.grids} grids, "
          f"nu = {ir.nu}, channels {s['channels']}")
    print(f"  trainable parameters: {s['params']:,}\n")
    rows = [dict(r, io=f"{r['in_space']}:{r['in']} -> {r['out_space']}:{r['out']}") for r in s["operators"]]
    print(_table(rows, ["name", "scope", "kind", "io", "stride", "params", "uses"]))
    return 0


def add_train_args(p: argparse.ArgumentParser) -> None:
    from .training import Options
    from .training.recipes import DATA_MODES, RECIPES
    d = Options()
    g = p.add_argument_group("training (with --train)")
    g.add_argument("--test", help="evaluation set for an .npz train set (same layout)")
    g.add_argument("--data", dest="data_root", default=d.data_root, help="folder for downloaded data sets")
    g.add_argument("--recipe", choices=sorted(RECIPES), default=d.recipe)
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default=d.device)
    g.add_argument("--amp", action="store_true", help="bf16 autocast")
    g.add_argument("--channels-last", action="store_true")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--out", help="output folder (default runs/NAME-DATASET, numbered if taken)")
    g.add_argument("--overwrite", action="store_true", help="let --out replace the run already in it")
    g.add_argument("--resume", metavar="DIR", help="continue the run in DIR exactly")
    g.add_argument("--no-augment", action="store_true", help="no random crop / flip")
    g.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across processes under torchrun")
    g.add_argument("--data-mode", choices=DATA_MODES, default=d.data_mode,
                   help="memory: decode the whole set onto the device; stream: decode per batch with DataLoader "
                        "workers; auto: image folders stream, arrays stay in memory if they fit the budget")
    g.add_argument("--workers", type=int, help="DataLoader processes per rank when streaming (default: CPUs - 1, <= 8)")
    g.add_argument("--checkpoint-interval", type=int, default=d.checkpoint_interval, metavar="STEPS",
                   help="also write last.pt every STEPS steps (resumable mid-epoch); it is always written per epoch")


def _train(ir, args) -> int:
    """compile --train: run training and print its summary; NaN loss exits 1, Ctrl-C 130, SIGTERM 143."""
    from .training import OPTION_NAMES, train
    from .training.loop import Diverged, Interrupted
    opts = {k: getattr(args, k) for k in OPTION_NAMES if k != "augment"}
    opts["augment"] = not args.no_augment
    try:
        summary = train(ir, args.train, **opts)
    except Diverged as e:
        if os.environ.get("RANK", "0") == "0":
            print(f"mgdsl: stopped: {e}; the last good checkpoint is {e.checkpoint}", file=sys.stderr)
        return 1
    except Interrupted as e:
        if os.environ.get("RANK", "0") == "0":
            print(f"mgdsl: interrupted; resume with --resume {e.out}", file=sys.stderr)
        return e.status
    if summary is not None:
        print(json.dumps(summary))
    return 0


def cmd_eval(args) -> int:
    from .training import evaluate_weights
    print(json.dumps(evaluate_weights(_ir(args), args.weights, args.test, args.data_root)))
    return 0


def cmd_check(args) -> int:
    ir = _ir(args)
    if args.equiv:
        from .equiv import main as equiv_main
        return equiv_main(ir, args)
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
    from .fmt import fmt
    from .syntax import parse, read_source
    text = read_source(args.spec)
    out = fmt(parse(text, args.spec))
    if args.check:
        if out != text:
            print(f"{args.spec}: not canonical (run mgdsl fmt -i)", file=sys.stderr)
            return 1
        return 0
    if args.in_place:
        if out != text:
            tmp = args.spec + ".tmp"
            with open(tmp, "w") as fh:
                fh.write(out)
            os.replace(tmp, args.spec)
        return 0
    sys.stdout.write(out)
    return 0


def cmd_render(args) -> int:
    from .render import render
    irs = []
    for spec in args.specs:
        args.spec = spec
        irs.append(_ir(args))
    print(render(irs, args.output, args.format, args.expand, args.ir))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mgdsl", description="Compile, check, draw, train and solve MgNet specs.")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="check a spec and print its operators and parameter count (or train it)")
    c.add_argument("spec")
    _add_defines(c)
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.add_argument("--max-params", type=float, default=1e9, help="refuse larger models before allocation")
    c.add_argument("--train", metavar="DATASET", help="digits, cifar10, cifar100, an .npz file or an image folder")
    add_train_args(c)
    c.set_defaults(fn=cmd_compile)

    k = sub.add_parser("check", help="static checks: linearity classes and the sharing table")
    k.add_argument("spec")
    _add_defines(k)
    k.add_argument("--json", action="store_true")
    k.add_argument("--equiv", metavar="TARGET", help="a spec or family (mg0, iresnet, mg-iresnet, resnet, ...)")
    k.add_argument("--trials", type=int, default=3)
    k.add_argument("--seed", type=int, default=0)
    k.set_defaults(fn=cmd_check)

    f = sub.add_parser("fmt", help="print the canonical text of a spec")
    f.add_argument("spec")
    f.add_argument("--check", action="store_true", help="exit 1 if the file is not canonical")
    f.add_argument("-i", "--in-place", action="store_true", help="rewrite the file")
    f.set_defaults(fn=cmd_fmt)

    r = sub.add_parser("render", help="draw specs as the paper does (grids as bands, smoothing folded)")
    r.add_argument("specs", nargs="+", metavar="SPEC")
    r.add_argument("-o", "--output", required=True, metavar="FILE")
    r.add_argument("--format", choices=["svg", "png", "pdf", "dot"], help="default: from the file name")
    r.add_argument("--expand", action="store_true", help="one box per smoothing step")
    r.add_argument("--ir", action="store_true", help="the raw unrolled IR graph (first spec)")
    _add_defines(r)
    r.set_defaults(fn=cmd_render)

    from .training import Options

    e = sub.add_parser("eval", help="top-1 accuracy of saved weights on a test set")
    e.add_argument("spec")
    _add_defines(e)
    e.add_argument("--weights", required=True)
    e.add_argument("--test", required=True, help="digits, cifar10, cifar100 or an .npz file")
    e.add_argument("--data", dest="data_root", default=Options().data_root)
    e.set_defaults(fn=cmd_eval)
    from .solve import add_solve_parser
    add_solve_parser(sub, _add_defines)
    from .rewrite import add_rewrite_parser
    add_rewrite_parser(sub, _add_defines)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except SpecError as e:
        print(str(e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # an internal error: one line, a traceback only on request
        if os.environ.get("MGDSL_DEBUG"):
            raise
        print(f"mgdsl: internal error: {type(e).__name__}: {e} (set MGDSL_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
