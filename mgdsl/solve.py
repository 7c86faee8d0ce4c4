"""`mgdsl solve`: run a multigrid spec as an iterative solver u <- u + M(f - A u) for -Laplace u = f."""
from __future__ import annotations

import math
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


def residual_operator(ir) -> list[str]:
    """The operator of the fine-grid residual f - A(u), found by its role, not its name: the instance applied to
    u on grid 1 (the output's type) whose value, in f on grid 1 (the input's type), is subtracted."""
    from .ir import reachable
    found = []
    for nid in sorted(reachable(ir.nodes, [ir.output])):
        n = ir.nodes[nid]
        a = ir.nodes[n.args[1]] if n.op == "sub" else None
        if a is not None and a.op == "apply" and a.ty == ir.input_ty and ir.nodes[a.args[0]].ty == ir.output_ty \
                and a.inst not in found:
            found.append(a.inst)
    return found


def check_solvable(ir) -> None:
    """SpecError saying plainly why the spec is not a fixed-stencil multigrid `solve` can run (all reasons)."""
    from .normal import LINEAR_PRIMS
    ops = residual_operator(ir)
    why = ([] if "n" in ir.params else ["it has no `param n` (points per side)"]) + \
          ([] if ir.input_ty.level == 1 and ir.output_ty.shape == ir.input_ty.shape else
           [f"it maps {ir.input_ty.describe()} to {ir.output_ty.describe()}, not f to u on grid 1"]) + \
          ([] if ops else ["it has no fine-grid residual f - A(u) (u and f on grid 1)"]) + \
          ([f"its fine-grid residuals use {' and '.join(ops)}; solve needs one operator"] if len(ops) > 1 else []) + \
          [f"{i.label} is {i.klass} with {i.params:,} trained parameters" for i in ir.instances.values()
           if not i.fixed][:1] + \
          [f"{i.label} is {i.klass}" for i in ir.instances.values() if i.fixed and i.klass != "linear"][:1] + \
          [f"the scheme applies {n.prim}, which is not linear" for n in ir.nodes
           if n.op == "prim" and n.prim not in LINEAR_PRIMS][:1]
    if why:
        raise SpecError([Diagnostic(f"{ir.name} is not a fixed-stencil multigrid: " + "; ".join(why), None,
                                    "solve needs `param n`, `input f : 1 x n x n`, a fixed operator A in the "
                                    "residual f - A(u) (laplace), fixed R, P and smoothers, and a cycle that "
                                    "returns u on grid 1, e.g. specs/multigrid/poisson-v11.mg")], ir.source)


def check_solve_options(n: int, tol: float, max_cycles: int) -> None:
    """SpecError for a grid size, tolerance or cycle count a solve cannot use."""
    if (n - 1) & (n - 2) != 0 or n < 3:
        raise SpecError([Diagnostic(f"--n {n}: multigrid needs n = 2^k + 1 points per side", None,
                                    "e.g. --n 65, 129, 257")])
    if not 0 < tol < 1:  # a relative residual: 0 or less can never be met, 1 or more is met at once
        raise SpecError([Diagnostic(f"--tol {tol}: the relative residual to reach must be between 0 and 1",
                                    None, "e.g. --tol 1e-8")])
    if max_cycles < 1:
        raise SpecError([Diagnostic(f"--max-cycles {max_cycles}: must be at least 1", None)])


DIVERGED = 1e8  # a residual this many times the first: the cycle diverges, and more cycles only reach inf


def solve(ir, n: int, tol: float = 1e-8, max_cycles: int = 100, rhs_kind: str = "random",
          dtype: str = "float64", device: str = "cpu") -> dict:
    """Residual history of the cycle; the cycle is the lowered module, A the operator of its grid-1 residual."""
    import torch

    from .lowering import default_dtype, lower_ir
    check_solvable(ir)
    (a_label,) = residual_operator(ir)
    dt = getattr(torch, dtype)
    with default_dtype(dt):
        t0 = time.perf_counter()
        cycle = lower_ir(ir).to(device).eval()
        A = cycle.instance(a_label)
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
                if res[-1] <= tol * r0 or not res[-1] <= DIVERGED * r0:  # converged, or diverged (or NaN)
                    break
        if device == "cuda":
            torch.cuda.synchronize()
        secs = time.perf_counter() - t0
    factors = [res[k] / res[k - 1] for k in range(1, len(res)) if res[k - 1] > 0]
    tail = factors[-5:] if len(factors) > 5 else factors
    conv = math.exp(sum(map(math.log, tail)) / len(tail)) if tail else float("nan")
    return {"n": n, "grids": ir.grids, "cycles": len(res) - 1, "residuals": res, "factors": factors,
            "convergence_factor": conv, "setup_seconds": setup, "solve_seconds": secs,
            "converged": res[-1] <= tol * r0, "diverged": not res[-1] <= DIVERGED * r0, "operator": a_label, "u": u}


def rediscretised(ir) -> list[str]:
    """The coarse-grid operators written as a fresh laplace (re-discretised) instead of the Galerkin R A P."""
    return [i.label for i in ir.instances.values() if i.in_ty and (i.in_ty.level or 0) > 1
            and any(lay.stencil == "laplace" for lay in i.layers)]


def divergence_hint(ir, out: dict) -> str | None:
    """Why a cycle that does not converge may not: a re-discretised laplace on a coarse grid (docs/language.md)."""
    coarse = rediscretised(ir)
    if out["converged"] or not coarse or not out["convergence_factor"] >= 0.9:
        return None
    return (f"{', '.join(coarse[:3])}{' ...' if len(coarse) > 3 else ''} re-discretise laplace on coarser grids, whose "
            "zero boundary lies beyond the fine grid's: the coarse correction overshoots. Use the Galerkin operator "
            "A[l] = R[l-1] . A[l-1] . P[l-1] (5.11), as specs/multigrid/poisson-v11.mg does (docs/language.md)")


def plot_residuals(residuals: list[float], title: str, path: str) -> None:
    """The residual history on a log scale, written atomically to `path` (format from its suffix)."""
    import io
    from pathlib import Path

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .files import atomic_write
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.semilogy(residuals, "o-")
    ax.set(xlabel="cycle", ylabel="residual norm", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix[1:] or "png", dpi=100)
    plt.close(fig)
    atomic_write(Path(path), buf.getvalue())


