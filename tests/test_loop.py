"""mgdsl.training.loop.fit, called in-process: what a run folder holds after an interruption, a resume and a
finished run (config.json's record, best.pt, last.pt's position), each against what it claims. The CLI-level
tests of training are in test_train.py and test_train_faults.py."""
import json

import numpy as np
import pytest
import torch

import mgdsl
from mgdsl.cli import main
from mgdsl.training import train
from mgdsl.training.evaluate import evaluate_run
from mgdsl.training.loop import Interrupted
from helpers import colour_set, one_thread  # noqa: F401  (an autouse fixture: one torch thread per test)


@pytest.fixture
def data(tmp_path):
    colour_set(tmp_path / "train.npz", 64, 0)
    colour_set(tmp_path / "test.npz", 24, 1)
    return tmp_path


def _run(data, out, **kw):
    return train("specs/mgnet.mg", str(data / "train.npz"), test=str(data / "test.npz"), batch_size=16,
                 out=str(out), defines={"width": 4, "nu": 1}, **kw)


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_ctrl_c_after_an_epoch_is_status_130_and_the_resume_redoes_only_the_unsaved_epoch(data, tmp_path):
    # Ctrl-C in epoch 2's end (its metrics line is written, its checkpoint is not): the run stops with
    # status 130, every file complete; last.pt is at the end of epoch 1, and the resume redoes epoch 2 once
    out = tmp_path / "run"

    def ctrl_c(m):
        if m["epoch"] == 2:
            raise KeyboardInterrupt
    with pytest.raises(Interrupted) as e:
        _run(data, out, epochs=3, callback=ctrl_c)
    assert e.value.status == 130 and e.value.out == out
    ck = torch.load(out / "last.pt", weights_only=False)
    assert (ck["epoch"], ck["step"]) == (1, 0) and ck["best"]["epoch"] == 1  # as it stood when written
    assert not list(out.glob("*.tmp")) and len(_metrics(out)) == 2
    assert main(["compile", "--resume", str(out)]) == 0
    assert [m["epoch"] for m in _metrics(out)] == [1, 2, 3]


def test_config_json_records_the_parameters_processes_and_training_statistics(data, tmp_path):
    out = tmp_path / "run"
    _run(data, out, epochs=1)
    rec = json.loads((out / "config.json").read_text())
    ir = mgdsl.training.adapt(mgdsl.compile_ir("specs/mgnet.mg", width=4, nu=1), (3, 16, 16), 3)
    assert rec["params"] == ir.total_params and rec["world_size"] == 1
    x = np.load(data / "train.npz")["x"] / 255.0  # the per-channel statistics training normalises with
    assert rec["normalize"]["mean"] == pytest.approx(x.mean((0, 1, 2)).tolist(), rel=1e-5)
    assert rec["normalize"]["std"] == pytest.approx(x.std((0, 1, 2)).tolist(), rel=1e-4)
    assert rec["data_plan"]["mode"] == "memory" and rec["data_plan"]["reason"]
    assert (rec["data_plan"]["train_images"], rec["data_plan"]["test_images"]) == (64, 24)
    assert rec["versions"]["torch"] == torch.__version__


def test_the_best_epoch_is_the_first_with_the_highest_test_accuracy_and_best_pt_holds_it(data, tmp_path):
    out = tmp_path / "run"
    s = _run(data, out, epochs=4, lr=0.5)
    accs = [m["test_acc"] for m in _metrics(out)]
    assert s["best_test_acc"] == max(accs) and s["best_epoch"] == accs.index(max(accs)) + 1
    assert evaluate_run(str(out), weights=str(out / "best.pt"))["top1"] == max(accs)


