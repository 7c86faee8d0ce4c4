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
from mgdsl.training.loop import Interrupted
from test_train import TINY, _colour_set


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(before)


@pytest.fixture
def data(tmp_path):
    _colour_set(tmp_path / "train.npz", 64, 0)
    _colour_set(tmp_path / "test.npz", 24, 1)
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
    assert (ck["epoch"], ck["step"]) == (1, 0) and ck["best"]["epoch"] in (1, 2)
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
    assert mgdsl.training.evaluate_run(str(out), weights=str(out / "best.pt"))["top1"] == max(accs)
