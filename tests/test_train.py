"""Training (mgdsl.training): learning, run folders, resume, eval, recipes, data validation, configs."""
import json
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from helpers import colour_set, one_thread  # noqa: F401  (one_thread: an autouse fixture, one torch thread)
import mgdsl
import mgdsl.training
from mgdsl.cli import main
from mgdsl.training import train

TINY = ["-D", "width=4", "-D", "nu=1"]
CLI = [sys.executable, "-m", "mgdsl.cli"]


@pytest.fixture
def tiny_npz(tmp_path):
    colour_set(tmp_path / "train.npz", 128, 0)
    colour_set(tmp_path / "test.npz", 48, 1)
    return tmp_path


def _train(tiny_npz, out, *extra):
    return main(["compile", "specs/mgnet.mg", "--train", str(tiny_npz / "train.npz"), "--test",
                 str(tiny_npz / "test.npz"), "--batch-size", "16", "--out", str(out), *TINY, *extra])


def _summary(out):
    return json.loads((out / "summary.json").read_text())


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------ learning and the run folder

def test_a_run_learns_labels_that_are_a_function_of_the_image_and_writes_every_output(tiny_npz, tmp_path):
    out = tmp_path / "run"
    assert _train(tiny_npz, out, "--epochs", "4", "-D", "width=8") == 0
    for f in ("config.json", "metrics.jsonl", "model.pt", "best.pt", "last.pt", "curves.png", "summary.json"):
        assert (out / f).exists(), f
    s = _summary(out)
    assert s["final_test_acc"] >= 0.9, s  # chance is 1/3: labels misaligned with images stay near it
    assert s["epochs"] == 4 and len(_metrics(out)) == 4 and s["params"] > 0
    assert s["best_test_acc"] == max(m["test_acc"] for m in _metrics(out))
    assert _metrics(out)[s["best_epoch"] - 1]["test_acc"] == s["best_test_acc"]


def test_train_returns_the_summary_whose_load_gives_the_trained_model(tiny_npz, tmp_path):
    out = tmp_path / "run"
    s = train("specs/mgnet.mg", str(tiny_npz / "train.npz"), test=str(tiny_npz / "test.npz"), epochs=1,
              batch_size=16, out=str(out), defines={"width": 4, "nu": 1})
    assert s == _summary(out) and json.loads(json.dumps(s)) == s  # still the summary dict, JSON as before
    model = s.load()
    z = np.load(tiny_npz / "test.npz")
    hits = int((model.logits(z["x"]).argmax(1).numpy() == z["y"]).sum())
    assert hits == round(s["final_test_acc"] * len(z["y"])) and model.weights == out / "model.pt"


def test_digits_learned_well_above_chance_in_a_few_epochs(tmp_path):
    out = tmp_path / "digits"
    assert main(["compile", "specs/mgnet.mg", "-D", "width=8", "--train", "digits", "--epochs", "4",
                 "--batch-size", "64", "--out", str(out)]) == 0
    assert _summary(out)["final_test_acc"] >= 0.6  # chance is 0.1


