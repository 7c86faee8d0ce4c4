"""Data path benchmark (issue 13), through the real `mgdsl compile --train` command:

1. throughput: training images/s of the in-memory and the streaming path on the same CIFAR-sized image
   folder (32x32 PNGs: the CIFAR-10 subset of ../shared/data when present, else random), same model,
   2 torch threads, 1 loader worker; the second epoch is reported (the first includes start-up);
2. memory: peak memory of a one-epoch run on an ImageFolder of 600 and of 2,400 random 128x128 PNGs
   (streaming; optionally the in-memory path for contrast), as the peak of the process tree's summed PSS
   (forked workers share pages, so PSS does not count them twice) and the main process's peak RSS.

    nice -n 10 python tools/bench_data.py [--with-memory-mode]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CIFAR = ROOT.parent / "shared" / "data" / "cifar10-train-10k.npz"  # the default --cifar: beside the checkout


def write_folder(root: Path, x: np.ndarray, y: np.ndarray) -> Path:
    """x (N x H x W x 3 uint8) as PNGs in root/<label>/<k>.png."""
    for k, (im, label) in enumerate(zip(x, y)):
        d = root / f"c{int(label)}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(d / f"{k}.png")
    return root


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{t}/children").read_text().split()]
        except OSError:
            pass
    return out


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(args: list[str], env: dict) -> dict:
    """Run the mgdsl command, polling memory every 20 ms; returns peaks in MB and the run's metrics."""
    p = subprocess.Popen([sys.executable, "-m", "mgdsl.cli", *args], env=env, cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = {"tree_pss": 0, "main_rss": 0}

    def poll():
        while p.poll() is None:
            peak["tree_pss"] = max(peak["tree_pss"], sum(_pss_kb(q) for q in _tree(p.pid)))
            peak["main_rss"] = max(peak["main_rss"], _hwm_kb(p.pid))
            time.sleep(0.02)
    t = threading.Thread(target=poll)
    t.start()
    out, err = p.communicate()
    t.join()
    if p.returncode != 0:
        raise SystemExit(f"mgdsl failed ({p.returncode}): {err[-2000:]}")
    return {"tree_pss_mb": peak["tree_pss"] / 1024, "main_rss_mb": peak["main_rss"] / 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000, help="CIFAR-sized images for the throughput part")
    ap.add_argument("--cifar", type=Path, default=CIFAR,
                    help="an .npz of CIFAR images (x, y) for the throughput part; random images when it is absent")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--with-memory-mode", action="store_true", help="also the in-memory path's peak memory")
    ap.add_argument("--only", choices=["throughput", "memory"], help="run one part")
    ap.add_argument("--rounds", type=int, default=1, help="throughput: alternate the modes, keep each one's best")
    a = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=str(ROOT))
    tiny = ["-D", f"width={a.width}", "-D", "nu=1"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if a.cifar.exists():
            z = np.load(a.cifar)
            x, y, source = z["x"][:a.images], z["y"][:a.images], f"{a.cifar.name}[:{a.images}]"
        else:
            rng = np.random.default_rng(0)
            x, y, source = rng.integers(0, 256, (a.images, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, a.images), "random"
        folder = write_folder(tmp / "cifar", x, y)
        for k in range(a.rounds if a.only != "memory" else 0):
            for mode in ("memory", "stream"):
                out = tmp / f"run-{mode}-{k}"
                run(["compile", "specs/mgnet.mg", *tiny, "--train", str(folder), "--epochs", "2", "--batch-size",
                     "128", "--data-mode", mode, "--workers", "1", "--out", str(out)], env)
                m = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
                key = f"{mode}_images_per_s"
                results[key] = max(results.get(key, 0), round(m[-1]["images_per_s"], 1))
        results["throughput_data"] = f"{source}, 32x32 PNG folder, 80/20 split, mgnet width {a.width} nu 1, batch 128"
        if a.only == "throughput":
            print(json.dumps(results, indent=2))
            return

        rng = np.random.default_rng(1)
        for n in (600, 2400):
            f = write_folder(tmp / f"rand{n}", rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8),
                             rng.integers(0, 10, n))
            for mode in ("stream", "memory") if a.with_memory_mode else ("stream",):
                r = run(["compile", "specs/mgnet.mg", "-D", "width=8", "-D", "nu=1", "--train", str(f), "--epochs", "1",
                         "--batch-size", "64", "--data-mode", mode, "--workers", "1", "--out", str(tmp / f"m{n}{mode}")],
                        env)
                results[f"{mode}_{n}_tree_pss_mb"] = round(r["tree_pss_mb"], 1)
                results[f"{mode}_{n}_main_rss_mb"] = round(r["main_rss_mb"], 1)
        for mode in ("stream", "memory") if a.with_memory_mode else ("stream",):
            results[f"{mode}_2400_minus_600_tree_pss_mb"] = round(
                results[f"{mode}_2400_tree_pss_mb"] - results[f"{mode}_600_tree_pss_mb"], 1)
            results[f"{mode}_2400_minus_600_main_rss_mb"] = round(
                results[f"{mode}_2400_main_rss_mb"] - results[f"{mode}_600_main_rss_mb"], 1)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
