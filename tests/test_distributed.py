"""DistributedDataParallel on CPU (gloo): two processes equal one, and only rank 0 writes."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from launch import report, torchrun
from tiny_specs import BN_FREE


def _torchrun(args):
    return torchrun(["-m", "mgdsl.cli", *args])


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in (("train", 32), ("test", 16)):
        np.savez(tmp_path / f"{name}.npz", x=rng.integers(0, 255, (n, 8, 8, 3)).astype(np.uint8),
                 y=rng.integers(0, 3, n))
    (tmp_path / "bnfree.mg").write_text(BN_FREE)
    return tmp_path


def test_two_processes_average_their_gradients_into_the_step_of_one(data):
    """BN-free, so the shares' mean gradient is the whole batch's: a missing all-reduce would differ."""
    common = ["compile", str(data / "bnfree.mg"), "--train", str(data / "train.npz"), "--test",
              str(data / "test.npz"), "--epochs", "1", "--batch-size", "32", "--no-augment", "--seed", "3"]
    from mgdsl.cli import main
    assert main(common + ["--out", str(data / "one")]) == 0
    r = _torchrun(common + ["--out", str(data / "two")])
    assert r.returncode == 0, report(r)
    a = torch.load(data / "one" / "model.pt")
    b = torch.load(data / "two" / "model.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-6)
    cfg = json.loads((data / "two" / "config.json").read_text())
    assert cfg["world_size"] == 2


def test_two_process_mgnet_run_writes_once(data, tmp_path):
    out = tmp_path / "ddp"
    r = _torchrun(["compile", "specs/mgnet.mg", "-D", "width=4", "-D", "nu=1", "--train", str(data / "train.npz"),
                   "--test", str(data / "test.npz"), "--epochs", "2", "--batch-size", "8", "--out", str(out)])
    assert r.returncode == 0, report(r)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # one line per epoch: rank 1 wrote nothing
    assert {p.name for p in out.iterdir()} == {"config.json", "metrics.jsonl", "model.pt", "best.pt", "last.pt",
                                               "curves.png", "summary.json"}


PROBE = """
import json, os, sys
import mgdsl.training.loop as loop
from mgdsl.cli import main

seen = []
real = loop.train_epoch


def spy(fwd, opt, batches, **kw):
    def recorded():
        for xb, yb in batches:
            # each training image is constant and unique, so its mean names it
            seen.append(sorted(round(float(v), 4) for v in xb.mean((1, 2, 3))))
            yield xb, yb
    return real(fwd, opt, recorded(), **kw)


loop.train_epoch = spy
rc = main(sys.argv[1:])
with open(os.environ["PROBE_OUT"] + "." + os.environ.get("RANK", "0") + ".json", "w") as fh:
    json.dump(seen, fh)
sys.exit(rc)
"""


def test_under_torchrun_each_process_trains_on_its_own_disjoint_share_of_every_batch(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in (("train", 48), ("test", 8)):
        x = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None, None] * 5, 8 * 8 * 3).reshape(n, 8, 8, 3)
        np.savez(tmp_path / f"{name}.npz", x=x, y=rng.integers(0, 3, n))
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    args = ["compile", "specs/mgnet.mg", "-D", "width=4", "-D", "nu=1", "--train", str(tmp_path / "train.npz"),
            "--test", str(tmp_path / "test.npz"), "--epochs", "2", "--batch-size", "16", "--no-augment"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PROBE_OUT=str(tmp_path / "one"))
    r = subprocess.run([sys.executable, str(probe), *args, "--out", str(tmp_path / "r1")], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, report(r)
    env["PROBE_OUT"] = str(tmp_path / "two")
    r = torchrun([str(probe), *args, "--out", str(tmp_path / "r2")], env=env)
    assert r.returncode == 0, report(r)
    one = json.loads((tmp_path / "one.0.json").read_text())
    a, b = (json.loads((tmp_path / f"two.{k}.json").read_text()) for k in (0, 1))
    assert len(one) == len(a) == len(b) == 6  # 3 global batches of 16 per epoch, 2 epochs
    for whole, x, y in zip(one, a, b):
        assert len(x) == len(y) == 8 and not set(x) & set(y)  # disjoint halves
        assert sorted(x + y) == whole  # that together are the one-process batch