def test_eval_of_the_run_reproduces_the_summary_exactly_and_reads_the_weights_given(tiny_npz, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(tiny_npz, out, "--epochs", "3", "--flip") == 0  # flip: the recipe's flip TTA is used in eval too
    s = _summary(out)
    capsys.readouterr()
    assert main(["eval", str(out), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["top1"] == s["final_test_acc"] and r["n"] == 48 and r["tta"]
    assert main(["eval", str(out), "--no-tta", "--json"]) == 0  # the same model scored without the mirror
    plain = json.loads(capsys.readouterr().out)
    assert not plain["tta"] and plain["n"] == 48 and plain["loss"] != r["loss"]
    assert main(["eval", str(out), "--weights", str(out / "best.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == s["best_test_acc"]
    # weights that predict class k for every image score exactly the share of k in the test set
    state = torch.load(out / "model.pt")
    state["fc.weight"].zero_()
    state["fc.bias"].copy_(torch.tensor([0.0, 0.0, 1.0]))
    torch.save(state, tmp_path / "always2.pt")
    y = np.load(tiny_npz / "test.npz")["y"]
    for argv in (["eval", str(out), "--weights", str(tmp_path / "always2.pt"), "--json"],
                 ["eval", "specs/mgnet.mg", *TINY, "--weights", str(tmp_path / "always2.pt"), "--test",
                  str(tiny_npz / "test.npz"), "--json"]):
        assert main(argv) == 0
        assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(float(np.mean(y == 2)), abs=1e-12)


def test_eval_on_test_images_of_another_shape_names_both_shapes(tiny_npz, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(tiny_npz, out, "--epochs", "1") == 0
    other = tmp_path / "big.npz"
    np.savez(other, x=np.zeros((4, 20, 20, 3), np.uint8), y=np.array([0, 1, 2, 0]))
    capsys.readouterr()
    assert main(["eval", str(out), "--test", str(other)]) == 2
    err = capsys.readouterr().err
    assert "its images are 3 x 20 x 20" in err and "trained on 3 x 16 x 16 images" in err
    assert "does not fit" not in err  # the weights are fine; the data is not


def test_eval_of_a_missing_run_folder_says_so(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_eval_uses_the_runs_own_spec_and_defines(tiny_npz, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(tiny_npz, out, "--epochs", "1") == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--test", str(tiny_npz / "train.npz"), "--json"]) == 0  # no -D needed
    r = json.loads(capsys.readouterr().out)
    assert r["n"] == 128 and r["test"].endswith("train.npz")


def test_eval_scores_a_test_folder_whole(tmp_path, capsys):
    _image_folder(tmp_path / "imgs", per_class=5)
    out = tmp_path / "run"
    assert main(["compile", "specs/mgnet.mg", *TINY, "--train", str(tmp_path / "imgs" / "train"), "--test",
                 str(tmp_path / "imgs" / "test"), "--epochs", "1", "--batch-size", "4", "--data-mode", "memory",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--test", str(tmp_path / "imgs" / "train"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 10  # all of it, not a split


def test_eval_of_an_image_folder_run_uses_the_runs_own_split(tmp_path, capsys):
    _image_folder(tmp_path / "imgs", per_class=10)
    out = tmp_path / "run"
    assert main(["compile", "specs/mgnet.mg", *TINY, "--train", str(tmp_path / "imgs" / "train"), "--epochs", "1",
                 "--batch-size", "4", "--data-mode", "memory", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n"] == 4 and r["top1"] == _summary(out)["final_test_acc"]  # the 20% held out, not all 20 images


def test_run_folder_is_self_contained(tiny_npz, tmp_path, monkeypatch):
    spec = tmp_path / "m.mg"
    spec.write_text(open("specs/mgnet.mg").read())
    out = tmp_path / "run"
    assert main(["compile", str(spec), *TINY, "--train", str(tiny_npz / "train.npz"), "--test",
                 str(tiny_npz / "test.npz"), "--batch-size", "16", "--epochs", "1", "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["spec"]["text"] == spec.read_text() and cfg["params_override"] == {"width": 4, "nu": 1}
    assert cfg["data"]["train"]["sha256"] and cfg["config"]["recipe"] == "budget"
    assert cfg["config"]["lr"] == 0.1 and cfg["config"]["schedule"] == "linear"
    spec.write_text("this file is gone")  # the folder alone is enough
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "run", "--json"]) == 0
    assert main(["compile", "--resume", "run", "--epochs", "2"]) == 0
    assert len(_metrics(out)) == 2


def test_each_epoch_line_and_the_summary_report_what_the_run_did(tiny_npz, tmp_path):
    # metrics.jsonl and summary.json are what users plot and compare: each field is checked against what it
    # claims (128 training images, batch 16: 8 steps an epoch; the lr at each epoch's first and last batch)
    from mgdsl.cost import macs
    from mgdsl.training.recipes import Config, lr_at, fill_defaults
    out = tmp_path / "run"
    assert _train(tiny_npz, out, "--epochs", "3", "--recipe", "paper", "--lr-step", "1", "--lr", "0.2") == 0
    cfg = fill_defaults(Config(recipe="paper", epochs=3, lr=0.2, lr_step=1, batch_size=16), False)
    ms, s = _metrics(out), _summary(out)
    assert [m["epoch"] for m in ms] == [1, 2, 3]
    assert [m["lr_start"] for m in ms] == [lr_at(cfg, e * 8, 8) for e in range(3)] == pytest.approx([0.2, 0.02, 0.002])
    assert [m["lr_end"] for m in ms] == [m["lr_start"] for m in ms]  # the step schedule is constant in an epoch
    for m in ms:
        assert m["train_images"] == 128
        assert m["images_per_s"] == pytest.approx(128 / m["train_seconds"]) and m["eval_seconds"] > 0
        assert m["test_top5"] is None  # 3 classes: top-5 says nothing (every label is in it)
        assert 0 < m["train_loss"] < 10 and m["train_acc"] * 128 == round(m["train_acc"] * 128)
        assert m["test_acc"] * 48 == pytest.approx(round(m["test_acc"] * 48))  # a count of the 48 test images
    assert s["epochs"] == s["epochs_done"] == 3 and not s["stopped_by_callback"]
    assert s["final_test_acc"] == ms[-1]["test_acc"]
    assert s["train_seconds_sum_over_epochs"] == pytest.approx(sum(m["train_seconds"] for m in ms))
    # the session's wall time holds every epoch's training and evaluation; a fresh run has had one session
    assert s["wall_seconds_this_session"] > sum(m["train_seconds"] + m["eval_seconds"] for m in ms)
    assert s["wall_seconds_total"] == pytest.approx(s["wall_seconds_this_session"], abs=0.05)
    assert not {"seconds", "wall_seconds"} & set(s) and s["device"] == "cpu" and s["out"] == str(out)
    ir = mgdsl.training.adapt(mgdsl.compile_ir("specs/mgnet.mg", width=4, nu=1), (3, 16, 16), 3)
    assert s["macs"] == macs(ir).total and s["params"] == ir.total_params and s["name"] == "mgnet"


def test_training_on_a_missing_cuda_device_is_a_clear_error(tiny_npz, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _train(tiny_npz, tmp_path / "run", "--epochs", "1", "--device", "cuda") == 2
    err = capsys.readouterr().err
    assert "--device cuda but no CUDA device is available" in err and "--device cpu" in err


# ------------------------------------------------------------------ resume

def test_resume_gives_the_same_metrics_as_an_uninterrupted_run(tiny_npz, tmp_path):
    torch.use_deterministic_algorithms(True)
    try:
        full = tmp_path / "full"
        assert _train(tiny_npz, full, "--epochs", "3") == 0
        stop = tmp_path / "stop"  # the same 3-epoch run, stopped by a callback after epoch 1
        s = train("specs/mgnet.mg", str(tiny_npz / "train.npz"), test=str(tiny_npz / "test.npz"), batch_size=16,
                  epochs=3, out=str(stop), defines={"width": 4, "nu": 1}, callback=lambda m: m["epoch"] == 1)
        assert s["epochs_done"] == 1 and s["stopped_by_callback"] and len(_metrics(stop)) == 1
        assert main(["compile", "--resume", str(stop)]) == 0
        a, b = _metrics(full), _metrics(stop)
        assert len(b) == 3
        for x, y in zip(a, b):
            for k in ("train_loss", "train_acc", "test_loss", "test_acc", "lr_start", "lr_end"):
                assert x[k] == y[k], (k, x, y)
        assert torch.equal(torch.load(full / "model.pt")["fc.weight"], torch.load(stop / "model.pt")["fc.weight"])
        # the best epoch may be before the stop: the resumed run carries it on
        assert [_summary(full)[k] for k in ("best_test_acc", "best_epoch", "final_test_acc")] == \
            [_summary(stop)[k] for k in ("best_test_acc", "best_epoch", "final_test_acc")]
        assert torch.equal(torch.load(full / "best.pt")["fc.weight"], torch.load(stop / "best.pt")["fc.weight"])
    finally:
        torch.use_deterministic_algorithms(False)


def test_resume_with_more_epochs_extends_a_finished_run(tiny_npz, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(tiny_npz, out, "--epochs", "1") == 0
    first = _summary(out)
    assert main(["compile", "--resume", str(out), "--epochs", "3"]) == 0
    s = _summary(out)
    assert [m["epoch"] for m in _metrics(out)] == [1, 2, 3] and s["epochs"] == 3
    # the total wall time adds the first session's (up to its last checkpoint) to this one's
    assert s["wall_seconds_this_session"] < s["wall_seconds_total"] < \
        first["wall_seconds_total"] + s["wall_seconds_this_session"]
    assert s["train_seconds_sum_over_epochs"] == pytest.approx(sum(m["train_seconds"] for m in _metrics(out)))
    assert main(["compile", "--resume", str(out), "--epochs", "2"]) == 2
    assert "already done 3 epochs" in capsys.readouterr().err


def test_a_run_folder_with_the_old_field_names_resumes_and_its_times_are_read(tiny_npz, tmp_path):
    # a run written before metrics.jsonl said `train_seconds` / `lr_start` (it said `seconds` / `lr`) and before
    # last.pt kept the wall time: it resumes, its lines are read under the new names, its total wall time is unknown
    out = tmp_path / "run"
    assert _train(tiny_npz, out, "--epochs", "1") == 0
    renamed = {"train_seconds": "seconds", "lr_start": "lr"}
    old = [{renamed.get(k, k): v for k, v in m.items() if k not in ("lr_end", "eval_seconds")} for m in _metrics(out)]
    (out / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in old))
    ck = torch.load(out / "last.pt", weights_only=False)
    del ck["wall_seconds"]
    torch.save(ck, out / "last.pt")
    assert main(["compile", "--resume", str(out), "--epochs", "2"]) == 0
    ms, s = _metrics(out), _summary(out)
    assert ms[0]["train_seconds"] == old[0]["seconds"] and ms[0]["lr_start"] == old[0]["lr"] and "seconds" not in ms[0]
    assert s["train_seconds_sum_over_epochs"] == pytest.approx(old[0]["seconds"] + ms[1]["train_seconds"])
    assert s["wall_seconds_total"] is None and s["wall_seconds_this_session"] > ms[1]["train_seconds"]


def test_the_epoch_line_shows_the_lr_range_the_epoch_ran_and_the_last_ends_near_zero(tiny_npz, tmp_path, capsys):
    # budget recipe, 2 epochs of 8 steps: a warm-up epoch up to the peak, then a linear decay to 0 after the
    # last batch; each line shows the lr of its first and of its last batch
    from mgdsl.training.recipes import Config, fill_defaults, lr_at
    out = tmp_path / "run"
    capsys.readouterr()
    assert _train(tiny_npz, out, "--epochs", "2") == 0
    cfg = fill_defaults(Config(epochs=2, batch_size=16), False)
    ms = _metrics(out)
    assert [(m["lr_start"], m["lr_end"]) for m in ms] == [(lr_at(cfg, 0, 8), lr_at(cfg, 7, 8)),
                                                          (lr_at(cfg, 8, 8), lr_at(cfg, 15, 8))]
    assert ms[0]["lr_end"] == pytest.approx(0.1) and 0 < ms[1]["lr_end"] < 0.02  # 0.1 / 9: one step before 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("epoch ")]
    assert [ln.split()[3] for ln in lines] == [f"{m['lr_start']:.4g}->{m['lr_end']:.4g}" for m in ms]


@pytest.mark.parametrize("flag", [["--lr", "0.05"], ["--batch-size", "8"], ["--seed", "1"], ["--recipe", "paper"],
                                  ["--no-augment"], ["-D", "width=8"], ["--train", "digits"], ["--out", "elsewhere"]])
def test_resume_refuses_flags_that_contradict_the_run(tiny_npz, tmp_path, capsys, flag):
    out = tmp_path / "run"
    assert _train(tiny_npz, out, "--epochs", "1") == 0
    before = (out / "last.pt").read_bytes()
    capsys.readouterr()
    assert main(["compile", "--resume", str(out), "--epochs", "2", *flag]) == 2
    err = capsys.readouterr().err.strip()
    assert "the run was made with other settings" in err and len(err.splitlines()) == 1, err
    assert (out / "last.pt").read_bytes() == before


def test_resume_accepts_the_runs_own_spec_and_values(tiny_npz, tmp_path):
    out = tmp_path / "run"
    assert _train(tiny_npz, out, "--epochs", "1") == 0
    assert main(["compile", "specs/mgnet.mg", *TINY, "--resume", str(out), "--epochs", "2", "--batch-size", "16",
                 "--train", str(tiny_npz / "train.npz")]) == 0
    assert len(_metrics(out)) == 2


def test_resume_refuses_a_different_spec(tiny_npz, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(tiny_npz, out, "--epochs", "1") == 0
    capsys.readouterr()
    assert main(["compile", "specs/mgnet-official.mg", *TINY, "--resume", str(out), "--epochs", "2"]) == 2
    assert "its text differs" in capsys.readouterr().err


def test_resume_refuses_changed_data(tiny_npz, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(tiny_npz, out, "--epochs", "1") == 0
    colour_set(tiny_npz / "train.npz", 128, 7)
    assert main(["compile", "--resume", str(out), "--epochs", "2"]) == 2
    assert "changed since the run started" in capsys.readouterr().err


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_npz, tmp_path, capsys):
    out = tmp_path / "nan"
    assert _train(tiny_npz, out, "--epochs", "1") == 0
    cfg = json.loads((out / "config.json").read_text())
    cfg["config"]["lr"] = 1e30  # the loss blows up in epoch 2
    (out / "config.json").write_text(json.dumps(cfg))
    good = (out / "last.pt").read_bytes()
    assert main(["compile", "--resume", str(out), "--epochs", "3"]) == 1
    err = capsys.readouterr().err
    assert "the training loss is" in err and f"the last good checkpoint is {out / 'last.pt'}" in err
    assert (out / "last.pt").read_bytes() == good  # untouched


def test_an_epoch_step_uses_the_label_smoothing_and_lr_it_is_given():
    # train_epoch's loss is cross-entropy with the recipe's label smoothing, and each batch gets its own lr
    from mgdsl.training.loop import train_epoch
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x, y = torch.randn(8, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    with torch.no_grad():
        want = [torch.nn.functional.cross_entropy(model(x), y, label_smoothing=ls).item() for ls in (0.0, 0.3)]
        hits = int((model(x).argmax(1) == y).sum())
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    lrs = []
    for ls, w in zip((0.0, 0.3), want):
        st = train_epoch(model, opt, [(x, y)], device=torch.device("cpu"), amp=False, channels_last=False,
                         label_smoothing=ls, lr_for_batch=lambda i: 0.0, on_step=lambda s: lrs.append(
                             opt.param_groups[0]["lr"]))
        assert st.seen == 8 and st.loss_sum.item() / 8 == pytest.approx(w, rel=1e-6)  # lr 0: nothing moved
        assert st.correct.item() == hits  # the epoch's train accuracy counts these
    assert lrs == [0.0, 0.0] and want[0] != pytest.approx(want[1])


def test_nan_loss_in_the_first_epoch_leaves_no_folder_posing_as_a_run(tiny_npz, tmp_path, capsys):
    out = tmp_path / "nan1"
    assert _train(tiny_npz, out, "--epochs", "2", "--lr", "1e30") == 1
    err = capsys.readouterr().err
    assert "the training loss is nan" in err and "no epoch had finished, so nothing was kept" in err
    assert "last.pt" not in err and not out.exists()
    assert _train(tiny_npz, out, "--epochs", "1") == 0  # the same --out is free for the next try


@pytest.mark.parametrize("flag,words", [
    (["--threads", "-2"], "--threads -2: must be at least 1"), (["--batch-size", "0"], "--batch-size 0: must be at least 1"),
    (["--lr", "-1"], "--lr -1.0: must be at least 0"), (["--lr", "nan"], "--lr nan: must be a finite number"),
    (["--weight-decay", "-1"], "--weight-decay -1.0: must be at least 0"),
    (["--label-smoothing", "2"], "--label-smoothing 2.0: must be at most 1"),
    (["--seed", "-1"], "--seed -1: must be at least 0"), (["--epochs", "0"], "--epochs 0: must be at least 1"),
    (["--momentum", "-0.5"], "--momentum -0.5: must be at least 0"),
    (["--recipe", "paper", "--lr-step", "0"], "--lr-step 0: must be at least 1"),
    (["--lr-gamma", "0"], "--lr-gamma 0.0: must be more than 0"), (["--workers", "-1"], "--workers -1: must be at least 0")])
def test_an_impossible_training_flag_is_one_line_exit_2_before_anything_is_written(tiny_npz, tmp_path, capsys,
                                                                                     flag, words):
    out = tmp_path / "bad"
    assert _train(tiny_npz, out, "--epochs", "1", *flag) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and "internal error" not in err
    assert not out.exists()


def test_resuming_a_complete_run_says_it_is_complete(tiny_npz, tmp_path, capsys):
    out = tmp_path / "done"
    assert _train(tiny_npz, out, "--epochs", "1") == 0
    capsys.readouterr()
    assert main(["compile", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert "the run is complete (1 of 1 epochs)" in err and "--epochs N" in err


def test_ctrl_c_leaves_complete_files_and_prints_a_resume_command_that_works(tiny_npz, tmp_path):
    out = tmp_path / "int"
    p = subprocess.Popen([*CLI, "compile", "specs/mgnet.mg", *TINY, "--train", str(tiny_npz / "train.npz"), "--test",
                          str(tiny_npz / "test.npz"), "--batch-size", "16", "--epochs", "500", "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (out / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    err = err.decode()
    assert p.returncode == 130, err[-500:]
    assert "Traceback" not in err and not list(out.glob("*.tmp"))
    done = torch.load(out / "last.pt", weights_only=False)["epoch"]
    assert done >= 1 and len(_metrics(out)) == done
    command = err.strip().splitlines()[-1].strip()
    assert command == f"mgdsl compile --resume {shlex.quote(str(out))}"
    argv = shlex.split(command)[1:] + ["--epochs", str(done + 1)]
    r = subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-500:]
    assert len(_metrics(out)) == done + 1


def test_an_earlier_run_is_never_overwritten(tiny_npz, tmp_path, capsys, monkeypatch):
    out = tmp_path / "keep"
    assert _train(tiny_npz, out, "--epochs", "1") == 0
    before = (out / "model.pt").read_bytes()
    assert _train(tiny_npz, out, "--epochs", "1") == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "model.pt").read_bytes() == before
    assert _train(tiny_npz, out, "--epochs", "1", "--overwrite") == 0
    # the default folder is numbered instead
    monkeypatch.chdir(tmp_path)
    from mgdsl.training.runs import fresh_run_dir
    (tmp_path / "runs" / "m-d").mkdir(parents=True)
    (tmp_path / "runs" / "m-d" / "model.pt").write_bytes(b"x")
    assert fresh_run_dir("runs/m-d") == "runs/m-d-2"


# ------------------------------------------------------------------ recipes and augmentation

def test_paper_recipe_is_exact_at_120_epochs_and_compressed_for_fewer():
    from mgdsl.training.recipes import Config, lr_at, fill_defaults
    paper = fill_defaults(Config(recipe="paper"), False)
    assert (paper.epochs, paper.lr, paper.momentum, paper.weight_decay, paper.lr_step, paper.batch_size) == \
        (120, 0.1, 0.9, 0.0, 30, 128)
    assert not paper.nesterov and paper.label_smoothing == 0 and not paper.tta
    lrs = [lr_at(paper, e * 10, 10) for e in range(120)]
    assert lrs[29] == 0.1 and lrs[30] == pytest.approx(0.01) and lrs[89] == pytest.approx(1e-3)
    assert lrs[90] == pytest.approx(1e-4) and lrs[119] == pytest.approx(1e-4)
    p15 = fill_defaults(Config(recipe="paper", epochs=15), False)
    drops = [e for e in range(1, 15) if lr_at(p15, e * 10, 10) < lr_at(p15, e * 10 - 1, 10)]
    assert drops == [4, 8, 12]  # what --help says
    official = fill_defaults(Config(recipe="official"), False)
    assert (official.weight_decay, official.lr_step, official.epochs) == (5e-4, 50, 300)


def test_budget_schedule_warms_up_then_decays_to_zero_at_the_last_batch():
    from mgdsl.training.recipes import Config, lr_at, fill_defaults
    cfg = fill_defaults(Config(epochs=5), True)
    assert cfg.recipe == "budget" and cfg.nesterov and cfg.label_smoothing == 0.1 and cfg.tta
    lrs = [lr_at(cfg, s, 10) for s in range(50)]
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1)  # one epoch of warm-up
    assert all(a > b for a, b in zip(lrs[9:], lrs[10:]))  # then strictly down, per batch
    assert lrs[-1] == pytest.approx(0.1 / 41) and lr_at(cfg, 50, 10) == 0


def test_flips_default_to_natural_images_only_and_are_recorded(tiny_npz, tmp_path):
    from mgdsl.training.recipes import Config, fill_defaults
    assert not fill_defaults(Config(train="x.npz"), False).flip and not fill_defaults(Config(), False).tta
    cases = {(): (False, True), ("--flip",): (True, True), ("--no-augment",): (False, False),
             ("--flip", "--no-augment"): (False, False)}
    for k, (extra, (flip, crop)) in enumerate(cases.items()):
        out = tmp_path / f"r{k}"
        assert _train(tiny_npz, out, "--epochs", "1", *extra) == 0
        c = json.loads((out / "config.json").read_text())["config"]
        assert (c["flip"], c["augment"], c["tta"]) == (flip, crop, flip), extra
    from mgdsl.training.data import flip_default
    assert flip_default("cifar10") and flip_default(str(tmp_path)) and not flip_default("digits")


def test_the_readme_cifar_npz_commands_ask_for_flips():
    """An .npz trains without flips unless asked; the README's results are with --flip, so its commands say so."""
    import re
    from pathlib import Path
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    spans = re.findall(r"`([^`]*)`", re.sub(r"\n\s*", " ", text)) + re.findall(r"^    (mgdsl .*)$", text, re.M)
    cmds = [c for c in spans if c.startswith("mgdsl compile") and re.search(r"cifar10\S*\.npz", c)]
    assert len(cmds) >= 2
    assert [c for c in cmds if "--flip" not in c.split()] == []


def test_flip_augmentation_mirrors_only_when_asked():
    from mgdsl.training.data import augment
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(20):
        out = augment(x, g, pad=0, flip_ok=True)
        seen |= {bool(torch.equal(out[i], x[i].flip(2))) for i in range(2)}
        assert torch.equal(augment(x, g, pad=0, flip_ok=False), x)
    assert seen == {True, False}


def _wiring(tiny_npz, tmp_path, monkeypatch, *flags):
    """What the loop handed to the epoch, the batches and evaluation, for one tiny epoch."""
    from mgdsl.training import data, loop, metrics
    got = {}
    real_epoch, real_batches, real_eval = loop.train_epoch, data.in_memory_batches, metrics.evaluate

    def epoch(fwd, opt, batches, **kw):
        g = opt.param_groups[0]
        if "lrs" not in got:  # the first epoch's
            got.update(nesterov=g["nesterov"], momentum=g["momentum"], weight_decay=g["weight_decay"],
                       label_smoothing=kw["label_smoothing"], lrs=[kw["lr_for_batch"](i) for i in range(8)])
        else:  # the second's
            got["lrs2"] = [kw["lr_for_batch"](i) for i in range(8)]
        return real_epoch(fwd, opt, batches, **kw)

    def batches(*a, **kw):
        got.update(flip=kw["flip_ok"], crop=kw["augment_on"])
        return real_batches(*a, **kw)

    def evaluate(*a, **kw):
        got["tta"] = kw["tta"]
        return real_eval(*a, **kw)
    monkeypatch.setattr(loop, "train_epoch", epoch)
    monkeypatch.setattr(data, "in_memory_batches", batches)
    monkeypatch.setattr(metrics, "evaluate", evaluate)
    assert _train(tiny_npz, tmp_path / "w", "--epochs", "2", *flags) == 0
    return got


def test_the_recipe_reaches_the_optimizer_loss_schedule_augmentation_and_tta(tiny_npz, tmp_path, monkeypatch):
    b = _wiring(tiny_npz, tmp_path / "b", monkeypatch, "--flip")
    assert (b["nesterov"], b["momentum"], b["weight_decay"], b["label_smoothing"]) == (True, 0.9, 5e-4, 0.1)
    assert b["lrs"] == pytest.approx([0.1 * (i + 1) / 8 for i in range(8)])  # the first epoch warms up: 8 steps
    # then decays linearly over the run's last 8 of 16 batches: batch 8 + i of the run is lr * (8 - i) / 9
    assert b["lrs2"] == pytest.approx([0.1 * (8 - i) / 9 for i in range(8)], abs=1e-12)
    assert (b["flip"], b["crop"], b["tta"]) == (True, True, True)
    p = _wiring(tiny_npz, tmp_path / "p", monkeypatch, "--recipe", "paper")
    assert (p["nesterov"], p["weight_decay"], p["label_smoothing"], p["flip"], p["crop"], p["tta"]) == \
        (False, 0.0, 0.0, False, True, False)
    n = _wiring(tiny_npz, tmp_path / "n", monkeypatch, "--flip", "--no-augment")
    assert (n["flip"], n["crop"], n["tta"]) == (False, False, False)


def test_in_memory_batches_keep_each_label_with_its_image():
    from mgdsl.training.data import in_memory_batches
    x = torch.arange(40, dtype=torch.float32).view(40, 1, 1, 1).expand(40, 1, 4, 4).contiguous()
    y = torch.arange(40)
    g = torch.Generator().manual_seed(0)
    got = []
    for xb, yb in in_memory_batches(x, y, batch_size=8, gen=g, augment_on=False):
        assert torch.equal(xb[:, 0, 0, 0].long(), yb)
        got += yb.tolist()
    assert sorted(got) == list(range(40))


# ------------------------------------------------------------------ bad data: one line, exit 2, before training

NO_WARNING = ["-D", "width=4"]  # a spec that compiles without warnings: stderr holds only the error


def _bad(tmp_path, name, **arrays):
    p = tmp_path / name
    np.savez(p, **arrays)
    return p


def _ok_x(n=4):
    return np.zeros((n, 8, 8, 3), np.uint8)


BAD_NPZ = {
    "no y": (dict(x=_ok_x()), "no key y"),
    "float images": (dict(x=np.zeros((4, 8, 8, 3), np.float32), y=np.zeros(4, np.int64)), "float32"),
    "NaN images": (dict(x=np.full((4, 8, 8, 3), np.nan), y=np.zeros(4, np.int64)), "holding NaN"),
    "negative label": (dict(x=_ok_x(), y=np.array([0, 1, -1, 0])), "label -1 is negative"),
    "label past the declared classes": (dict(x=_ok_x(), y=np.array([0, 1, 5, 0]), classes=np.array(["a", "b"])),
                                        "label 5 is out of range"),
    "label past a declared class count": (dict(x=_ok_x(), y=np.array([0, 1, 5, 0]), classes=np.array(3)),
                                          "label 5 is out of range for its 3 classes"),
    "classes neither a count nor names": (dict(x=_ok_x(), y=np.zeros(4, np.int64), classes=np.array(2.5)),
                                          "it must be the class count K"),
    "float labels": (dict(x=_ok_x(), y=np.zeros(4, np.float32)), "labels y are float32"),
    "lengths differ": (dict(x=_ok_x(), y=np.zeros(3, np.int64)), "4 images but 3 labels"),
    "empty": (dict(x=np.zeros((0, 8, 8, 3), np.uint8), y=np.zeros(0, np.int64)), "is empty"),
    "3 dimensions": (dict(x=np.zeros((4, 8, 8), np.uint8), y=np.zeros(4, np.int64)), "3 dimensions"),
    "channels first": (dict(x=np.zeros((4, 3, 8, 8), np.uint8), y=np.zeros(4, np.int64)), "channels-first"),
}


@pytest.mark.parametrize("case", sorted(BAD_NPZ))
@pytest.mark.parametrize("role", ["train", "test"])
def test_malformed_npz_exits_2_with_one_line_naming_file_and_problem(tmp_path, capsys, monkeypatch, case, role):
    arrays, words = BAD_NPZ[case]
    bad = _bad(tmp_path, "bad.npz", **arrays)
    good = _bad(tmp_path, "good.npz", x=_ok_x(), y=np.array([0, 1, 2, 0]))
    from mgdsl.training import loop
    monkeypatch.setattr(loop, "fit", lambda *a, **k: pytest.fail("training started"))
    tr, te = (bad, good) if role == "train" else (good, bad)
    assert main(["compile", "specs/mgnet.mg", *NO_WARNING, "--train", str(tr), "--test", str(te), "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and words in err, err
    assert not (tmp_path / "o").exists()


def test_a_class_count_in_the_npz_fixes_the_number_of_outputs(tmp_path):
    from mgdsl.training.data import load_dataset
    np.savez(tmp_path / "k.npz", x=_ok_x(), y=np.array([0, 1, 2, 0]), classes=np.array(5))
    assert load_dataset(str(tmp_path / "k.npz"), str(tmp_path / "k.npz"), str(tmp_path)).classes == 5


def test_test_label_outside_the_training_classes_exits_2(tmp_path, capsys):
    tr = _bad(tmp_path, "tr.npz", x=_ok_x(), y=np.array([0, 1, 2, 0]))
    te = _bad(tmp_path, "te.npz", x=_ok_x(), y=np.array([0, 1, 7, 0]))
    assert main(["compile", "specs/mgnet.mg", *NO_WARNING, "--train", str(tr), "--test", str(te)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(te) in err and "label 7 is out of range" in err


@pytest.mark.parametrize("content,words", [(b"not a zip file", "not a readable .npz"), (None, "no such file")])
def test_a_file_that_is_not_an_npz_exits_2(tmp_path, capsys, content, words):
    p = tmp_path / "data.npz"
    if content is not None:
        p.write_bytes(content)
    assert main(["compile", "specs/mgnet.mg", *NO_WARNING, "--train", str(p), "--test", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(p) in err and words in err


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_image_folder_without_class_folders_exits_2(tmp_path, capsys, mode):
    from PIL import Image
    (tmp_path / "flat").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "flat" / "a.png")
    assert main(["compile", "specs/mgnet.mg", *NO_WARNING, "--train", str(tmp_path / "flat"), "--data-mode", mode]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path / "flat") in err and "no class folders" in err


def test_shape_mismatch_between_train_and_test_exits_2(tmp_path, capsys):
    tr = _bad(tmp_path, "tr.npz", x=_ok_x(), y=np.array([0, 1, 2, 0]))
    te = _bad(tmp_path, "te.npz", x=np.zeros((4, 8, 8, 1), np.uint8), y=np.array([0, 1, 2, 0]))
    assert main(["compile", "specs/mgnet.mg", *NO_WARNING, "--train", str(tr), "--test", str(te)]) == 2
    assert "test images are (8, 8, 1)" in capsys.readouterr().err


@pytest.mark.parametrize("dataset,words", [("imagenet22k", "unknown data set"), ("nope.npz", "no such file")])
def test_bad_dataset_exit_2(dataset, words, capsys):
    assert main(["compile", "specs/mgnet.mg", *NO_WARNING, "--train", dataset, "--test", "t.npz"]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_spec_needing_three_channels_fed_one_channel(tmp_path, capsys):
    spec = tmp_path / "rgb.mg"
    spec.write_text("""model rgb {
  input f : 3 x 8 x 8
  classes 10
  grids 2
  smooth 1
  space f = 3, u = 4
  A[l] = conv3(u -> f)
  B[l] = relu . conv3(f -> u)
  fc = linear(u -> classes)
  init u = 0
  step u = u + B(f - A(u))
  coarsen u[l+1] = 0; f[l+1] = avgpool2(f - A(u))
  output fc(avgpool(u))
}
""")
    assert main(["compile", str(spec), "--train", "digits", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot take this data (1 x 8 x 8" in err and "has 1 channels but space f has 3" in err


def test_cifar_without_network_says_how_to_pass_a_local_copy(monkeypatch, tmp_path, capsys):
    import torchvision

    def offline(*a, **k):
        raise OSError("network unreachable")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    assert main(["compile", "specs/mgnet.mg", *TINY, "--train", "cifar10", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "could not download cifar10" in err and "--data" in err and "Traceback" not in err


def _image_folder(root, per_class=6, size=12):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("cat", "dog"):
            d = root / split / c
            d.mkdir(parents=True)
            for k in range(per_class):
                Image.fromarray(rng.integers(0, 255, (size, size, 3)).astype(np.uint8)).save(d / f"{k}.png")


def test_image_folder_dataset(tmp_path):
    _image_folder(tmp_path / "imgs")
    out = tmp_path / "run"
    assert main(["compile", "specs/mgnet.mg", *TINY, "--train", str(tmp_path / "imgs"), "--epochs", "1",
                 "--batch-size", "4", "--data-mode", "memory", "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["input_shape"] == [3, 12, 12] and cfg["classes"] == 2 and cfg["config"]["flip"]
    # streamed (the default for a folder), images are resized to the spec's input instead
    assert main(["compile", "specs/mgnet.mg", *TINY, "--train", str(tmp_path / "imgs"), "--epochs", "1",
                 "--batch-size", "4", "--workers", "0", "--out", str(tmp_path / "s")]) == 0
    cfg = json.loads((tmp_path / "s" / "config.json").read_text())
    assert cfg["input_shape"] == [3, 32, 32] and cfg["classes"] == 2 and cfg["data_plan"]["mode"] == "stream"
    assert main(["compile", "specs/mgnet.mg", *TINY, "--train", str(tmp_path / "imgs"), "--epochs", "1",
                 "--batch-size", "4", "--data-mode", "memory", "--out", str(tmp_path / "noflip"), "--no-flip"]) == 0
    c = json.loads((tmp_path / "noflip" / "config.json").read_text())["config"]
    assert (c["flip"], c["augment"], c["tta"]) == (False, True, False)  # --no-flip turns off flips alone


# ------------------------------------------------------------------ output, configs, API

def test_output_says_where_the_run_goes_and_labels_epoch_lines(tiny_npz, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(tiny_npz, out, "--epochs", "2", "--log-interval", "2") == 0
    err = capsys.readouterr().err
    lines = err.splitlines()
    start = [l for l in lines if l.startswith("mgdsl: training")]
    assert len(start) == 1 and start[0].endswith(f"writing {out}/")
    assert f"the run is in {out}/" in lines[-1]
    epoch_lines = [l for l in lines if l.startswith("epoch ")]
    assert len(epoch_lines) == 2 and "train loss" in epoch_lines[0] and "test loss" in epoch_lines[0]
    acc = _metrics(out)[1]["test_acc"]
    assert f"acc {100 * acc:5.2f}%" in epoch_lines[1]
    assert sum(f"batch {k}/8  loss" in l for l in lines for k in (2, 4, 6, 8)) == 8  # 8 batches, a line every 2
    assert [sum(f"epoch {e}/2  batch" in l for l in lines) for e in (1, 2)] == [4, 4]  # each under its epoch
    assert "top-5" not in err  # 3 classes: top-5 would always be 100%


def test_the_epoch_line_shows_top5_when_there_are_more_than_five_classes(capsys):
    from mgdsl.training.progress import Progress
    p = Progress(enabled=True, log_interval=0)
    p.epoch_start(1, 3, 10)
    p.epoch_end({"epoch": 1, "lr_start": 0.1, "lr_end": 0.1, "train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.2,
                 "test_acc": 0.4125, "test_top5": 0.875, "train_seconds": 2.0, "images_per_s": 64.0}, True)
    assert "acc 41.25% top-5 87.50% (best)" in capsys.readouterr().err


def test_threads_flag_sets_torch_threads(tiny_npz, tmp_path):
    before = torch.get_num_threads()
    try:
        assert torch.get_num_threads() == 1  # the module's fixture: the flag must change it
        assert _train(tiny_npz, tmp_path / "r", "--epochs", "1", "--threads", "2") == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_without_tensorboard_or_yaml_the_hint_names_the_train_extra_and_all(tiny_npz, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.setitem(sys.modules, "yaml", None)
    assert _train(tiny_npz, tmp_path / "r", "--epochs", "1", "--tensorboard") == 2
    assert "pip install 'mgdsl[train]', or every extra at once: pip install 'mgdsl[all]'" in capsys.readouterr().err
    (tmp_path / "c.yaml").write_text("epochs: 1\n")
    assert main(["compile", "mgnet", "--config", str(tmp_path / "c.yaml"), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "reading YAML needs pyyaml" in err and "'mgdsl[all]'" in err


def test_tensorboard_writes_scalars(tiny_npz, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out = tmp_path / "run"
    assert _train(tiny_npz, out, "--epochs", "2", "--tensorboard") == 0
    ea = EventAccumulator(str(out / "tensorboard"))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    assert {"loss/train_loss", "loss/test_loss", "accuracy/test_acc", "lr_start", "lr_end", "images_per_s"} <= tags
    assert [e.value for e in ea.Scalars("accuracy/test_acc")] == pytest.approx([m["test_acc"] for m in _metrics(out)])


def test_config_file_sets_flags_and_a_runs_config_passes_back(tiny_npz, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"train: {tiny_npz / 'train.npz'}\ntest: {tiny_npz / 'test.npz'}\nbatch_size: 16\nepochs: 1\n"
                   "recipe: paper\nlr: 0.05\ndefines: [width=4, nu=1]\nflip: true\n")
    out = tmp_path / "a"
    assert main(["compile", "specs/mgnet.mg", "--config", str(cfg), "--out", str(out), "--seed", "3"]) == 0
    c = json.loads((out / "config.json").read_text())
    assert (c["config"]["lr"], c["config"]["recipe"], c["config"]["seed"], c["config"]["flip"]) == (0.05, "paper", 3, True)
    assert c["params_override"] == {"width": 4, "nu": 1}
    b = tmp_path / "b"  # the same run again, from the first run's saved config
    assert main(["compile", "specs/mgnet.mg", "--config", str(out / "config.json"), "--out", str(b)]) == 0
    assert json.loads((b / "config.json").read_text())["config"] == dict(c["config"], out=str(b))
    assert _metrics(b)[0]["train_loss"] == _metrics(out)[0]["train_loss"]
    capsys.readouterr()
    assert main(["compile", "specs/mgnet.mg", "--config", str(cfg), "--print-config"]) == 0
    printed = tmp_path / "printed.yaml"
    printed.write_text(capsys.readouterr().out)
    assert main(["compile", "specs/mgnet.mg", "--config", str(printed), "--print-config"]) == 0
    assert capsys.readouterr().out == printed.read_text()
    assert main(["compile", "--config", str(printed), "--print-config"]) == 0  # it names its spec
    assert capsys.readouterr().out == printed.read_text()


def test_a_runs_config_alone_repeats_the_run_from_its_own_spec_text(tiny_npz, tmp_path):
    # the README's promise: a run's config.json as --config repeats it, even when the spec file is gone
    spec = tmp_path / "gone.mg"
    spec.write_text(open("specs/mgnet.mg").read())
    first = tmp_path / "first"
    assert main(["compile", str(spec), *TINY, "--train", str(tiny_npz / "train.npz"), "--test",
                 str(tiny_npz / "test.npz"), "--batch-size", "16", "--epochs", "1", "--out", str(first)]) == 0
    spec.unlink()
    again = tmp_path / "again"
    assert main(["compile", "--config", str(first / "config.json"), "--out", str(again)]) == 0
    assert _metrics(again)[0]["train_loss"] == _metrics(first)[0]["train_loss"]
    assert json.loads((again / "config.json").read_text())["spec"]["text"] == \
        json.loads((first / "config.json").read_text())["spec"]["text"]


@pytest.mark.parametrize("text,words", [("epochs: ten\n", "epochs must be a int"), ("lr_max: 1\n", "unknown key"),
                                        ("amp: 3\n", "amp must be true or false"),
                                        ("recipe: fast\n", "recipe must be one of")])
def test_bad_config_file_exits_2(tmp_path, capsys, text, words):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    assert main(["compile", "specs/mgnet.mg", "--config", str(cfg), "--train", "digits"]) == 2
    assert words in capsys.readouterr().err


def test_api_rejects_unknown_options(tiny_npz):
    from mgdsl import SpecError
    with pytest.raises(SpecError, match="unknown training option"):
        train("specs/mgnet.mg", "digits", epochz=3)


def test_mgdsl_train_is_the_api_function():
    import mgdsl
    assert mgdsl.train is train and callable(mgdsl.train)