def test_rank_0_in_this_process_with_rank_1_beside_it_trains_like_one_process(tmp_path, monkeypatch):
    # what torchrun does, with rank 0 here (so the distributed branches of fit run in the test's process) and
    # rank 1 a subprocess: BN-free, so the all-reduced gradient of the two halves is the whole batch's; the
    # logged epoch sums and the test scores are over both shares; only rank 0 writes
    import os
    import subprocess
    import sys

    import torch.distributed as dist
    from launch import free_port
    from tiny_specs import BN_FREE
    rng = np.random.default_rng(0)
    for name, n in (("train", 32), ("test", 16)):
        np.savez(tmp_path / f"{name}.npz", x=rng.integers(0, 255, (n, 8, 8, 3)).astype(np.uint8),
                 y=rng.integers(0, 3, n))
    (tmp_path / "bnfree.mg").write_text(BN_FREE)
    common = ["compile", str(tmp_path / "bnfree.mg"), "--train", str(tmp_path / "train.npz"), "--test",
              str(tmp_path / "test.npz"), "--epochs", "3", "--batch-size", "16", "--no-augment", "--seed", "3"]

    def rank0(out):  # 3 epochs planned, stopped by rank 0's callback after epoch 2: rank 1 must stop there too
        return train(str(tmp_path / "bnfree.mg"), str(tmp_path / "train.npz"), test=str(tmp_path / "test.npz"),
                     epochs=3, batch_size=16, augment=False, seed=3, out=str(out),
                     callback=lambda m: m["epoch"] == 2)
    assert rank0(tmp_path / "one")["stopped_by_callback"]
    def two_processes(out):
        dist_env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2",
                    "LOCAL_WORLD_SIZE": "2"}
        rank1 = subprocess.Popen([sys.executable, "-m", "mgdsl.cli", *common, "--out", str(out)],
                                 env=dict(os.environ, **dist_env, RANK="1", LOCAL_RANK="1", OMP_NUM_THREADS="1"),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        with monkeypatch.context() as m:
            for k, v in dict(dist_env, RANK="0", LOCAL_RANK="0").items():
                m.setenv(k, v)
            try:
                summary = rank0(out)
            finally:
                if dist.is_initialized():
                    dist.destroy_process_group()
                err = rank1.communicate(timeout=120)[1]
        return summary, rank1.returncode, err
    two = tmp_path / "two"
    summary, code, err = two_processes(two)
    if code < 0:  # rank 1 died by a signal (a gloo crash at teardown, as tests/launch.py says): once more
        two = tmp_path / "two-again"
        summary, code, err = two_processes(two)
    assert summary["stopped_by_callback"] and summary["epochs_done"] == 2 and code == 0, err[-2000:]
    a, b = torch.load(tmp_path / "one" / "model.pt"), torch.load(two / "model.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-6)
    for x, y in zip(_metrics(tmp_path / "one"), _metrics(two)):
        assert x["train_images"] == y["train_images"] == 32 and x["epoch"] == y["epoch"]
        for k in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert x[k] == pytest.approx(y[k], abs=1e-6), k
    assert json.loads((two / "config.json").read_text())["world_size"] == 2
    assert len(_metrics(two)) == 2  # one line per epoch: rank 1 wrote nothing


@pytest.mark.parametrize("kind,rank,cuda,want", [("auto", 0, False, "cpu"), ("auto", 1, True, "cuda:1"),
                                                 ("cuda", 0, True, "cuda:0"), ("cpu", 1, True, "cpu")])
def test_device_auto_is_the_gpu_when_there_is_one_and_each_process_takes_its_local_ranks(kind, rank, cuda, want):
    # torch.device objects need no GPU: the choice is checked here on any machine (the flags' promise in the
    # README); the distributed backend follows the device
    from mgdsl.training.loop import BACKEND, pick_device
    device = pick_device(kind, rank, cuda)
    assert device == torch.device(want)
    assert BACKEND[device.type] == ("nccl" if want.startswith("cuda") else "gloo")


def test_device_cuda_without_a_gpu_is_a_clear_error_with_a_hint():
    from mgdsl.training.data import DataError
    from mgdsl.training.loop import pick_device
    with pytest.raises(DataError) as e:
        pick_device("cuda", 0, False)
    (d,) = e.value.diagnostics
    assert "no CUDA device is available" in d.message and d.hint == "use --device cpu"


def test_checkpoint_interval_writes_last_pt_every_n_steps_then_at_the_end_of_the_epoch(data, tmp_path, monkeypatch):
    # 64 images, batch 16: 4 steps an epoch; --checkpoint-interval 3 saves after step 3 of each epoch, and
    # every epoch ends with a checkpoint at (epoch + 1, step 0) that a resume starts from
    from mgdsl.training import runs
    saved = []
    real = runs.save_torch

    def spy(obj, path):
        if path.name == "last.pt":
            saved.append((obj["epoch"], obj["step"], obj["epoch_stats"] is not None))
        return real(obj, path)
    monkeypatch.setattr(runs, "save_torch", spy)
    _run(data, tmp_path / "run", epochs=2, checkpoint_interval=3)
    assert saved == [(0, 3, True), (1, 0, False), (1, 3, True), (2, 0, False)]
