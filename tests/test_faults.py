"""Fault handling (mgdsl/training/faults.py): RNG states, stop requests, torchrun restarts."""
import json
import os
import random
import signal

import numpy as np
import pytest
import torch

from mgdsl.training import faults


def _draws():
    return (random.random(), float(np.random.rand()), float(torch.rand(1)))


def test_restored_rng_states_repeat_every_draw():
    # python, numpy and torch's global generators (a resumed epoch's data draws are replayed from the seed)
    for _ in range(3):
        _draws()
    saved = faults.rng_states()
    first = _draws()
    _draws()
    faults.restore_rng(saved)
    assert _draws() == first


def test_sigterm_is_a_stop_request_with_status_143_and_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    with faults.StopRequest() as stop:
        assert not stop.agreed(1, torch.device("cpu"))
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.agreed(1, torch.device("cpu")) and stop.exit_status == 143
    assert signal.getsignal(signal.SIGTERM) is before


def test_ctrl_c_asks_once_and_a_second_ctrl_c_stops_at_once():
    with faults.StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.exit_status == 130
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_a_restart_recognises_only_its_own_job(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    assert faults.job_id() is None and not faults.own_run(tmp_path)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # torchrun's default: the agent identifies the job
    (tmp_path / "config.json").write_text(json.dumps({"job": faults.job_id()}))
    assert faults.own_run(tmp_path) and str(os.getppid()) in faults.job_id()
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-7")
    assert not faults.own_run(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"job": "job-7"}))
    assert faults.own_run(tmp_path)
