"""Multigrid benchmark (issue 6): time to a 1e-8 relative residual for -Laplace u = f (5-point, zero
padding), mgdsl V(2,2) vs pyamg (Ruge-Stueben and smoothed aggregation) vs scipy's direct solve, same
right-hand side, setup and solve separately; and the h-independence of mgdsl's convergence factors.

    pip install pyamg   # benchmark-only dependency
    python tools/bench_solve.py [--sizes 257 513 1025] [--device cuda]
"""
import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import scipy.sparse as sp  # noqa: E402
import scipy.sparse.linalg as spla  # noqa: E402
import torch  # noqa: E402

import mgdsl  # noqa: E402
from mgdsl.solve import rhs, solve  # noqa: E402


def laplacian(n):
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n))
    return (sp.kron(sp.eye(n), T) + sp.kron(T, sp.eye(n))).tocsr()


def bench_pyamg(A, b, kind):
    import pyamg
    t = time.perf_counter()
    ml = pyamg.ruge_stuben_solver(A) if kind == "RS" else pyamg.smoothed_aggregation_solver(A)
    setup = time.perf_counter() - t
    res = []
    t = time.perf_counter()
    ml.solve(b, tol=1e-8, residuals=res, maxiter=200)
    return setup, time.perf_counter() - t, len(res) - 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[257, 513, 1025])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print("h-independence of the asymptotic factor (last 4 cycles before round-off):")
    for name, params in (("poisson-v11", {}), ("poisson-v22", {}), ("poisson-backslash", {"nu": 1}),
                         ("poisson-backslash", {"nu": 2})):
        row = []
        for n in (33, 65, 129, 257, 513):
            out = solve(mgdsl.compile_ir(str(ROOT / f"specs/multigrid/{name}.mg"), n=n, **params), n,
                        tol=1e-300, max_cycles=30)
            res = out["residuals"]
            f = [res[k] / res[k - 1] for k in range(1, len(res)) if res[k] > 1e-11 * res[0]][-4:]
            row.append(math.exp(sum(map(math.log, f)) / len(f)))
        print(f"  {name} {params or ''}: " + "  ".join(f"n={n}: {v:.3f}" for n, v in zip((33, 65, 129, 257, 513), row)))
    print(f"\ntime to 1e-8 relative residual, {a.threads} threads, float64, device {a.device} (seconds)")
    print("     n  unknowns   mgdsl setup  solve cyc |  RS setup  solve it |  SA setup  solve it | direct | "
          "mgdsl/RS")
    for n in a.sizes:
        ir = mgdsl.compile_ir(str(ROOT / "specs/multigrid/poisson-v22.mg"), n=n)
        out = solve(ir, n, tol=1e-8, device=a.device)
        b = rhs("random", n, torch, torch.float64, "cpu").numpy().ravel()
        A = laplacian(n)
        try:
            rs = bench_pyamg(A, b, "RS")
            sa = bench_pyamg(A, b, "SA")
        except ImportError:
            rs = sa = (float("nan"),) * 3
        t = time.perf_counter()
        spla.spsolve(A.tocsc(), b)
        direct = time.perf_counter() - t
        ours = out["setup_seconds"] + out["solve_seconds"]
        print(f"{n:6d} {n * n:9d}   {out['setup_seconds']:8.3f} {out['solve_seconds']:6.3f} {out['cycles']:3d} | "
              f"{rs[0]:8.3f} {rs[1]:6.3f} {rs[2]:3d} | {sa[0]:8.3f} {sa[1]:6.3f} {sa[2]:3d} | {direct:6.2f} | "
              f"{ours / (rs[0] + rs[1]):.2f}")


if __name__ == "__main__":
    main()
