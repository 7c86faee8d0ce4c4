"""Runs that survive faults: checkpoints every N steps, exact mid-epoch resume, SIGTERM, torchrun restarts;
and streamed training end to end (mgdsl/training/loop.py with feed.py, stream.py, faults.py)."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mgdsl.cli import main

from launch import report, torchrun
from tiny_specs import BN_FREE as BN_FREE_3

TINY = ["-D", "width=4", "-D", "nu=1"]
BN_FREE = BN_FREE_3.replace("classes 3", "classes 6")


def image_folder(root, classes=6, per_class=(4, 2), size=(14, 11)):
    """root/train and root/val with random PNGs of one size, `classes` class folders."""
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "val"), per_class):
        for c in range(classes):
            d = root / split / f"c{c}"
            d.mkdir(parents=True)
            for k in range(n):
                Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(d / f"{k}.png")
    return root


@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in (("train", 48), ("test", 20)):
        y = rng.integers(0, 6, n)
        x = (rng.random((n, 8, 8, 3)) * 80 + y[:, None, None, None] * 30).astype(np.uint8)
        np.savez(tmp_path / f"{name}.npz", x=x, y=y)
    return tmp_path


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _same_run(a, b, tol=1e-6):
    """Equal final weights and equal per-epoch metrics (the time columns aside)."""
    wa, wb = torch.load(a / "model.pt"), torch.load(b / "model.pt")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=tol, rtol=tol)
    ma, mb = _metrics(a), _metrics(b)
    assert len(ma) == len(mb)
    for x, y in zip(ma, mb):
        for k in ("lr_start", "lr_end", "train_loss", "train_acc", "test_loss", "test_acc", "test_top5"):
            assert x[k] == pytest.approx(y[k], rel=tol, abs=tol), (k, x, y)


def _data_args(kind, root):
    if kind == "memory":
        return ["--train", str(root / "train.npz"), "--test", str(root / "test.npz")]
    return ["--train", str(image_folder(root / "imgs")), "--workers", "0"]


@pytest.mark.parametrize("kind", ["memory", "stream"])
def test_sigterm_mid_epoch_then_resume_equals_an_uninterrupted_run(kind, npz, tmp_path, monkeypatch, capsys):
    (tmp_path / "bnfree.mg").write_text(BN_FREE)
    common = ["compile", str(tmp_path / "bnfree.mg"), *_data_args(kind, npz), "--epochs", "2", "--batch-size", "4",
              "--seed", "1"]
    assert main(common + ["--out", str(tmp_path / "full")]) == 0
    # SIGTERM after step 3 of epoch 1 (of 6 steps): the stop is honoured at the step boundary
    monkeypatch.setenv("MGDSL_FAULT", "TERM:0:1:3")
    assert main(common + ["--out", str(tmp_path / "cut")]) == 143
    assert "continue it with" in capsys.readouterr().err
    ck = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)
    assert (ck["epoch"], ck["step"]) == (1, 3) and len(_metrics(tmp_path / "cut")) == 1
    monkeypatch.delenv("MGDSL_FAULT")
    assert main(["compile", str(tmp_path / "bnfree.mg"), "--resume", str(tmp_path / "cut"), "--log-interval", "1"]) == 0
    err = capsys.readouterr().err
    assert "at epoch 2, step 3" in err
    # the batch counter runs on from the 3 steps taken before the stop, to the epoch's last step
    seen = [ln.split()[3].split("/") for ln in err.splitlines() if ln.startswith("  epoch 2/2  batch")]
    steps = int(seen[0][1])
    assert [int(k) for k, _ in seen] == list(range(4, steps + 1)) and steps > 4
    _same_run(tmp_path / "full", tmp_path / "cut", tol=0)  # bitwise on CPU
    # the resumed epoch counts all its images, and its speed is those trained after the resume (all but the
    # 3 steps of 4 before the stop) over their time
    full, cut = _metrics(tmp_path / "full")[1], _metrics(tmp_path / "cut")[1]
    assert cut["train_images"] == full["train_images"] > 12
    assert full["images_per_s"] * full["train_seconds"] == pytest.approx(full["train_images"])
    assert cut["images_per_s"] * cut["train_seconds"] == pytest.approx(cut["train_images"] - 12)


def test_checkpoint_interval_writes_the_position_and_every_rng_state(npz, tmp_path, monkeypatch):
    (tmp_path / "bnfree.mg").write_text(BN_FREE)
    out = tmp_path / "run"
    # a kill right after step 5 of epoch 0: the last checkpoint is the one of step 4 (interval 2)
    monkeypatch.setenv("MGDSL_FAULT", "KILL:0:0:5")
    code = subprocess.run([sys.executable, "-m", "mgdsl.cli", "compile", str(tmp_path / "bnfree.mg"),
                           *_data_args("memory", npz), "--epochs", "1", "--batch-size", "4",
                           "--checkpoint-interval", "2", "--out", str(out)], env=dict(os.environ, OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=120).returncode
    assert code == -signal.SIGKILL
    ck = torch.load(out / "last.pt", weights_only=False)
    assert (ck["epoch"], ck["step"]) == (0, 4)
    assert {"python", "numpy", "torch", "cuda"} <= set(ck["rng"])  # the data's draws are replayed, not saved
    assert not list(out.glob("*.tmp"))


def test_sigterm_exits_143_with_a_checkpoint_in_a_real_process(npz, tmp_path):
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "mgdsl.cli", "compile", "specs/mgnet.mg", *TINY,
                          *_data_args("memory", npz), "--batch-size", "4", "--epochs", "1000", "--out", str(out)],
                         env=dict(os.environ, OMP_NUM_THREADS="1"), stderr=subprocess.PIPE, text=True)
    import time
    deadline = time.time() + 120
    while not (out / "last.pt").exists() and time.time() < deadline:  # training is under way
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err[-1000:]
    assert "continue it with" in err and "Traceback" not in err
    ck = torch.load(out / "last.pt", weights_only=False)
    assert ck["step"] >= 1 and ck["epoch_stats"] is not None  # written at the step the signal stopped, not an epoch's end
    assert not list(out.glob("*.tmp"))


def test_torchrun_restarts_a_killed_rank_and_ends_like_an_uninterrupted_run(npz, tmp_path):
    """2 gloo processes, streamed folder: rank 1 is SIGKILLed after step 2 of epoch 1; torchrun restarts both
    and the run continues from the interval checkpoint; final metrics equal one uninterrupted process."""
    (tmp_path / "bnfree.mg").write_text(BN_FREE)
    common = ["compile", str(tmp_path / "bnfree.mg"), *_data_args("stream", npz), "--epochs", "2",
              "--batch-size", "4", "--seed", "2", "--checkpoint-interval", "1"]
    assert main(common + ["--out", str(tmp_path / "one")]) == 0
    # no retry: this job's rank 1 is meant to die by a signal (SIGKILL), and torchrun restarts it itself
    r = torchrun(["-m", "mgdsl.cli", *common, "--out", str(tmp_path / "two")], launcher=["--max-restarts=1"],
                 env=dict(os.environ, MGDSL_FAULT="KILL:1:1:2"), timeout=240, retry=False)
    assert r.returncode == 0, report(r)
    assert "exitcode: -9" in r.stderr  # rank 1 did die by SIGKILL
    assert "resuming" in r.stderr and "at epoch 2, step 2" in r.stderr  # from the step-2 checkpoint, not epoch 2's start
    _same_run(tmp_path / "one", tmp_path / "two", tol=1e-5)
    cfg = json.loads((tmp_path / "two" / "config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["data_plan"]["mode"] == "stream"
