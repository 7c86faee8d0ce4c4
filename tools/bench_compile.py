"""Compile-time and train-step benchmark (issues 2, 10): text -> IR, -> module, `mgdsl check` wall time, and
the lowered MgNet's train step against the hand-written reference (tests/reference.py).

The train steps are interleaved: step k of the lowered model and step k of the hand-written one run back
to back (alternating which goes first), and the median of the per-step ratios is reported, so that load
from other processes on a shared machine hits both sides alike.

    OMP_NUM_THREADS=2 python tools/bench_compile.py [--steps 40] [--widths 32 64]"""
import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def best(fn, n=20):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts), statistics.median(ts)


def interleaved(step_a, step_b, steps: int, warmup: int = 3) -> tuple[float, float, float]:
    """Median of per-step time ratios a/b, and the median step times of a and b."""
    for _ in range(warmup):
        step_a()
        step_b()
    ratios, ta, tb = [], [], []
    for k in range(steps):
        order = (step_a, step_b) if k % 2 == 0 else (step_b, step_a)
        t = {}
        for fn in order:
            t0 = time.perf_counter()
            fn()
            t[fn] = time.perf_counter() - t0
        ta.append(t[step_a])
        tb.append(t[step_b])
        ratios.append(t[step_a] / t[step_b])
    return statistics.median(ratios), statistics.median(ta), statistics.median(tb)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args(argv)
    import mgdsl
    spec = str(ROOT / "specs/mgnet.mg")
    mgdsl.compile_ir(spec)  # warm the grammar cache
    b, m = best(lambda: mgdsl.compile_ir(spec))
    print(f"text -> checked IR (specs/mgnet.mg): best {b * 1e3:.1f} ms, median {m * 1e3:.1f} ms (goal < 50 ms)",
          flush=True)
    import torch
    b, m = best(lambda: mgdsl.load(spec), n=5)
    print(f"text -> lowered module (full width, after torch import): best {b * 1e3:.0f} ms, median {m * 1e3:.0f} ms "
          "(goal < 300 ms)", flush=True)
    ts = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mgdsl.cli", "check", spec], check=True, capture_output=True)
        ts.append(time.perf_counter() - t)
    print(f"`mgdsl check specs/mgnet.mg` wall time incl. interpreter start: best {min(ts):.2f} s, "
          f"median {statistics.median(ts):.2f} s (goal < 1 s)", flush=True)

    from reference import HandMgNet
    torch.set_num_threads(args.threads)
    for width in args.widths:
        torch.manual_seed(0)
        x = torch.randn(args.batch, 3, 32, 32)
        y = torch.randint(0, 10, (args.batch,))
        steps = {}
        for name, model in (("mgdsl", mgdsl.load(spec, width=width)), ("hand", HandMgNet(width, width))):
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

            def step(model=model, opt=opt):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
            steps[name] = step
        ratio, ta, tb = interleaved(steps["mgdsl"], steps["hand"], args.steps)
        print(f"train step, width {width}, batch {args.batch}, {args.threads} threads, {args.steps} interleaved steps: "
              f"mgdsl {ta * 1e3:.0f} ms, hand-written {tb * 1e3:.0f} ms, median per-step ratio {ratio:.3f} "
              f"(goal <= 1.03)", flush=True)


if __name__ == "__main__":
    main()
