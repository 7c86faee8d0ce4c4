"""`mgdsl solve`: run a multigrid spec as an iterative solver u <- u + M(f - A u) for -Laplace u = f."""
from __future__ import annotations

import json
import math
import sys
import time

from .diagnostics import Diagnostic, SpecError


def rhs(kind: str, n: int, torch, dtype, device, seed: int = 0):
    if kind == "random":
        g = torch.Generator().manual_seed(seed)
        return torch.randn(1, 1, n, n, generator=g, dtype=dtype).to(device)
    if kind == "ones":
        return torch.ones(1, 1, n, n, dtype=dtype, device=device)
    if kind == "sin":
        t = torch.linspace(0, 1, n + 2, dtype=dtype, device=device)[1:-1]
        return (torch.sin(math.pi * t).view(n, 1) * torch.sin(math.pi * t).view(1, n)).view(1, 1, n, n)
    raise SpecError([Diagnostic(f"unknown --rhs {kind}", None, "use random, ones or sin")])


def solve(ir, n: int, tol: float = 1e-8, max_cycles: int = 100, rhs_kind: str = "random",
          dtype: str = "float64", device: str = "cpu") -> dict:
    """Residual history of the cycle; the cycle is the lowered module, A its grid-1 operator."""
    import torch

    from .lowering import default_dtype, lower_ir
    if "A[1]" not in ir.instances:
        raise SpecError([Diagnostic(f"{ir.name} has no A[1]: a solver spec needs the fine-grid operator", None)])
    if ir.output_ty.shape != ir.input_ty.shape:
        raise SpecError([Diagnostic(f"{ir.name} maps {ir.input_ty.shape} to {ir.output_ty.shape}; a cycle must "
                                    "return u on the fine grid", None, "use a `cycle V` or `cycle W` spec")])
    dt = getattr(torch, dtype)
    with default_dtype(dt):
        t0 = time.perf_counter()
        cycle = lower_ir(ir).to(device).eval()
        A = cycle.instance("A[1]")
        setup = time.perf_counter() - t0
        f = rhs(rhs_kind, n, torch, dt, device)
        u = torch.zeros_like(f)
        r = f
        r0 = f.norm().item()
        res = [r0]
        t0 = time.perf_counter()
        with torch.no_grad():
            for _ in range(max_cycles):
                u = u + cycle(r)  # residual correction: u <- u + M(f - A u)
                r = f - A(u)
                res.append(r.norm().item())
                if res[-1] <= tol * r0:
                    break
        if device == "cuda":
            torch.cuda.synchronize()
        secs = time.perf_counter() - t0
    factors = [res[k] / res[k - 1] for k in range(1, len(res)) if res[k - 1] > 0]
    tail = factors[-5:] if len(factors) > 5 else factors
    conv = math.exp(sum(map(math.log, tail)) / len(tail)) if tail else float("nan")
    return {"n": n, "grids": ir.grids, "cycles": len(res) - 1, "residuals": res, "factors": factors,
            "convergence_factor": conv, "setup_seconds": setup, "solve_seconds": secs,
            "converged": res[-1] <= tol * r0, "u": u}


def cmd_solve(args) -> int:
    from . import compile_ir, parse_overrides
    params = parse_overrides(args.defines)
    params["n"] = args.n
    if (args.n - 1) & (args.n - 2) != 0 or args.n < 3:
        raise SpecError([Diagnostic(f"--n {args.n}: multigrid needs n = 2^k + 1 points per side", None,
                                    "e.g. --n 65, 129, 257")])
    if not 0 < args.tol < 1:  # a relative residual: 0 or less can never be met, 1 or more is met at once
        raise SpecError([Diagnostic(f"--tol {args.tol}: the relative residual to reach must be between 0 and 1",
                                    None, "e.g. --tol 1e-8")])
    if args.max_cycles < 1:
        raise SpecError([Diagnostic(f"--max-cycles {args.max_cycles}: must be at least 1", None)])
    ir = compile_ir(args.spec, **params)
    out = solve(ir, args.n, args.tol, args.max_cycles, args.rhs, args.dtype, args.device)
    out.pop("u")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.semilogy(out["residuals"], "o-")
        ax.set(xlabel="cycle", ylabel="residual norm", title=f"{ir.name}, n = {args.n}")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
    if args.json:
        print(json.dumps(out))
        return 0 if out["converged"] else 1
    for k, r in enumerate(out["residuals"]):
        fac = f"  factor {out['factors'][k - 1]:.3f}" if k else ""
        print(f"cycle {k:3d}  residual {r:.3e}{fac}")
    print(f"{ir.name}: n = {args.n}, {out['grids']} grids, asymptotic factor {out['convergence_factor']:.3f}, "
          f"{out['cycles']} cycles, setup {out['setup_seconds']:.3f} s, solve {out['solve_seconds']:.3f} s, "
          f"{'converged' if out['converged'] else 'NOT converged'}", file=sys.stderr)
    return 0 if out["converged"] else 1


def add_solve_parser(sub, add_defines) -> None:
    s = sub.add_parser("solve", help="solve -Laplace u = f with a multigrid spec")
    s.add_argument("spec", help="a multigrid spec (a .mg file or a bundled name, e.g. multigrid/poisson-v11)")
    add_defines(s)
    s.add_argument("--n", type=int, default=65, help="points per side, 2^k + 1")
    s.add_argument("--tol", type=float, default=1e-8, help="relative residual")
    s.add_argument("--max-cycles", type=int, default=100, help="stop after this many cycles")
    s.add_argument("--rhs", default="random", choices=["random", "ones", "sin"], help="the right-hand side f")
    s.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="arithmetic precision")
    s.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to solve")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--plot", metavar="FILE", help="draw the residual history; default: no plot")
    s.set_defaults(fn=cmd_solve)
