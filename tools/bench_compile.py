"""Compile-time and train-step benchmark (issue 2): text -> IR, -> module, `mgdsl check` wall time,
and the lowered MgNet's train step against the hand-written reference. Prints its numbers."""
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


def main():
    import mgdsl
    spec = str(ROOT / "specs/mgnet.mg")
    mgdsl.compile_ir(spec)  # warm the grammar cache
    b, m = best(lambda: mgdsl.compile_ir(spec))
    print(f"text -> checked IR (specs/mgnet.mg): best {b * 1e3:.1f} ms, median {m * 1e3:.1f} ms (goal < 50 ms)")
    import torch
    b, m = best(lambda: mgdsl.load(spec), n=5)
    print(f"text -> lowered module (full width, after torch import): best {b * 1e3:.0f} ms, median {m * 1e3:.0f} ms "
          "(goal < 300 ms)")
    ts = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mgdsl.cli", "check", spec], check=True, capture_output=True)
        ts.append(time.perf_counter() - t)
    print(f"`mgdsl check specs/mgnet.mg` wall time incl. interpreter start: best {min(ts):.2f} s (goal < 1 s)")

    from reference import HandMgNet
    torch.set_num_threads(2)
    for width in (32, 64):
        x = torch.randn(64, 3, 32, 32)
        y = torch.randint(0, 10, (64,))
        res = {}
        for name, model in (("mgdsl", mgdsl.load(spec, width=width)), ("hand", HandMgNet(width, width))):
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

            def step():
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
            for _ in range(3):
                step()
            res[name] = best(step, n=10)[1]
        print(f"train step, width {width}, batch 64, 2 threads: mgdsl {res['mgdsl'] * 1e3:.0f} ms, "
              f"hand-written {res['hand'] * 1e3:.0f} ms, ratio {res['mgdsl'] / res['hand']:.3f} (goal <= 1.03)")


if __name__ == "__main__":
    main()
